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

Reported: img/s per contender (median over rounds), the comparisons of
`COMPARISONS` (`harness.compare`), XLA's cost analysis of the compiled
programs (FLOPs, bytes, copies, fusions: noise-free), effective cores per
round, build times, the input pipeline's epoch boundary.
"""
from __future__ import annotations

import argparse
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
    ('pipeline', 'ours', 'input pipeline / train step', 2.0, True),
)
log = H.logger('train_throughput')


def worker_specs(arch, width_mult, args, notes):
  """{contender: (contenders.py arguments, YNN setting)} for one network."""
  common = ['--arch', arch, '--width_mult', str(width_mult),
            '--batch', str(args.batch)]
  specs = {'ours': (['ours', '--ablation'] + common, 'off'),
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
      hlo += [[label, name if prog == 'ours' else prog,
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
      R.cores_table({label: rates.cores
                     for label, (rates, _) in results.items()}),
      R.table(['network', 'contender', 'build + warm-up s', 'params',
               'threads', 'torch', 'compiled', 'XLA_FLAGS'], builds),
      pipeline_table(results, args, pipeline_info),
      R.table(['note'], [[n] for n in notes]) if notes else None)
  return text, comparisons


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
               'no_pipeline'):
    p.add_argument('--' + flag, action='store_true')
  p.add_argument('--torch_threads', type=int, default=0,
                 help='torch threads (default: the number of cores)')
  p.add_argument('--torch_compile', action='store_true',
                 help='torch.compile the PyTorch model (off by default)')
  args = H.parse(p, dict(rounds=3, steps=2, pipeline_batches=50),
                 '3 rounds of 2 steps, 50 pipeline batches')
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
  text, comparisons = render(results, args, notes, pipeline_info,
                             time.perf_counter() - t_start)
  H.emit(args, text, {'raw': raw, 'readings': comparisons, 'notes': notes,
                      'pipeline': pipeline_info, 'args': vars(args)})


if __name__ == '__main__':
  main()
