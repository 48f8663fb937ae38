r"""MorphNet: the regularized train step against the plain one, then a short run.

  python bench/morphnet_step.py            # full (~4 min on 2 cores)
  python bench/morphnet_step.py --quick    # fewer rounds, a 60-step run

1. Step time. wt_jax's train step (`train.make_train_step`, 1-device mesh,
   SGD Nesterov + weight decay, float32) on ResNet-18-CIFAR at width 0.25,
   batch 128, with and without MorphNet's FLOPs regularizer as `extra_loss`
   (`morphnet.make_structure` + `morphnet.make_extra_loss`, auto strength).
   Both steps live in this process and run interleaved (A, B, A, B ...,
   order rotated each round), N steps per turn after compile and warm-up;
   reported: the median over rounds of the same-round ratio of step times
   (MorphNet / plain; target <= 1.05), the CPU-time ratio, and the
   compiled programs' FLOPs and bytes (noise-free).
2. A short MorphNet run on the real CIFAR-10 JPEGs (`folder:` source,
   unzipped to /tmp, augment 'cifar'): `wt_jax.morphnet.optimize(config,
   config.data, uniform('resnet20_cifar', 1.0), tmp workdir)` with
   `configs/default.py` and at most `morphnet.num_steps` steps (default 300,
   budget stated in the output), `morphnet.shrink_to=0.5`,
   `morphnet.lr=0.2`, strength knob 2, exports every 25 steps (the run
   stops at the first export at or below half the MACs). Reported: MACs before and after, the export
   trajectory, where it stopped, and top-1 on the held-out 'val' split.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # pylint: disable=g-import-not-at-top,wrong-import-position
import wt_jax  # pylint: disable=g-import-not-at-top,wrong-import-position,unused-import  # sets the XLA:CPU flag before jax
import train_throughput as T  # pylint: disable=g-import-not-at-top,wrong-import-position


def _log(msg):
  print(f'[morphnet_step {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr,
        flush=True)


def step_comparison(args):
  t0 = time.perf_counter()
  plain_run, plain_info = T.build_ours(args.arch, args.width_mult, args.batch)
  mn_run, mn_info = T.build_ours(args.arch, args.width_mult, args.batch,
                                 extra_loss_kind='morphnet')
  _log(f'compiled both steps in {time.perf_counter() - t0:.0f} s')
  rates = C.interleave({'plain': C.in_process(plain_run, args.steps),
                        'morphnet': C.in_process(mn_run, args.steps)},
                       args.rounds, log=_log)
  # Step-time ratio MorphNet / plain = img/s plain / img/s MorphNet.
  header, rows, readings = C.comparison_table(
      rates, [('plain', 'morphnet', 'step time: MorphNet / plain', 1.05,
               False)], unit='img/s')
  hp, hm = plain_info['hlo']['ours'], mn_info['hlo']['ours']
  label = f'{args.arch} w{args.width_mult:g}, batch {args.batch}'
  lines = [f'### Step time: MorphNet-regularized / plain ({label})', '',
           f'{args.rounds} interleaved rounds of {args.steps} steps per '
           'contender in one process, compile and warm-up excluded. Columns '
           'A and B are img/s of the plain and the MorphNet step; the ratio '
           'is their step-time ratio MorphNet / plain (median of same-round '
           'ratios).', '',
           C.table(header, rows), '',
           C.table(['program', 'GFLOP / step', 'MB accessed / step',
                    'copy ops', 'fusions'],
                   [['plain', f'{hp["flops"] / 1e9:.4f}',
                     f'{hp["bytes"] / 1e6:.2f}', hp['copies'], hp['fusions']],
                    ['MorphNet', f'{hm["flops"] / 1e9:.4f}',
                     f'{hm["bytes"] / 1e6:.2f}', hm['copies'],
                     hm['fusions']]]), '',
           'Effective cores per round: ' +
           ' '.join(f'{c:.2f}' for c in rates.cores) + '.', '']
  r = readings[0]
  flop_pct = 100 * (hm['flops'] / hp['flops'] - 1)
  byte_pct = 100 * (hm['bytes'] / hp['bytes'] - 1)
  reading = (f'- MorphNet step / plain step: {r["ratio"]:.3f} (rounds '
             f'{r["min"]:.3f}-{r["max"]:.3f}; CPU-time ratio '
             f'{r["cpu"]:.3f}); {r["verdict"]}. The regularizer adds '
             f'{flop_pct:+.3f}% FLOPs, {byte_pct:+.3f}% bytes and '
             f'{hm["fusions"] - hp["fusions"]} small scalar/vector fusions '
             f'(over {hp["fusions"]}) to the compiled step: it reads only '
             'the BN scales, so its cost is a fraction of a percent; what '
             'the wall-clock ratio shows beyond that is the noise.')
  raw = dict(rates=dict(rates), cpu=rates.cpu, cores=rates.cores,
             hlo={'plain': hp, 'morphnet': hm}, reading=r)
  return '\n'.join(lines), reading, raw


def morphnet_run(args):
  from wt_jax import defaults
  from wt_jax import morphnet, widths as W  # pylint: disable=g-import-not-at-top,g-multiple-import
  config = defaults.get_config()
  config.arch = args.run_arch
  config.data.source = 'folder:' + C.cifar_folder()
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
  widths = W.uniform(args.run_arch, 1.0)
  workdir = tempfile.mkdtemp(prefix='wt_bench_morphnet_')
  t0 = time.perf_counter()
  try:
    result = morphnet.optimize(config, config.data, widths, workdir)
    with open(os.path.join(workdir, 'history.json')) as f:
      history = json.load(f)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  total = time.perf_counter() - t0
  d = result.details
  start = d['start_macs']
  learned = d['learned_macs']
  lines = ['### Short MorphNet run on the CIFAR-10 JPEGs', '',
           f'Budget: {args.run_arch} (width 1.0) at 32x32, batch '
           f'{args.batch}, at most {args.run_steps} steps '
           f'({args.run_steps * args.batch / 45000:.2f} epochs of the 45,000 '
           'training images; 5,000 held out as val), constant lr '
           f'{args.run_lr}, strength knob {args.strength_knob} (strength '
           f'{d["strength"]:.3g}), threshold {d["threshold"]}, '
           '`morphnet.shrink_to=0.5`, exports every '
           f'{config.morphnet.export_every} steps; '
           '`wt_jax.morphnet.optimize` with configs/default.py.', '',
           C.table(['', 'value'], [
               ['MACs before (uniform)', f'{start:,}'],
               ['MACs after (learned widths)',
                f'{learned:,} ({learned / start:.3f} x)'],
               ['reached shrink_to=0.5', d['reached_target']],
               ['stopped at step', d['stopped_at_step']],
               ['val top-1 (5,000 held-out images)', f'{d["val_top1"]:.4f}'],
               ['train loss (last log interval)', f'{d["train_loss"]:.4f}'],
               ['training loop wall time', f'{result.wall_time_s:.0f} s'],
               ['total (incl. decode, compile, eval)', f'{total:.0f} s']]),
           '', 'Export trajectory:', '',
           C.table(['step', 'learned MACs', 'fraction of start'],
                   [[h['step'], f'{h["macs"]:,}', f'{h["macs_fraction"]:.3f}']
                    for h in history]), '',
           'Learned widths: ' + ', '.join(
               f'{k}={v}' for k, v in d['learned_widths'].items()) + '.', '']
  reading = (f'- Short MorphNet run: MACs {start / 1e6:.1f} M -> '
             f'{learned / 1e6:.1f} M ({learned / start:.2f} x) in '
             f'{d["stopped_at_step"]} steps; '
             + ('reached' if d['reached_target'] else 'did not reach') +
             f' shrink_to=0.5; val top-1 {d["val_top1"]:.3f} after '
             f'{d["stopped_at_step"] * args.batch / 45000:.2f} epochs. This '
             'is a structure-learning run, not a trained network: a '
             'regularizer strong enough to halve the MACs within a fraction '
             'of an epoch also pushes every BN scale down while the network '
             'is still learning, so the accuracy stays far below what plain '
             'training reaches in the same steps (stronger knob, faster '
             'shrink, lower accuracy).')
  return '\n'.join(lines), reading, dict(details=d, history=history,
                                         wall_time_s=result.wall_time_s,
                                         total_s=total)


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
  p.add_argument('--quick', action='store_true',
                 help='3 rounds of 2 steps, a 60-step run')
  p.add_argument('--out', default=None)
  p.add_argument('--json', default=None)
  args = p.parse_args()
  if args.quick:
    args.rounds, args.steps, args.run_steps = 3, 2, 60
  t0 = time.perf_counter()
  parts, readings, raws = [], [], {}
  if not args.no_step:
    text, reading, raw = step_comparison(args)
    parts.append(text)
    readings.append(reading)
    raws['step'] = raw
  if not args.no_run:
    text, reading, raw = morphnet_run(args)
    parts.append(text)
    readings.append(reading)
    raws['run'] = raw
  body = ('## MorphNet (`bench/morphnet_step.py`)\n\n' + '\n'.join(parts) +
          '\nReading:\n\n' + '\n'.join(readings) +
          f'\n\nWall time of this benchmark: {time.perf_counter() - t0:.0f} '
          's.\n')
  print(body)
  C.write_fragment(args.out, body)
  if args.json:
    C.write_fragment(args.json, json.dumps(raws, indent=1, default=str))


if __name__ == '__main__':
  main()
