r"""Runs every benchmark and writes results/bench.md.

  python bench/run_all.py            # full: ~15-17 minutes on 2 cores
  python bench/run_all.py --quick    # every script in its quick mode

Each script runs in its own subprocess (XLA reads its flags once per
process) and writes its markdown section; this script prints them and writes
results/bench.md atomically (`wt_jax.files.write_text`) with the exact command,
the date, the machine (nproc, CPU model, memory, versions), a summary of the
ratios against their targets, and every section with its reading. Progress
goes to stderr. The exit status is non-zero if a script failed (its error is
in the report).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # pylint: disable=g-import-not-at-top,wrong-import-position

SCRIPTS = ('train_throughput', 'morphnet_step', 'autoslim_step', 'overhead')


def _version(name):
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return 'not installed'


def machine() -> str:
  mem = ''
  try:
    with open('/proc/meminfo') as f:
      kb = int(f.readline().split()[1])
    mem = f'{kb / 2**20:.1f} GiB'
  except (OSError, ValueError, IndexError):
    pass
  torch = _version('torch')
  return '\n'.join([
      f'- nproc: {os.cpu_count()}; CPU: {C.cpu_model()} (flags: '
      f'{", ".join(C.cpu_flags()) or "none of avx2/avx512f/avx512_bf16"}); '
      f'memory: {mem}; {platform.system()} {platform.release()}',
      f'- Python {platform.python_version()}; jax {_version("jax")}, jaxlib '
      f'{_version("jaxlib")}, flax {_version("flax")}, optax '
      f'{_version("optax")}, tensorflow-cpu {_version("tensorflow-cpu")}, '
      f'torch {torch}' + (' (PyTorch rows skipped)'
                          if torch == 'not installed' else ''),
      f'- XLA_FLAGS of the benchmark processes: '
      f'`{os.environ.get("XLA_FLAGS", "") or "(unset)"}` + wt_jax\'s default '
      f'`--xla_cpu_experimental_ynn_fusion_type=` unless stated otherwise',
  ])


def summary(results) -> str:
  """The ratios with a target (or an expectation), one row each."""
  rows = []
  tt = results.get('train_throughput')
  if tt:
    for r in tt.get('readings', []):
      if (r['a'], r['b']) in (('ours', 'ref'), ('pipeline', 'ours')):
        rows.append([f'{r["what"]} ({r["label"]})', f'{r["ratio"]:.3f}',
                     f'>= {r["target"]:g}', r['verdict']])
      elif r['b'].startswith('torch'):
        rows.append([f'{r["what"]} ({r["label"]})', f'{r["ratio"]:.3f}',
                     'reported' + (' (was ~0.58)' if r['b'] == 'torch'
                                   else ''),
                     f'CPU-time ratio {r["cpu"]:.2f}'
                     + (f', quiet rounds {r["quiet"]:.3f}' if r['n_quiet']
                        else '')])
      elif r['b'] == 'ours_xla_default':
        rows.append([f'{r["what"]} ({r["label"]})', f'{r["ratio"]:.3f}',
                     'reported (wt_jax docstring: 1.6-2.1)',
                     f'CPU-time ratio {r["cpu"]:.2f}'])
      elif r['a'] == 'ours_bf16':
        rows.append([f'{r["what"]} ({r["label"]})', f'{r["ratio"]:.3f}',
                     'reported', f'CPU-time ratio {r["cpu"]:.2f}'])
  mn = results.get('morphnet_step', {}).get('step')
  if mn:
    r = mn['reading']
    rows.append(['MorphNet step / plain step (step time)',
                 f'{r["ratio"]:.3f}', '<= 1.05', r['verdict']])
  run = results.get('morphnet_step', {}).get('run')
  if run:
    d = run['details']
    rows.append(['MorphNet run on CIFAR-10: learned / start MACs',
                 f'{d["learned_macs"] / d["start_macs"]:.3f}',
                 '<= 0.5 (shrink_to)',
                 'reached' if d['reached_target'] else 'not reached'])
  a = results.get('autoslim_step')
  if a:
    r = a['reading']
    rows.append(['AutoSlim sandwich step / plain step', f'{r["ratio"]:.2f}',
                 '~3-4 (expected)',
                 'as expected' if 2.85 <= r['ratio'] <= 4.4 else
                 'outside ~3-4'])
  o = results.get('overhead', {})
  if o.get('analytic'):
    c = o['analytic']['compound (all four)']['cost_ratio']
    rows.append(['compound projection, ResNet-18/ImageNet (analytic)',
                 f'{c:.1f}', 'paper: 320 nominal', f'{c / 320:.2f} of nominal'])
  if o.get('measured'):
    m = o['measured']
    d, c = m['direct'], m['compound (all four)']
    rows.append(['compound projection, digits (measured / analytic)',
                 f'{c["measured"]:.1f} / {c["cost_ratio"]:.1f}', '-',
                 'see section'])
  if not rows:
    return ''
  return C.table(['ratio', 'value', 'target', 'verdict'], rows)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--quick', action='store_true')
  p.add_argument('--only', default=','.join(SCRIPTS),
                 help='comma-separated subset of ' + ', '.join(SCRIPTS))
  p.add_argument('--out', default=os.path.join(C.REPO, 'results', 'bench.md'))
  args = p.parse_args()
  command = 'python ' + ' '.join(shlex.quote(a) for a in
                                 [os.path.relpath(sys.argv[0], C.REPO)] +
                                 sys.argv[1:])
  started = datetime.datetime.now(datetime.timezone.utc)
  load_start = C.load_avg()
  t0 = time.perf_counter()
  sections, results, failed = [], {}, []
  tmp = tempfile.mkdtemp(prefix='wt_bench_')
  for name in args.only.split(','):
    if name not in SCRIPTS:
      raise SystemExit(f'--only: unknown script {name!r}; known: {SCRIPTS}')
    frag, js = os.path.join(tmp, name + '.md'), os.path.join(tmp, name + '.json')
    cmd = [sys.executable, os.path.join(C.BENCH, name + '.py'), '--out', frag,
           '--json', js] + (['--quick'] if args.quick else [])
    print(f'[run_all] {name}: {" ".join(cmd[1:])}', file=sys.stderr,
          flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=C.REPO, stdout=subprocess.DEVNULL,
                          check=False)
    took = time.perf_counter() - t
    print(f'[run_all] {name}: exit {proc.returncode} after {took:.0f} s',
          file=sys.stderr, flush=True)
    if proc.returncode == 0 and os.path.exists(frag):
      with open(frag) as f:
        sections.append(f.read())
      if os.path.exists(js):
        with open(js) as f:
          results[name] = json.load(f)
    else:
      failed.append(name)
      sections.append(f'## {name}\n\nFAILED (exit {proc.returncode}); run '
                      f'`python bench/{name}.py` to see the error.\n')
  total = time.perf_counter() - t0
  head = [
      '# wt_jax benchmarks', '',
      f'Generated by `{command}` (from the repository root) on '
      f'{started.strftime("%Y-%m-%d %H:%M UTC")}; total wall time '
      f'{total / 60:.1f} min{" (quick mode)" if args.quick else ""}.', '',
      'Machine:', '', machine(),
      f'- load average at start / end: {load_start} / {C.load_avg()}', '',
      'The machine is shared and noisy: for long phases a neighbour takes '
      'about one of the two cores without any steal time showing. So every '
      'benchmark measures its contenders side by side in the same run, '
      'interleaved in rounds (order rotated), and reports the median of the '
      'same-round ratios; the train-step benchmarks also report the CPU-time '
      'ratio (CPU seconds per image, which the neighbour hardly moves), the '
      'ratio over the "quiet" rounds (both cores free, from a probe before '
      'and after each turn), and noise-free facts of the compiled programs '
      '(XLA FLOPs and bytes).', '',
      '## Summary', '', summary(results), '']
  text = '\n'.join(head) + '\n' + '\n'.join(sections)
  print(text)
  from wt_jax import files  # pylint: disable=g-import-not-at-top
  files.write_text(args.out, text)
  print(f'[run_all] wrote {args.out} ({total / 60:.1f} min)', file=sys.stderr)
  if failed:
    print(f'[run_all] failed: {", ".join(failed)}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  main()
