r"""MorphNet: the regularized train step against the plain one; a short run.

  python bench/morphnet_step.py            # full (~4 min on 2 cores)
  python bench/morphnet_step.py --quick    # fewer rounds, a 60-step run

1. Step time. wt_jax's train step (`contenders.build_ours`: `train.TrainStep`
   on a 1-device mesh, SGD Nesterov + weight decay, float32) on
   ResNet-18-CIFAR at width 0.25, batch 128, with and without MorphNet's
   FLOPs regularizer as `extra_loss` (`morphnet.make_structure` +
   `morphnet.make_extra_loss`, auto strength). Both steps live in this
   process and run interleaved (`harness.interleave`); reported: the
   step-time ratio MorphNet / plain (target <= 1.05), the CPU-time ratio,
   and the compiled programs' FLOPs and bytes (noise-free).
2. A short MorphNet run on the real CIFAR-10 JPEGs (`folder:` source,
   unzipped to /tmp, augment 'cifar'): `wt_jax.optimizers.morphnet.optimize(config, problem,
   config.data, uniform('resnet20_cifar', 1.0), tmp workdir)` with the
   defaults and at most `morphnet.num_steps` steps (default 300),
   `morphnet.shrink_to=0.5`, `morphnet.lr=0.2`, strength knob 2, exports
   every 25 steps (the run stops at the first export at or below half the
   MACs). Reported: MACs before and after, the export trajectory, where it
   stopped, and top-1 on the held-out 'val' split.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import contenders as K
import harness as H
import rendering as R
# wt_jax after harness, which puts this repository first on sys.path.
# pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
from wt_jax import defaults
from wt_jax.optimizers import morphnet
from wt_jax.transfer import problem
# pylint: enable=g-import-not-at-top,wrong-import-position,g-bad-import-order

log = H.logger('morphnet_step')


def step_comparison(args):
  rates, hp, hm = K.against_plain(
      'morphnet', args.arch, args.width_mult, args.batch, args.steps,
      args.rounds, log, extra_loss_kind='morphnet')
  # Step-time ratio MorphNet / plain = img/s plain / img/s MorphNet.
  comparisons = H.compare(rates, [('plain', 'morphnet',
                                   'step time: MorphNet / plain', 1.05, False)])
  text = R.section(
      f'### Step time: MorphNet-regularized / plain ({args.arch} '
      f'w{args.width_mult:g}, batch {args.batch})',
      R.facts({'rounds': f'{args.rounds}, interleaved, in one process',
               'per turn': f'{args.steps} steps; compile and warm-up '
                           'excluded',
               'A, B': 'img/s of the plain and the MorphNet step',
               'ratio A/B': 'step-time ratio MorphNet / plain (median of '
                            'same-round ratios)'}, ('setting', 'value')),
      R.comparison_table(comparisons),
      R.hlo_table({'plain': hp, 'MorphNet': hm}),
      R.cores_table({'plain / MorphNet': rates.cores}))
  return text, dict(rates.raw(), hlo={'plain': hp, 'morphnet': hm},
                    reading=comparisons[0])


def run_config(args):
  config = defaults.get_config()
  config.arch = args.run_arch
  config.data.source = 'folder:' + K.cifar_folder()
  config.data.augment = 'cifar'
  config.data.resolution = 32
  config.train.batch_size = args.batch
  config.train.log_every = 50
  config.train.checkpoint_every = 100_000  # only the final one
  config.morphnet.num_steps = args.run_steps
  config.morphnet.shrink_to = 0.5
  config.morphnet.lr = args.run_lr
  config.morphnet.strength_knob = args.strength_knob
  config.morphnet.export_every = min(25, args.run_steps)
  return config


def morphnet_run(args):
  config = run_config(args)
  config.arch, config.width_mult = args.run_arch, 1.0
  workdir = tempfile.mkdtemp(prefix='wt_bench_morphnet_')
  t0 = time.perf_counter()
  try:
    result = morphnet.optimize(config, problem.from_config(config), workdir)
    with open(os.path.join(workdir, 'history.json')) as f:
      history = json.load(f)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  total = time.perf_counter() - t0
  d = result.details
  start, learned = d['start_macs'], d['learned_macs']
  text = R.section(
      '### Short MorphNet run on the CIFAR-10 JPEGs',
      R.facts({
          'network': f'{args.run_arch} (width 1.0) at 32x32',
          'budget': f'batch {args.batch}, at most {args.run_steps} steps '
                    f'({args.run_steps * args.batch / 45000:.2f} epochs of '
                    'the 45,000 training images; 5,000 held out as val)',
          'MorphNet': f'constant lr {args.run_lr}, strength knob '
                      f'{args.strength_knob} (strength '
                      f'{d["strength"]:.3g}), threshold {d["threshold"]}, '
                      '`morphnet.shrink_to=0.5`, exports every '
                      f'{config.morphnet.export_every} steps',
          'run': '`wt_jax.optimizers.morphnet.optimize`, wt_jax/defaults.py otherwise'},
               ('setting', 'value')),
      R.facts([
          ('MACs before (uniform)', f'{start:,}'),
          ('MACs after (learned widths)',
           f'{learned:,} ({learned / start:.3f} x)'),
          ('reached shrink_to=0.5', d['reached_target']),
          ('stopped at step', d['stopped_at_step']),
          ('val top-1 (5,000 held-out images)', f'{d["val_top1"]:.4f}'),
          ('train loss (last log interval)', f'{d["train_loss"]:.4f}'),
          ('training loop wall time', f'{result.wall_time_s:.0f} s'),
          ('total (incl. decode, compile, eval)', f'{total:.0f} s'),
          ('learned widths', ', '.join(
              f'{k}={v}' for k, v in d['learned_widths'].items()))]),
      '#### Export trajectory',
      R.table(['step', 'learned MACs', 'fraction of start'],
              [[h['step'], f'{h["macs"]:,}', f'{h["macs_fraction"]:.3f}']
               for h in history]))
  return text, dict(details=d, history=history,
                    wall_time_s=result.wall_time_s, total_s=total)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--arch', default='resnet18_cifar')
  p.add_argument('--width_mult', type=float, default=0.25)
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--rounds', type=int, default=7)
  p.add_argument('--steps', type=int, default=3)
  p.add_argument('--run_arch', default='resnet20_cifar')
  p.add_argument('--run_steps', type=int, default=300)
  p.add_argument('--run_lr', type=float, default=0.2)
  p.add_argument('--strength_knob', type=float, default=2.0)
  p.add_argument('--no_run', action='store_true', help='skip the short run')
  p.add_argument('--no_step', action='store_true',
                 help='skip the step-time comparison')
  args = H.parse(p, dict(rounds=3, steps=2, run_steps=60),
                 '3 rounds of 2 steps, a 60-step run')
  H.emit_parts(args, '## MorphNet (`bench/morphnet_step.py`)', {
      'step': None if args.no_step else step_comparison,
      'run': None if args.no_run else morphnet_run})


if __name__ == '__main__':
  main()
