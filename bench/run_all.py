r"""Runs every benchmark and writes results/bench.md.

  python bench/run_all.py            # full: ~15-17 minutes on 2 cores
  python bench/run_all.py --quick    # every script in its quick mode

Each script runs in its own subprocess (XLA reads its flags once per
process) and writes its markdown section and raw numbers; this script
prints the report and writes it (`--out`, default results/bench.md)
atomically: the run's facts (command, date, wall time, load) and the
machine's, a summary table of the ratios against their targets, every
section, and last the hand-written "## Reading" section of the file it
replaces (kept as it is: a person writes it). Progress goes to stderr. The
exit status is non-zero if a script failed (its error is in the report).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import harness as H
import machine
import rendering as R
# wt_jax after harness, which puts this repository first on sys.path.
# pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
from wt_jax.util import files
# pylint: enable=g-import-not-at-top,wrong-import-position,g-bad-import-order

SCRIPTS = ('train_throughput', 'morphnet_step', 'autoslim_step', 'dmcp_step',
           'seeds_step', 'input_pipeline', 'overhead', 'trace_time')
READING = '## Reading'


def _throughput_rows(readings) -> list[list]:
  rows = []
  for r in readings:
    what = f'{r["what"]} ({r["label"]})'
    if (r['a'], r['b']) in (('ours', 'ref'), ('pipeline', 'ours')):
      rows.append([what, f'{r["ratio"]:.3f}', f'>= {r["target"]:g}',
                   r['verdict']])
    elif r['b'].startswith('torch'):
      rows.append([what, f'{r["ratio"]:.3f}',
                   'reported' + (' (was ~0.58)' if r['b'] == 'torch' else ''),
                   f'CPU-time ratio {r["cpu"]:.2f}' +
                   (f', quiet rounds {r["quiet"]:.3f}' if r['n_quiet']
                    else '')])
    elif r['b'] == 'ours_xla_default':
      rows.append([what, f'{r["ratio"]:.3f}',
                   'reported (wt_jax docstring: 1.6-2.1)',
                   f'CPU-time ratio {r["cpu"]:.2f}'])
    elif r['a'] == 'ours_bf16':
      rows.append([what, f'{r["ratio"]:.3f}', 'reported',
                   f'CPU-time ratio {r["cpu"]:.2f}'])
  return rows


def _other_rows(results) -> list[list]:
  rows = []
  mn = results.get('morphnet_step', {})
  if mn.get('step'):
    r = mn['step']['reading']
    rows.append(['MorphNet step / plain step (step time)',
                 f'{r["ratio"]:.3f}', '<= 1.05', r['verdict']])
  if mn.get('run'):
    d = mn['run']['details']
    rows.append(['MorphNet run on CIFAR-10: learned / start MACs',
                 f'{d["learned_macs"] / d["start_macs"]:.3f}',
                 '<= 0.5 (shrink_to)',
                 'reached' if d['reached_target'] else 'not reached'])
  if results.get('autoslim_step'):
    r = results['autoslim_step']['reading']
    rows.append(['AutoSlim sandwich step / plain step', f'{r["ratio"]:.2f}',
                 '~3-4 (expected)',
                 'as expected' if 2.85 <= r['ratio'] <= 4.4 else
                 'outside ~3-4'])
  if results.get('dmcp_step'):
    r = results['dmcp_step']['reading']
    rows.append(['DMCP weight step / plain step', f'{r["weight"]:.2f}',
                 'reported', 'sandwich, as AutoSlim'])
    rows.append(['DMCP architecture step / plain step', f'{r["arch"]:.2f}',
                 '~0.67 (analytic)', f'CPU-time ratio {r["arch_cpu"]:.2f}; '
                 f'full DMCP step / plain {r["dmcp"]:.2f}'])
  if results.get('seeds_step', {}).get('step'):
    r = results['seeds_step']['step']['reading']
    rows.append([f'{r["what"]} (CPU)', f'{r["ratio"]:.2f}',
                 'reported (the gain is on accelerators)',
                 f'CPU-time ratio {r["cpu"]:.2f}'])
  if results.get('input_pipeline'):
    p = results['input_pipeline']
    per_core = {c: H.median(p['one_core']['rates'][c])
                for c in ('wt_jax', 'before')}
    rows.append(['input pipeline at 224: img/s per host core (wt_jax; '
                 'before fused decoding)', f'{per_core["wt_jax"]:.0f}; '
                 f'{per_core["before"]:.0f}', 'reported',
                 f'{p["step_rate"] / per_core["wt_jax"]:.0f} host cores per '
                 f'accelerator at {p["step_rate"]:,.0f} img/s'])
  o = results.get('overhead', {})
  if o.get('analytic'):
    c = o['analytic']['compound (all four)']['cost_ratio']
    rows.append(['compound projection, ResNet-18/ImageNet (analytic)',
                 f'{c:.1f}', 'paper: 320 nominal', f'{c / 320:.2f} of nominal'])
  if o.get('measured'):
    c = o['measured']['compound (all four)']
    rows.append(['compound projection, digits (measured / analytic)',
                 f'{c["measured"]:.1f} / {c["cost_ratio"]:.1f}', '-',
                 'see section'])
  return rows


def _trace_rows(results) -> list[list]:
  t = results.get('trace_time', {})
  if not t.get('seconds'):
    return []
  s = t['seconds']['register']
  return [['register_arch (trace) of ResNet-50: seconds; / forward compile',
           f'{s:.2f} s; {t["ratios"]["register / compile"]:.2f}',
           '<= a few s (issue 15)',
           ('a few s at most' if s <= 5 else 'over 5 s') +
           ('' if t.get('same') else '; traced MACs DIFFER')]]


def summary(results) -> str:
  """The ratios with a target (or an expectation), one row each."""
  rows = _throughput_rows(results.get('train_throughput', {}).get(
      'readings', [])) + _other_rows(results) + _trace_rows(results)
  return R.table(['ratio', 'value', 'target', 'verdict'], rows) if rows else ''


def run_script(name, quick, tmp):
  """(markdown section, raw results or None) of one script's run."""
  frag, js = os.path.join(tmp, name + '.md'), os.path.join(tmp, name + '.json')
  cmd = [sys.executable, os.path.join(H.BENCH, name + '.py'), '--out', frag,
         '--json', js] + (['--quick'] if quick else [])
  print(f'[run_all] {name}: {" ".join(cmd[1:])}', file=sys.stderr, flush=True)
  t = time.perf_counter()
  proc = subprocess.run(cmd, cwd=H.REPO, stdout=subprocess.DEVNULL,
                        check=False)
  print(f'[run_all] {name}: exit {proc.returncode} after '
        f'{time.perf_counter() - t:.0f} s', file=sys.stderr, flush=True)
  if proc.returncode != 0 or not os.path.exists(frag):
    return (f'## {name}\n\nFAILED (exit {proc.returncode}); run '
            f'`python bench/{name}.py` to see the error.\n'), None
  with open(frag) as f:
    text = f.read()
  raw = {}
  if os.path.exists(js):
    with open(js) as f:
      raw = json.load(f)
  return text, raw


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--quick', action='store_true')
  p.add_argument('--only', default=','.join(SCRIPTS),
                 help='comma-separated subset of ' + ', '.join(SCRIPTS))
  p.add_argument('--out', default=os.path.join(H.REPO, 'results', 'bench.md'))
  args = p.parse_args()
  names = args.only.split(',')
  unknown = [n for n in names if n not in SCRIPTS]
  if unknown:
    raise SystemExit(f'--only: unknown script {unknown[0]!r}; known: '
                     f'{SCRIPTS}')
  command = 'python ' + ' '.join(shlex.quote(a) for a in
                                 [os.path.relpath(sys.argv[0], H.REPO)] +
                                 sys.argv[1:])
  started = datetime.datetime.now(datetime.timezone.utc)
  load_start, t0 = machine.load_avg(), time.perf_counter()
  sections, results, failed = [], {}, []
  tmp = tempfile.mkdtemp(prefix='wt_bench_')
  for name in names:
    text, raw = run_script(name, args.quick, tmp)
    sections.append(text)
    if raw is None:
      failed.append(name)
    else:
      results[name] = raw
  total = time.perf_counter() - t0
  reading = ''
  if os.path.exists(args.out):
    with open(args.out) as f:
      reading = R.kept_section(f.read(), READING)
  run = R.facts({
      'command': f'`{command}` (from the repository root)',
      'date': started.strftime('%Y-%m-%d %H:%M UTC'),
      'total wall time': f'{total / 60:.1f} min' +
                         (' (quick mode)' if args.quick else ''),
      'load average at start / end': f'{load_start} / {machine.load_avg()}'},
                ('run', 'value'))
  text = R.section('# wt_jax benchmarks', run,
                   R.facts(machine.facts(H.USER_XLA_FLAGS),
                           ('machine', 'value')),
                   R.section('## Summary', summary(results)), *sections,
                   reading)
  print(text)
  files.write_text(args.out, text)
  print(f'[run_all] wrote {args.out} ({total / 60:.1f} min)', file=sys.stderr)
  if failed:
    print(f'[run_all] failed: {", ".join(failed)}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  main()
