r"""Seeds in one program (`train.batch_seeds`) against seeds one by one.

  python bench/seeds_step.py            # full (a few minutes on 2 cores)
  python bench/seeds_step.py --quick    # 3 rounds of 1 step
  python bench/seeds_step.py --quick --seeds=2 --per_call=2   # CPU-sized

wt_jax's train step (`train.TrainStep` on a 1-device mesh, SGD Nesterov +
weight decay, float32) on ResNet-20-CIFAR at width 0.5, batch 128 per
seed, two ways, both in this process and interleaved (`harness.interleave`):

* sequential: one step per seed, one after another (the same compiled step
  on each seed's state: what `train.batch_seeds=False` runs);
* batched: `train.SeedsStep`, one step of the vmapped program updating
  every seed's state at once;
* on device, K per call: what the train loop runs by default on an
  accelerator (`train.batch_seeds=False`, `data.placement='auto'` ->
  'device', `train.steps_per_call=0` -> 16): the seeds one after another,
  each call K steps (`lax.scan`) that gather, crop and flip their batches
  from a split held on the device (`data.placement`), the host sending only
  positions and draws.

Reported: img/s of each (images of all seeds per second) and the ratio
batched / sequential (median of same-round ratios), the CPU-time ratio, and
the compiled programs' FLOPs. On this 2-core CPU the sequential steps
already keep both cores busy, so the ratio measures the overhead or gain of
the batched program itself; the gain it is for is on an accelerator, where
one CIFAR-sized step leaves most of the chip idle.
"""
from __future__ import annotations

import argparse
import time

import contenders as K
import harness as H
import rendering as R
# wt_jax after harness, which puts this repository first on sys.path.
# pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
import jax
import numpy as np
from wt_jax import defaults
from wt_jax import train
from wt_jax.data import arrays
from wt_jax.data import placement
from wt_jax.nets import models
from wt_jax.nets import widths as W
# pylint: enable=g-import-not-at-top,wrong-import-position,g-bad-import-order

log = H.logger('seeds_step')


def _positions(rng, n, batch_size, steps, resolution):
  """`steps` batches of positions and 'cifar' draws, stacked [steps, B]."""
  dy, dx, flip = arrays.crop_flip_draws(0, 0, steps * batch_size, resolution)
  shape = (steps, batch_size)
  return {'position': rng.integers(0, n, shape).astype(np.int32),
          'dy': dy.reshape(shape), 'dx': dx.reshape(shape),
          'flip': flip.reshape(shape),
          'label': rng.integers(0, K.NUM_CLASSES, shape).astype(np.int32),
          'mask': np.ones(shape, np.float32)}


def build(arch, width_mult, batch_size, seeds, warmup=2, per_call=16,
          split_size=10_000):
  """{'sequential', 'batched', 'on device, K per call': run} and the
  programs' HLO stats."""
  widths = W.uniform(arch, width_mult)
  tc = defaults.get_config().train
  tc.update(batch_size=batch_size, weight_decay=K.WEIGHT_DECAY, momentum=0.9,
            nesterov=True)
  mesh = train.make_mesh(jax.devices()[:1])
  step = train.TrainStep(
      models.build_model(widths, K.NUM_CLASSES, models.DTYPES['float32']),
      tc, mesh, seed=0, image_shape=(K.RESOLUTION, K.RESOLUTION, 3),
      total_steps=100_000, steps_per_epoch=390)
  together = train.SeedsStep(step, tuple(seeds))
  images, labels = K.random_batch(batch_size)
  local = {'image': images, 'label': labels,
           'mask': np.ones(batch_size, np.float32)}
  one = train.global_batch(mesh, local)
  stacked = train.global_batch(
      mesh, {k: np.stack([v] * len(seeds)) for k, v in local.items()},
      train.seeds_batch_sharding(mesh))
  states = [together.single(i).init() for i in range(len(seeds))]
  sequential = step.jitted.lower(states[0], one, None).compile()
  batched = together.jitted.lower(together.init(), stacked, None).compile()
  holder = {'states': states, 'state': together.init()}

  def run_sequential(n):
    t = time.perf_counter()
    for _ in range(n):
      holder['states'] = [sequential(s, one, None) for s in holder['states']]
    jax.block_until_ready(holder['states'])
    return time.perf_counter() - t, n * batch_size * len(seeds)

  def run_batched(n):
    t = time.perf_counter()
    for _ in range(n):
      holder['state'] = batched(holder['state'], stacked, None)
    jax.block_until_ready(holder['state'])
    return time.perf_counter() - t, n * batch_size * len(seeds)

  rng = np.random.default_rng(0)
  res = K.RESOLUTION
  split = placement.DeviceSplit(
      placement.resident(mesh, rng.integers(0, 256, (split_size, res, res, 3),
                                            dtype=np.uint8)),
      'cifar', (0.5,) * 3, (0.25,) * 3)
  fed = train.TrainStep(step.model, tc, mesh, seed=0,
                        image_shape=(res, res, 3), total_steps=100_000,
                        steps_per_epoch=390, feed=split)
  chunk = train.global_batch(
      mesh, _positions(rng, split_size, batch_size, per_call, res),
      train.stacked_batch_sharding(mesh, 1))
  scanned = fed.jitted_many.lower(fed.init(), chunk, split.images).compile()
  holder['fed'] = [fed.init() for _ in seeds]

  def run_on_device(n):
    t = time.perf_counter()
    calls = max(1, n // per_call)
    for _ in range(calls):
      holder['fed'] = [scanned(s, chunk, split.images) for s in holder['fed']]
    jax.block_until_ready(holder['fed'])
    return time.perf_counter() - t, calls * per_call * batch_size * len(seeds)

  run_sequential(warmup)
  run_batched(warmup)
  run_on_device(per_call)
  name = f'on device, {per_call} per call'
  return ({'sequential': run_sequential, 'batched': run_batched,
           name: run_on_device},
          {'sequential': K.hlo_stats(sequential),
           'batched': K.hlo_stats(batched), name: K.hlo_stats(scanned)})


def step_comparison(args):
  seeds = tuple(range(args.seeds))
  t0 = time.perf_counter()
  runs, hlo = build(args.arch, args.width_mult, args.batch, seeds,
                    per_call=args.per_call)
  log(f'compiled both programs in {time.perf_counter() - t0:.0f} s')
  rates = H.interleave(
      {name: H.in_process(run, args.steps) for name, run in runs.items()},
      args.rounds, log=log)
  on_device = next(name for name in runs if name.startswith('on device'))
  comparisons = H.compare(rates, [
      ('batched', 'sequential',
       f'img/s: {len(seeds)} seeds in one program / one by one', None, True),
      (on_device, 'sequential',
       'img/s: one by one, data on device, scanned / one by one, fed', None,
       True)])
  text = R.section(
      f'### {len(seeds)} seeds in one program / one by one ({args.arch} '
      f'w{args.width_mult:g}, batch {args.batch} per seed)',
      R.facts({'rounds': f'{args.rounds}, interleaved, in one process',
               'per turn': f'{args.steps} steps of every seed; compile and '
                           'warm-up excluded',
               'A, B': 'img/s (all seeds) of a contender and of the seeds '
                       'one by one, fed one batch per call',
               'ratio A/B': 'throughput ratio (median of same-round '
                            'ratios)'}, ('setting', 'value')),
      R.comparison_table(comparisons),
      R.hlo_table(hlo, per='call'),
      R.cores_table({'sequential / batched': rates.cores}))
  return text, dict(rates.raw(), hlo=hlo, reading=comparisons[0],
                    on_device=comparisons[1])


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--seeds', type=int, default=3)
  p.add_argument('--per_call', type=int, default=16,
                 help='steps per jitted call of the data-on-device contender '
                 '(on CPU each scanned step is ~35x slower: use 2-4 there)')
  args = H.parse_step_bench(p, arch='resnet20_cifar', width_mult=0.5,
                            rounds=5)
  H.emit_parts(args, '## Seeds in one program (`bench/seeds_step.py`)',
               {'step': step_comparison})


if __name__ == '__main__':
  main()
