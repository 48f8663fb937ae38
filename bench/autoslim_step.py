r"""AutoSlim: the sandwich-rule train step against the plain one, same run.

  python bench/autoslim_step.py            # full (~1.5 min on 2 cores)
  python bench/autoslim_step.py --quick    # 3 rounds of 1 step

wt_jax's train step (`contenders.build_ours`: `train.TrainStep` on a
1-device mesh, SGD Nesterov + weight decay, float32) on ResNet-18-CIFAR at
width 0.25, batch 128, with the default loss and with AutoSlim's sandwich
loss as `loss_fn` (`autoslim.make_space` +
`autoslim.make_sandwich_loss(num_random=2)`: the full width on the labels
plus the smallest and 2 random widths by in-place distillation, every pass
masked at the full width). Both steps live in this process and run
interleaved (`harness.interleave`). Reported: the step-time ratio sandwich
/ plain, the CPU-time ratio, the compiled programs' FLOPs ratio, and the
analytic MACs ratios (executed: 4 full-width passes; charged by AutoSlim's
cost accounting: each sub-network at its own MACs).
"""
from __future__ import annotations

import argparse
import time

import contenders as K
import harness as H
import rendering as R
# wt_jax after harness, which puts this repository first on sys.path.
# pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
from wt_jax.nets import widths as W
from wt_jax.optimizers import autoslim
# pylint: enable=g-import-not-at-top,wrong-import-position,g-bad-import-order

log = H.logger('autoslim_step')


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  args = H.parse_step_bench(p)
  t0 = time.perf_counter()
  rates, hp, hs = K.against_plain(
      'sandwich', args.arch, args.width_mult, args.batch, args.steps,
      args.rounds, log, loss_kind='autoslim')
  comparisons = H.compare(rates, [('plain', 'sandwich',
                                   'step time: sandwich / plain', None, False)])
  r = comparisons[0]
  widths = W.uniform(args.arch, args.width_mult)
  space = autoslim.make_space(widths, K.RESOLUTION, K.NUM_CLASSES)
  analytic, executed = autoslim.train_macs_per_example(space, 2)
  full = 3 * int(space.macs(space.widths.array()))  # plain train MACs
  text = R.section(
      '## AutoSlim sandwich step (`bench/autoslim_step.py`)',
      R.facts({
          'network': f'{args.arch} w{args.width_mult:g}, batch {args.batch}',
          'sandwich': 'full + smallest + 2 random widths (in-place '
                      'distillation), masks at the full width',
          'rounds': f'{args.rounds}, interleaved, in one process',
          'per turn': f'{args.steps} steps; compile and warm-up excluded',
          'A, B': 'img/s of the plain and the sandwich step',
          'ratio A/B': 'step-time ratio sandwich / plain (median of '
                       'same-round ratios)',
          'wall time of this benchmark':
              f'{time.perf_counter() - t0:.0f} s'}, ('setting', 'value')),
      R.comparison_table(comparisons),
      R.table(['measure (sandwich / plain)', 'ratio'], [
          ['wall-clock step time (median of rounds)', f'{r["ratio"]:.2f}'],
          ['CPU time per step', f'{r["cpu"]:.2f}'],
          ['compiled FLOPs (XLA cost analysis)',
           f'{hs["flops"] / hp["flops"]:.2f}'],
          ['compiled bytes accessed', f'{hs["bytes"] / hp["bytes"]:.2f}'],
          ['executed train MACs (4 full-width passes, analytic)',
           f'{executed / full:.2f}'],
          ['charged train MACs (each width at its own MACs, analytic)',
           f'{analytic / full:.2f}']]),
      R.cores_table({'plain / sandwich': rates.cores}))
  H.emit(args, text, dict(rates.raw(), hlo={'plain': hp, 'sandwich': hs},
                          analytic=analytic, executed=executed, full=full,
                          reading=r))


if __name__ == '__main__':
  main()
