r"""DMCP: its weight step and its full step against the plain one, same run.

  python bench/dmcp_step.py            # full (a few minutes on 2 cores)
  python bench/dmcp_step.py --quick    # 3 rounds of 1 step

wt_jax's train step (`train.TrainStep` on a 1-device mesh, SGD Nesterov +
weight decay, float32) on ResNet-18-CIFAR at width 0.25, batch 128, three
ways, all in this process and interleaved (`harness.interleave`):

* plain: the default loss;
* weight: DMCP's weight step alone: its program with the `lax.cond`
  (`make_dmcp_loss(skip_by_cond=True)`, alphas as `train.ExtraParams`) on a
  state in the warm-up, where the cond skips the architecture pass:
  AutoSlim's sandwich rule, full + smallest + 2 random sub-networks, masked
  at the full width;
* dmcp: DMCP's step as it runs on this backend (`skip_by_cond=None`; on
  CPU no cond: XLA:CPU runs a conditional's branch ~5x slower) on a state
  past the warm-up: the weight step plus the architecture step (the
  marginal-scaled full network, a backward to the alphas only, and the
  expected-FLOPs loss). On CPU the warm-up steps cost the same.

Reported: the step-time ratios weight / plain and dmcp / plain (medians of
same-round ratios), the architecture step's own time / plain step
((t_dmcp - t_weight) / t_plain per round), CPU-time ratios, the compiled
programs' FLOPs, and the analytic MACs ratios (executed: every pass at the
full width; charged by DMCP's cost accounting: each sub-network at its own
MACs, the architecture pass at 2 x the full MACs).
"""
from __future__ import annotations

import argparse
import time

import contenders as K
import harness as H
import rendering as R
# wt_jax after harness, which puts this repository first on sys.path.
# pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
import numpy as np
from wt_jax import defaults
from wt_jax import train
from wt_jax.nets import models
from wt_jax.nets import widths as W
from wt_jax.optimizers import dmcp
# pylint: enable=g-import-not-at-top,wrong-import-position,g-bad-import-order

log = H.logger('dmcp_step')
NUM_RANDOM = 2
TOTAL, WARMUP = 100_000, 50_000  # the schedule's steps, the warm-up's


def build(widths, batch_size, kind, warmup=2):
  """(run, hlo) of a step: 'plain' (the default loss), 'weight' (DMCP's
  program with the `lax.cond`, on a state in the warm-up: its sandwich
  alone) or 'dmcp' (DMCP's default program on this backend, on a state past
  the warm-up)."""
  import jax  # pylint: disable=g-import-not-at-top
  tc = defaults.get_config().train
  tc.update(batch_size=batch_size, weight_decay=K.WEIGHT_DECAY, momentum=0.9,
            nesterov=True)
  mesh = train.make_mesh(jax.devices()[:1])
  hooks = {}
  if kind != 'plain':
    chain = dmcp.make_chain(widths, K.RESOLUTION, K.NUM_CLASSES)
    hooks = dict(
        loss_fn=dmcp.make_dmcp_loss(chain, num_random=NUM_RANDOM,
                                    warmup_steps=WARMUP,
                                    skip_by_cond=kind == 'weight' or None),
        extra_params=dmcp.arch_params(chain, 0.5, 0.1, WARMUP, TOTAL, tc))
  step = train.TrainStep(
      models.build_model(widths, K.NUM_CLASSES), tc, mesh, seed=0,
      image_shape=(K.RESOLUTION, K.RESOLUTION, 3), total_steps=TOTAL,
      steps_per_epoch=390, **hooks)
  images, labels = K.random_batch(batch_size)
  batch = train.global_batch(mesh, {'image': images, 'label': labels,
                                    'mask': np.ones(batch_size, np.float32)})
  state = step.init()
  if kind == 'dmcp':
    state = state.replace(step=jax.device_put(np.int32(WARMUP),
                                              state.step.sharding))
  compiled = step.jitted.lower(state, batch, None).compile()
  # pylint: disable-next=protected-access
  run, _ = K._jax_runner(lambda s, b: compiled(s, b, None), state, batch,
                         batch_size, warmup)
  return run, K.hlo_stats(compiled)


def analytic(widths):
  """Per example, relative to a plain train step (3 x full MACs):
  (executed weight, executed dmcp, charged weight, charged dmcp)."""
  chain = dmcp.make_chain(widths, K.RESOLUTION, K.NUM_CLASSES)
  one = dmcp.train_costs(chain, [], steps=1, batch_size=1, warmup_steps=1,
                         num_random=NUM_RANDOM, uniform_decay=1.0,
                         skip_by_cond=True)
  both = dmcp.train_costs(chain, [], steps=1, batch_size=1, warmup_steps=0,
                          num_random=NUM_RANDOM, uniform_decay=1.0)
  plain = 3 * float(chain.space.macs(chain.widths.array()))
  return (one['train_macs_executed'] / plain,
          both['train_macs_executed'] / plain, one['train_macs'] / plain,
          both['train_macs'] / plain)


def arch_ratio(rates) -> list[float]:
  """Per round: (step time dmcp - step time weight) / step time plain
  (`rates`: items per second, or per CPU-second)."""
  return [p / d - p / w for p, w, d in zip(rates['plain'], rates['weight'],
                                           rates['dmcp'])]


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  args = H.parse_step_bench(p)
  t0 = time.perf_counter()
  widths = W.uniform(args.arch, args.width_mult)
  runs, hlo = {}, {}
  for kind in ('plain', 'weight', 'dmcp'):
    run, hlo[kind] = build(widths, args.batch, kind)
    runs[kind] = H.in_process(run, args.steps)
  log(f'compiled the three steps in {time.perf_counter() - t0:.0f} s')
  rates = H.interleave(runs, args.rounds, log=log)
  comparisons = H.compare(rates, [
      ('plain', 'weight', 'step time: DMCP weight step / plain', None, False),
      ('plain', 'dmcp', 'step time: DMCP full step / plain', None, False)])
  arch = arch_ratio(rates)
  reading = dict(weight=comparisons[0]['ratio'], dmcp=comparisons[1]['ratio'],
                 arch=H.median(arch), arch_min=min(arch), arch_max=max(arch),
                 arch_cpu=H.median(arch_ratio(rates.cpu)))
  ex_w, ex_d, ch_w, ch_d = analytic(widths)
  fw, fd = (hlo[k]['flops'] / hlo['plain']['flops'] for k in ('weight',
                                                             'dmcp'))
  text = R.section(
      '## DMCP step (`bench/dmcp_step.py`)',
      R.facts({
          'network': f'{args.arch} w{args.width_mult:g}, batch {args.batch}',
          'weight step': 'sandwich: full + smallest + 2 random sub-networks '
                         '(in-place distillation), masks at the full width',
          'architecture step': 'marginal-scaled full network, backward to '
                               'the alphas, expected-FLOPs loss',
          'rounds': f'{args.rounds}, interleaved, in one process',
          'per turn': f'{args.steps} steps; compile and warm-up excluded',
          'wall time of this benchmark':
              f'{time.perf_counter() - t0:.0f} s'}, ('setting', 'value')),
      R.comparison_table(comparisons),
      R.table(['measure (/ plain step)', 'weight step', 'full DMCP step',
               'architecture step alone'], [
                   ['wall-clock step time (median of rounds)',
                    f'{reading["weight"]:.2f}', f'{reading["dmcp"]:.2f}',
                    f'{reading["arch"]:.2f} ({reading["arch_min"]:.2f}-'
                    f'{reading["arch_max"]:.2f})'],
                   ['CPU time per step', f'{comparisons[0]["cpu"]:.2f}',
                    f'{comparisons[1]["cpu"]:.2f}',
                    f'{reading["arch_cpu"]:.2f}'],
                   ['compiled FLOPs (XLA cost analysis, which counts '
                    'the skipped branch of the cond too)', f'{fw:.2f}',
                    f'{fd:.2f}', '-'],
                   ['executed train MACs (analytic)', f'{ex_w:.2f}',
                    f'{ex_d:.2f}', f'{ex_d - ex_w:.2f}'],
                   ['charged train MACs (analytic)', f'{ch_w:.2f}',
                    f'{ch_d:.2f}', f'{ch_d - ch_w:.2f}']]),
      R.cores_table({'plain / weight / dmcp': rates.cores}))
  H.emit(args, text, dict(rates.raw(), reading=reading, hlo=hlo,
                          comparisons=comparisons,
                          analytic=dict(executed_weight=ex_w,
                                        executed_dmcp=ex_d, charged_weight=ch_w,
                                        charged_dmcp=ch_d)))


if __name__ == '__main__':
  main()
