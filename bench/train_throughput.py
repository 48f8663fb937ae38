r"""Train-step throughput (img/s) of wt_jax against references, same run.

  python bench/train_throughput.py            # full (~7-9 min on 2 cores)
  python bench/train_throughput.py --quick    # 3 rounds of 2 steps

For each network (default ResNet-18-CIFAR at width 0.25 and ResNet-20, batch
128, 32x32 inputs, 10 classes) the contenders of `contenders.py` run, each
in its own subprocess (so XLA flags and frameworks never mix), interleaved
in rounds (`harness.interleave`), N steps per turn after compile and
warm-up: ours (float32, wt_jax's XLA:CPU default), ref (the flax
examples/imagenet ResNet), torch and torch_1thread (skipped with a note
when torch is not installed: `pip install -e .[bench]`), ours_xla_default
(XLA's default YNN fusions), ours_bf16, and the input pipeline (CIFAR-10
JPEGs, steady state after one epoch; a few batches drained untimed before
each turn, so the prefetch buffer filled meanwhile does not count).
ref_bf16 (the reference in bfloat16) runs only when `--contenders` names it;
`--contenders=ours_bf16,ref_bf16` runs just those two (the accelerator
check's ResNet-18 224 comparison).

Reported: img/s per contender (median over rounds), the comparisons of
`COMPARISONS` (`harness.compare`), XLA's cost analysis of the compiled
programs (FLOPs, bytes, copies, fusions: noise-free), effective cores per
round, build times, the input pipeline's epoch boundary, and each JAX
contender's achieved FLOP/s and MFU from the ANALYTIC work of a step, 6 x
MACs x batch (`contenders.analytic_flops`, MACs from `wt_jax.cost`), over
`--peak_tflops` (default $PEAK_TFLOPS; none: no MFU column). XLA's
`cost_analysis()['flops']` is shown beside it, labelled as XLA's count: on
GPUs it leaves out the convolutions handed to cuDNN (on an H200 it reported
31 GFLOP for a ResNet-18 224 step, about 1% of the real work).
"""
from __future__ import annotations

import argparse
import os
import time

import contenders as K
import harness as H
import machine
import rendering as R

DEFAULT_ARCHS = 'resnet18_cifar:0.25,resnet20_cifar:1.0'
COMPARISONS = (
    # (A, B, what, target or None, higher is better)
    ('ours', 'ref', 'ours / reference Flax', 1.0, True),
    ('ours', 'torch', 'ours / PyTorch (nproc threads)', None, True),
    ('ours', 'torch_1thread', 'ours / PyTorch (1 thread)', None, True),
    ('ours', 'ours_xla_default', 'YNN off (wt_jax default) / XLA default',
     None, True),
    ('ours_bf16', 'ours', 'bfloat16 / float32', None, True),
    ('ours_bf16', 'ref_bf16', 'ours / reference Flax, bfloat16', 1.0, True),
    ('pipeline', 'ours', 'input pipeline / train step', 2.0, True),
)
log = H.logger('train_throughput')


def worker_specs(arch, width_mult, args, notes):
  """{contender: (contenders.py arguments, YNN setting)} for one network."""
  common = ['--arch', arch, '--width_mult', str(width_mult),
            '--batch', str(args.batch)]
  specs = {'ours': (['ours'] + ([] if args.no_ablation else ['--ablation'])
                    + common, 'off'),
           'ref': (['ref'] + common, 'off')}
  if not args.no_torch:
    if machine.version('torch') == 'not installed':
      notes.append('PyTorch rows skipped: torch is not installed (`pip '
                   'install -e .[bench]` or `pip install torch==2.13.0`).')
    else:
      torch = ['torch'] + common + (['--torch_compile'] if args.torch_compile
                                    else [])
      specs['torch'] = (torch + ['--torch_threads', str(args.torch_threads)],
                        'off')
      if not args.no_torch_1thread:
        specs['torch_1thread'] = (torch + ['--torch_threads', '1'], 'off')
  if not args.no_ynn:
    specs['ours_xla_default'] = (['ours'] + common, 'default')
  if not args.no_bf16:
    specs['ours_bf16'] = (['ours'] + common + ['--dtype', 'bfloat16'], 'off')
    specs['ref_bf16'] = (['ref'] + common + ['--dtype', 'bfloat16'], 'off')
  if args.contenders:  # only those named (ref_bf16 only when named)
    wanted = args.contenders.split(',')
    unknown = sorted(set(wanted) - set(specs) - {'pipeline'})
    if unknown:
      raise SystemExit(f'--contenders: unknown or switched off {unknown}; '
                       f'known: {", ".join(specs)}')
    return {n: spec for n, spec in specs.items() if n in wanted}
  specs.pop('ref_bf16', None)
  return specs


def bench_arch(arch, width_mult, args, pipeline):
  """(rounds, info, notes): interleaved rounds of every contender."""
  notes = []
  specs = worker_specs(arch, width_mult, args, notes)
  workers = {}
  try:
    for name, (argv, ynn) in specs.items():
      workers[name] = H.Worker(name, K.worker_argv(*argv), H.xla_env(ynn))
    for name, w in list(workers.items()):
      try:
        w.wait_ready()
        log(f'{arch}: {name} ready ({w.info.get("warmup_s", 0):.1f} s)')
      except RuntimeError as e:
        notes.append(f'{name} skipped: {e}')
        del workers[name]
    turns = {n: w.turn(args.steps) for n, w in workers.items()}
    if pipeline is not None:
      turns['pipeline'] = pipeline.turn(args.pipeline_batches)
    rates = H.interleave(turns, args.rounds, log=lambda m: log(f'{arch}: {m}'))
    info = {n: w.info for n, w in workers.items()}
  finally:
    for w in workers.values():
      w.close()
  return rates, info, notes


def render(results, args, notes, pipeline_info, wall_s):
  """The section's markdown (tables only) and the comparisons."""
  setup = R.facts({
      'batch': args.batch,
      'inputs': f'{K.RESOLUTION}x{K.RESOLUTION}, {K.NUM_CLASSES} classes, '
                'one fixed batch of random images',
      'rounds': f'{args.rounds}, interleaved, order rotated each round',
      'per turn': f'{args.steps} steps ({args.pipeline_batches} batches for '
                  'the input pipeline); compile and warm-up excluded',
      'img/s': 'median over rounds',
      'ratio A/B': 'median over rounds of the same-round ratio A/B',
      'quiet rounds': 'a probe before and after every turn found both cores '
                      f'free (effective cores >= {H.QUIET_CORES})',
      'wall time of this benchmark': f'{wall_s:.0f} s'}, ('setting', 'value'))
  rows, comparisons, hlo, builds = [], [], [], []
  mfu = mfu_rows(results, args.batch, args.peak_tflops)
  for label, (rates, info) in results.items():
    quiet = H.quiet_rounds(rates.cores)
    for name, r in rates.items():
      rows.append([label, name, K.DESCRIPTIONS.get(name, name), H.median(r),
                   f'{min(r):.3g}-{max(r):.3g}' if r else '',
                   H.median(H.pick(r, quiet)) if quiet else '-',
                   1000 * args.batch / H.median(r),
                   1000 * args.batch / H.median(rates.cpu[name])])
    comparisons += H.compare(rates, COMPARISONS, label)
    for name, i in info.items():
      hlo += [[label, name if prog in ('ours', 'ref') else prog,
               f'{h["flops"] / 1e9:.3f}', f'{h["bytes"] / 1e6:.1f}',
               h['copies'], h['fusions'], h.get('ynn_fusions', 0),
               h['convolutions']] for prog, h in i.get('hlo', {}).items()]
      builds.append([label, name, f'{i.get("warmup_s", 0):.1f}',
                     i.get('params', '-'), i.get('threads', '-'),
                     i.get('torch', '-'), i.get('compiled', '-'),
                     f'`{i["xla_flags"]}`' if 'xla_flags' in i else '-'])
  text = R.section(
      '## Train-step throughput (`bench/train_throughput.py`)', setup,
      R.table(['network', 'contender', 'what', 'img/s', 'img/s min-max',
               'img/s quiet rounds', 'ms / batch', 'CPU ms / batch'], rows),
      R.comparison_table(comparisons, label_col='network'),
      '### Compiled programs (XLA cost analysis of the optimized HLO; '
      '"ours, no donation": the step jitted without donation and shardings)',
      R.table(['network', 'program', 'GFLOP / step', 'MB accessed / step',
               'copy ops', 'fusions', 'of which YNN (kCustom)',
               'convolution ops'], hlo) if hlo else None,
      mfu_markdown(mfu, args.peak_tflops),
      R.cores_table({label: rates.cores
                     for label, (rates, _) in results.items()}),
      R.table(['network', 'contender', 'build + warm-up s', 'params',
               'threads', 'torch', 'compiled', 'XLA_FLAGS'], builds),
      pipeline_table(results, args, pipeline_info),
      R.table(['note'], [[n] for n in notes]) if notes else None)
  return text, comparisons, mfu


def mfu_rows(results, batch, peak_tflops):
  """Per JAX contender: the analytic FLOPs of a step (6 x MACs x batch), the
  FLOP/s achieved at the median img/s, MFU over `peak_tflops` (None without
  a peak), and XLA's own count of the compiled step beside it."""
  rows = []
  for label, (rates, info) in results.items():
    for name, r in rates.items():
      analytic = info.get(name, {}).get('analytic')
      if not analytic or not r:
        continue
      step_s = batch / H.median(r)
      flops = analytic['flops_per_step']
      xla = next(iter(info[name].get('hlo', {}).values()), {}).get('flops')
      rows.append(dict(
          network=label, contender=name, img_per_s=H.median(r),
          step_ms=1000 * step_s, macs_per_example=analytic['macs_per_example'],
          analytic_gflop_per_step=flops / 1e9,
          achieved_tflops=flops / step_s / 1e12,
          mfu=flops / step_s / 1e12 / peak_tflops if peak_tflops else None,
          peak_tflops=peak_tflops or None,
          xla_gflop_per_step=xla / 1e9 if xla else None,
          xla_tflops=xla / step_s / 1e12 if xla else None,
          xla_over_analytic=xla / flops if xla else None))
  return rows


def mfu_markdown(rows, peak_tflops):
  if not rows:
    return None
  head = ('### Achieved FLOP/s and MFU\n\nAnalytic FLOPs of a step: 6 x '
          'MACs x batch (MACs per example from `wt_jax.cost`); MFU = those '
          'FLOPs / the step time / ' +
          (f'{peak_tflops:g} TFLOP/s (the peak given).' if peak_tflops else
           'the peak (none given: `--peak_tflops` or PEAK_TFLOPS).') +
          ' XLA\'s count, `cost_analysis()[\'flops\']` of the compiled step, '
          'is shown beside it: on GPUs it leaves out the convolutions XLA '
          'hands to cuDNN, so it is not used for MFU.')
  return head + '\n\n' + R.table(
      ['network', 'contender', 'img/s', 'ms / step', 'GFLOP / step (analytic)',
       'TFLOP/s (analytic)', 'MFU', 'GFLOP / step (XLA\'s count)',
       'XLA\'s count / analytic'],
      [[r['network'], r['contender'], r['img_per_s'], f"{r['step_ms']:.2f}",
        f"{r['analytic_gflop_per_step']:.1f}", f"{r['achieved_tflops']:.3g}",
        f"{100 * r['mfu']:.3g}%" if r['mfu'] is not None else '-',
        f"{r['xla_gflop_per_step']:.1f}" if r['xla_gflop_per_step'] else '-',
        f"{r['xla_over_analytic']:.3f}" if r['xla_over_analytic'] else '-']
       for r in rows])


def pipeline_table(results, args, info):
  """The input pipeline's epoch: decode, rebuild, and amortized img/s."""
  if not info:
    return None
  n = info['steps_per_epoch'] * args.batch
  rows = []
  for label, (rates, _) in results.items():
    if 'pipeline' in rates and 'ours' in rates:
      steady = H.median(rates['pipeline'])
      amortized = n / (info['epoch_boundary_s'] + n / steady)
      rows.append([label, f'{amortized:,.0f}',
                   f'{amortized / H.median(rates["ours"]):.1f}x'])
  facts = R.facts({
      'train images': info['num_train'],
      'batches per epoch': info['steps_per_epoch'],
      'first batch after (s; the JPEGs decoded into the cache)':
          f'{info["first_batch_s"]:.1f}',
      'first epoch done after (s; excluded from the timing)':
          f'{info["warmup_s"]:.1f}',
      'next epoch\'s first batch (s; the per-epoch `make_dataset` rebuild '
      'of `train.local_train_batches`)': f'{info["epoch_boundary_s"]:.2f}'},
                   ('input pipeline', 'value'))
  return facts + '\n\n' + R.table(
      ['network', 'pipeline img/s with the rebuild amortized over the epoch',
       'x the train step'], rows)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--archs', default=DEFAULT_ARCHS,
                 help='networks, arch:width_mult,... (default %(default)s)')
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--rounds', type=int, default=6)
  p.add_argument('--steps', type=int, default=3,
                 help='train steps per contender per round')
  p.add_argument('--pipeline_batches', type=int, default=100)
  for flag in ('no_torch', 'no_torch_1thread', 'no_ynn', 'no_bf16',
               'no_pipeline', 'no_ablation'):
    p.add_argument('--' + flag, action='store_true')
  p.add_argument('--contenders', default='',
                 help='run only these (comma list, e.g. ours_bf16,ref_bf16); '
                 'default: every one not switched off, ref_bf16 excepted')
  p.add_argument('--peak_tflops', type=float,
                 default=float(os.environ.get('PEAK_TFLOPS') or 0),
                 help='the chip\'s peak TFLOP/s for MFU (default '
                 '$PEAK_TFLOPS; 0: no MFU)')
  p.add_argument('--torch_threads', type=int, default=0,
                 help='torch threads (default: the number of cores)')
  p.add_argument('--torch_compile', action='store_true',
                 help='torch.compile the PyTorch model (off by default)')
  args = H.parse(p, dict(rounds=3, steps=2, pipeline_batches=50),
                 '3 rounds of 2 steps, 50 pipeline batches')
  if args.contenders and 'pipeline' not in args.contenders.split(','):
    args.no_pipeline = True
  notes, results, raw, pipeline, pipeline_info = [], {}, {}, None, None
  t_start = time.perf_counter()
  try:
    if not args.no_pipeline:
      pipeline = H.Worker('pipeline', K.worker_argv(
          'pipeline', '--batch', str(args.batch)), H.xla_env('off'))
    for spec in args.archs.split(','):
      arch, wm = spec.split(':')
      label = f'{arch} w{float(wm):g}'
      if pipeline is not None and pipeline_info is None:
        try:
          pipeline_info = pipeline.wait_ready()
          log(f'pipeline ready ({pipeline_info["warmup_s"]:.1f} s)')
        except RuntimeError as e:
          notes.append(f'input pipeline skipped: {e}')
          pipeline = None
      rates, info, arch_notes = bench_arch(arch, float(wm), args, pipeline)
      notes += [f'{label}: {n}' for n in arch_notes]
      results[label] = (rates, info)
      raw[label] = {**rates.raw(), 'info': info}
  finally:
    if pipeline is not None:
      pipeline.close()
  text, comparisons, mfu = render(results, args, notes, pipeline_info,
                                  time.perf_counter() - t_start)
  H.emit(args, text, {'raw': raw, 'readings': comparisons, 'notes': notes,
                      'pipeline': pipeline_info, 'mfu': mfu,
                      'args': vars(args)})
  if args.contenders:  # the ones asked for by name must all have run
    lost = [f'{label}: {name}' for name in args.contenders.split(',')
            for label, (rates, _) in results.items() if name not in rates]
    if lost:
      raise SystemExit(f'contenders that did not run: {", ".join(lost)} '
                       '(see the notes)')


if __name__ == '__main__':
  main()
