r"""Seeds in one program (`train.batch_seeds`) against seeds one by one.

  python bench/seeds_step.py            # full (a few minutes on 2 cores)
  python bench/seeds_step.py --quick    # 3 rounds of 1 step

wt_jax's train step (`train.TrainStep` on a 1-device mesh, SGD Nesterov +
weight decay, float32) on ResNet-20-CIFAR at width 0.5, batch 128 per
seed, two ways, both in this process and interleaved (`harness.interleave`):

* sequential: one step per seed, one after another (the same compiled step
  on each seed's state: what `train.batch_seeds=False` runs);
* batched: `train.SeedsStep`, one step of the vmapped program updating
  every seed's state at once.

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
from wt_jax.nets import models
from wt_jax.nets import widths as W
# pylint: enable=g-import-not-at-top,wrong-import-position,g-bad-import-order

log = H.logger('seeds_step')


def build(arch, width_mult, batch_size, seeds, warmup=2):
  """{'sequential': run, 'batched': run} and the two programs' HLO stats."""
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
  sequential = step.jitted.lower(states[0], one).compile()
  batched = together.jitted.lower(together.init(), stacked).compile()
  holder = {'states': states, 'state': together.init()}

  def run_sequential(n):
    t = time.perf_counter()
    for _ in range(n):
      holder['states'] = [sequential(s, one) for s in holder['states']]
    jax.block_until_ready(holder['states'])
    return time.perf_counter() - t, n * batch_size * len(seeds)

  def run_batched(n):
    t = time.perf_counter()
    for _ in range(n):
      holder['state'] = batched(holder['state'], stacked)
    jax.block_until_ready(holder['state'])
    return time.perf_counter() - t, n * batch_size * len(seeds)

  run_sequential(warmup)
  run_batched(warmup)
  return ({'sequential': run_sequential, 'batched': run_batched},
          {'sequential': K.hlo_stats(sequential),
           'batched': K.hlo_stats(batched)})


def step_comparison(args):
  seeds = tuple(range(args.seeds))
  t0 = time.perf_counter()
  runs, hlo = build(args.arch, args.width_mult, args.batch, seeds)
  log(f'compiled both programs in {time.perf_counter() - t0:.0f} s')
  rates = H.interleave(
      {name: H.in_process(run, args.steps) for name, run in runs.items()},
      args.rounds, log=log)
  comparisons = H.compare(rates, [(
      'batched', 'sequential',
      f'img/s: {len(seeds)} seeds in one program / one by one', None, True)])
  text = R.section(
      f'### {len(seeds)} seeds in one program / one by one ({args.arch} '
      f'w{args.width_mult:g}, batch {args.batch} per seed)',
      R.facts({'rounds': f'{args.rounds}, interleaved, in one process',
               'per turn': f'{args.steps} steps of every seed; compile and '
                           'warm-up excluded',
               'A, B': 'img/s (all seeds) of the batched program and of '
                       'the seeds one by one',
               'ratio A/B': 'throughput ratio batched / sequential (median '
                            'of same-round ratios)'}, ('setting', 'value')),
      R.comparison_table(comparisons),
      R.hlo_table(hlo, per='call'),
      R.cores_table({'sequential / batched': rates.cores}))
  return text, dict(rates.raw(), hlo=hlo, reading=comparisons[0])


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--seeds', type=int, default=3)
  args = H.parse_step_bench(p, arch='resnet20_cifar', width_mult=0.5,
                            rounds=5)
  H.emit_parts(args, '## Seeds in one program (`bench/seeds_step.py`)',
               {'step': step_comparison})


if __name__ == '__main__':
  main()
