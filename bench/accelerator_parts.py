r"""The pieces of `bench/accelerator_check.sh` that are easier in Python.

  python bench/accelerator_parts.py versions OUT [--expect_accelerator]
      the installed versions, what is importable, the devices -> OUT/versions.md,
      OUT/versions.json; exit 2 if a core requirement is missing, 4 if
      --expect_accelerator and JAX sees only a CPU.
  python bench/accelerator_parts.py cifar SRC CACHE
      CIFAR-10 JPEGs as a folder (`folder:` source): SRC is a folder with
      train/ and test/ (used as it is), the zip of ../shared/data, or the file
      `cifar_pack.py pack` makes (numpy arrays: data, offsets, names); the
      last two are unpacked into CACHE once (a marker names the source).
      Prints the folder.
  python bench/accelerator_parts.py cifar_run SRC CACHE OUT -- [--config.* ...]
      `cifar`, then `python -m wt_jax.main --config=configs/cifar10_resnet20.py`
      on it (3 seeds in one program) in a temporary workdir; its results,
      timing, config and final.json files are copied to OUT/cifar10/.
  python bench/accelerator_parts.py summary OUT MARKDOWN --seconds=S ...
      gathers the steps' outputs in OUT into one markdown file.

Needs only the standard library and numpy, except `versions` (which
imports jax to list the devices). Installs nothing.
"""
from __future__ import annotations

import argparse
import glob
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (distribution, import name, core requirement of setup.cfg)
PACKAGES = (
    ('jax', 'jax', True), ('jaxlib', 'jaxlib', True), ('flax', 'flax', True),
    ('optax', 'optax', True), ('orbax-checkpoint', 'orbax.checkpoint', True),
    ('chex', 'chex', True), ('numpy', 'numpy', True),
    ('ml_collections', 'ml_collections', True), ('absl-py', 'absl', True),
    ('scikit-learn', 'sklearn', True), ('matplotlib', 'matplotlib', True),
    ('tensorboard', 'tensorboard', True), ('pillow', 'PIL', True),
    ('psutil', 'psutil', True), ('tqdm', 'tqdm', True),
    ('etils', 'etils', False), ('pytest', 'pytest', False),
    ('pytest-xdist', 'xdist', False), ('hypothesis', 'hypothesis', False),
    ('tensorflow', 'tensorflow', False),
    ('tensorflow-cpu', 'tensorflow', False),
    ('tensorflow-datasets', 'tensorflow_datasets', False),
    ('clu', 'clu', False),
)


def _version(dist):
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return None


def _importable(module):
  """True / False, or the reason find_spec failed (a blocked import)."""
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError) as e:
    return f'no ({e})'


def _pins():
  """{distribution: specifier} of setup.cfg's install_requires."""
  try:
    with open(os.path.join(REPO, 'setup.cfg')) as f:
      text = f.read()
  except OSError:
    return {}
  block = text.split('install_requires =', 1)[-1].split('\n[', 1)[0]
  out = {}
  for line in block.splitlines():
    m = re.match(r'\s+([A-Za-z0-9_.\-]+)\s*(.*)$', line)
    if m:
      out[m.group(1).lower().replace('_', '-')] = m.group(2).strip()
  return out


def versions(out, expect_accelerator):
  pins = _pins()
  rows, missing = [], []
  for dist, module, core in PACKAGES:
    v = _version(dist)
    if dist == 'tensorflow' and v is None:
      continue  # tensorflow-cpu's row says it
    if dist == 'tensorflow-cpu' and v is None and _version('tensorflow'):
      continue
    imp = _importable(module)
    if core and imp is not True:
      missing.append(dist)
    rows.append(dict(package=dist, module=module, version=v, importable=imp,
                     core=core,
                     pin=pins.get(dist.lower().replace('_', '-'), '')))
  info = dict(python=platform.python_version(), executable=sys.executable,
              packages=rows, missing_core=missing)
  if not any(r['package'] == 'jax' and r['importable'] is True for r in rows):
    _write_versions(out, info)
    print('jax is not importable: nothing to check', file=sys.stderr)
    return 2
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  info.update(backend=jax.default_backend(), device_count=len(devices),
              devices=[f'{d} ({d.device_kind})' for d in devices])
  if shutil.which('nvidia-smi'):
    try:
      info['nvidia_smi'] = subprocess.run(
          ['nvidia-smi', '--query-gpu=name,driver_version,memory.total,'
           'clocks.max.sm', '--format=csv,noheader'], capture_output=True,
          text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
      info['nvidia_smi'] = repr(e)
  _write_versions(out, info)
  print(open(os.path.join(out, 'versions.md')).read())
  if missing:
    print(f'missing core requirements: {", ".join(missing)}; put their '
          'wheels in a folder and pass --wheels=DIR (see the script\'s '
          'header)', file=sys.stderr)
    return 2
  if expect_accelerator and info['backend'] == 'cpu':
    print('JAX sees only a CPU here: install the accelerator build of jax '
          '(e.g. pip install "jax[cuda13]>=0.10,<0.12"; jax[cuda12] with an '
          'NVIDIA driver older than 580), or run --cpu-dry-run',
          file=sys.stderr)
    return 4
  return 0


def _write_versions(out, info):
  def imp(x):
    return 'yes' if x is True else ('no' if x is False else x)
  lines = [f'Python {info["python"]} (`{info["executable"]}`)', '',
           '| package | version | importable | setup.cfg |',
           '|---|---|---|---|']
  for r in info['packages']:
    pin = r['pin'] or ('(core)' if r['core'] else '(not core)')
    lines.append(f'| {r["package"]} | {r["version"] or "-"} | '
                 f'{imp(r["importable"])} | {pin} |')
  if 'backend' in info:
    lines += ['', f'JAX backend: {info["backend"]}, {info["device_count"]} '
              f'device(s): {", ".join(info["devices"])}']
  if info.get('nvidia_smi'):
    lines += ['', f'nvidia-smi: {info["nvidia_smi"]}']
  if info['missing_core']:
    lines += ['', f'MISSING core requirements: {", ".join(info["missing_core"])}']
  with open(os.path.join(out, 'versions.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(out, 'versions.json'), 'w') as f:
    json.dump(info, f, indent=1)


# ---------------------------------------------------------------------------
# CIFAR-10 as a folder.
# ---------------------------------------------------------------------------


def cifar(src, cache):
  print(cifar_folder(src, cache))
  return 0


def cifar_folder(src, cache):
  """The folder of CIFAR-10 JPEGs from `src` (see the module doc)."""
  src = os.path.abspath(src)
  if os.path.isdir(src):
    if not (os.path.isdir(os.path.join(src, 'train')) and
            os.path.isdir(os.path.join(src, 'test'))):
      raise SystemExit(f'--cifar={src}: a folder must hold train/ and test/')
    return src
  if not os.path.isfile(src):
    raise SystemExit(f'--cifar={src}: no such file or folder')
  stamp = dict(source=src, size=os.path.getsize(src),
               mtime=int(os.path.getmtime(src)))
  marker = os.path.join(cache, '.wt_cifar_source.json')
  if os.path.exists(marker):
    with open(marker) as f:
      if json.load(f) == stamp:
        return cache
    shutil.rmtree(cache)  # ours, from another source
  elif os.path.isdir(cache) and os.listdir(cache):
    raise SystemExit(f'{cache} exists and was not made by this script; set '
                     'CIFAR_CACHE to another folder')
  os.makedirs(cache, exist_ok=True)
  if zipfile.is_zipfile(src) and not src.endswith('.npz'):
    with zipfile.ZipFile(src) as z:
      z.extractall(cache)
  else:
    _unpack(src, cache)
  for split in ('train', 'test'):
    if not os.path.isdir(os.path.join(cache, split)):
      raise SystemExit(f'{src}: no {split}/ folder in it')
  with open(marker, 'w') as f:
    json.dump(stamp, f)
  return cache


def cifar_run(src, cache, out, flags):
  """Unpacks (once), runs the CLI in a temporary workdir, keeps its small
  outputs (no checkpoints, no TensorBoard events) in OUT/cifar10."""
  import tempfile  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  t = time.time()
  folder = cifar_folder(src, cache)
  print(f'CIFAR-10 JPEGs in {folder} ({time.time() - t:.0f} s)', flush=True)
  work = tempfile.mkdtemp(prefix='wt_accel_cifar10.')
  cmd = [sys.executable, '-m', 'wt_jax.main',
         '--config=configs/cifar10_resnet20.py', f'--workdir={work}',
         f'--config.data.source=folder:{folder}', '--config.seeds=0,1,2',
         *flags]
  with open(os.path.join(out, 'cifar10.cmd'), 'w') as f:
    f.write(' '.join(['python'] + cmd[1:]) + '\n')
  print(' '.join(cmd), flush=True)
  rc = subprocess.call(cmd, cwd=REPO)
  dest = os.path.join(out, 'cifar10')
  for root, dirs, names in os.walk(work):
    dirs[:] = [d for d in dirs if d not in ('checkpoints', 'superseded')]
    for name in names:
      if name.endswith(('.json', '.jsonl', '.md')):
        rel = os.path.relpath(os.path.join(root, name), work)
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy(os.path.join(root, name), os.path.join(dest, rel))
  print(f'workdir: {work} (small outputs copied to {dest})')
  return rc


def _unpack(src, out):
  """The inverse of ../shared/tools/cifar_pack.py's `pack` (the same
  format; that tool does not travel with the checkout)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  with np.load(src) as f:
    data, offsets = f['data'], f['offsets']
    names = f['names'].tobytes().decode().split('\n')
  for i, name in enumerate(names):
    path = os.path.join(out, name)
    if os.path.isabs(name) or '..' in name.split('/'):
      raise SystemExit(f'{src}: bad member name {name!r}')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as fh:
      fh.write(data[offsets[i]:offsets[i + 1]].tobytes())


# ---------------------------------------------------------------------------
# The summary.
# ---------------------------------------------------------------------------


def _read(path, default=None):
  try:
    with open(path) as f:
      return f.read()
  except OSError:
    return default


def _json(path):
  text = _read(path)
  try:
    return json.loads(text) if text else None
  except ValueError:
    return None


def _steps(out):
  rows = []
  for line in (_read(os.path.join(out, 'steps.tsv')) or '').splitlines():
    name, rc, seconds, note = (line.split('\t') + ['', '', '', ''])[:4]
    rows.append(dict(name=name, rc=rc, seconds=seconds, note=note))
  return rows


def _status(step):
  if step is None:
    return 'not run'
  if step['rc'] == '0':
    return 'ok'
  if step['rc'] in ('124', '137'):
    return f'TIMED OUT ({step["note"]})'
  if step['rc'] == 'skip':
    return f'skipped ({step["note"]})'
  return f'FAILED (exit {step["rc"]}{"; " + step["note"] if step["note"] else ""})'


def _tests_digest(log):
  """The pytest lines worth keeping: counts, failures, skips, slowest."""
  if not log:
    return '(no output)'
  lines = log.splitlines()
  keep, on = [], False
  for line in lines:
    if re.match(r'=+ (short test summary info|slowest \d+ durations) =+',
                line):
      on = True
    elif re.match(r'=+ (FAILURES|ERRORS|warnings summary) =+', line):
      on = False
    if on or re.match(r'^(=+ )?\d+ (passed|failed|skipped|error)', line) or \
        'skip_without_tf:' in line:
      keep.append(line)
  return '\n'.join(keep[-60:]) or '\n'.join(lines[-15:])


def _throughput(out, lines):
  t = _json(os.path.join(out, 'throughput.json'))
  if not t:
    return
  for r in t.get('mfu', []):
    mfu = (f'MFU {100 * r["mfu"]:.3g}% of {r["peak_tflops"]:g} TFLOP/s'
           if r.get('mfu') is not None else 'no peak given')
    xla = (f'; XLA\'s count {r["xla_gflop_per_step"]:.1f} GFLOP/step = '
           f'{r["xla_over_analytic"]:.3f} x analytic' if r.get(
               'xla_gflop_per_step') else '')
    lines.append(f'- {r["network"]}, {r["contender"]}: '
                 f'{r["img_per_s"]:,.0f} img/s ({r["step_ms"]:.1f} ms/step), '
                 f'{r["achieved_tflops"]:.3g} TFLOP/s analytic '
                 f'({r["analytic_gflop_per_step"]:.0f} GFLOP/step = 6 x MACs '
                 f'x batch), {mfu}{xla}')
  for c in t.get('readings', []):
    lines.append(f'- {c["label"]}: {c["what"]} = {c["ratio"]:.3f} (median of '
                 f'same-round ratios, {c["min"]:.3f}-{c["max"]:.3f})')


def _cifar(out, lines):
  res = _json(os.path.join(out, 'cifar10', 'results.json'))
  finals = sorted(glob.glob(os.path.join(out, 'cifar10', 'train', '*',
                                         'seed_*', 'final.json')))
  by_arm = {}
  for path in finals:
    arm = path.split(os.sep)[-3]
    f = _json(path) or {}
    by_arm.setdefault(arm, []).append(f)
  for arm, fs in sorted(by_arm.items()):
    top1 = [100 * f['top1'] for f in fs if 'top1' in f]
    rate = [f['img_per_s'] for f in fs if 'img_per_s' in f]
    lines.append(f'- {arm}: {len(fs)} seed(s), top-1 '
                 f'{", ".join(f"{x:.2f}" for x in top1)} %; training '
                 f'{", ".join(f"{x:,.0f}" for x in rate)} img/s per seed')
  if res is None and not finals:
    lines.append('- no results (see cifar10.log)')


def summary(args):
  out = args.out
  steps = {s['name']: s for s in _steps(out)}
  versions = _json(os.path.join(out, 'versions.json')) or {}
  dry = args.dry
  lines = [f'# Accelerator check{" (CPU dry run: plumbing only, tiny sizes)" if dry else ""}',
           '',
           f'Generated by `{args.command}` in {args.seconds} s of wall time '
           f'({args.date}, commit {args.commit}).',
           '',
           '| step | status | seconds |', '|---|---|---:|']
  for name, what in (('versions', 'versions and devices'),
                     ('tests', 'tests of the device path'),
                     ('throughput', 'ResNet-18 224 bf16: ours vs reference'),
                     ('cifar10', 'CIFAR-10 uniform vs transferred (CLI)'),
                     ('plan', 'accuracy grid plan at the measured rate')):
    s = steps.get(name)
    lines.append(f'| {what} | {_status(s)} | {s["seconds"] if s else "-"} |')
  lines += ['', '## What each step measured', '']
  tests = _read(os.path.join(out, 'tests.log'))
  counts = re.findall(r'^(?:=+ )?(\d+ (?:passed|failed|skipped|error).*?)'
                      r'(?: =+)?$', tests or '', re.M)
  lines.append(f'- tests: {counts[-1] if counts else "no result"}')
  _throughput(out, lines)
  _cifar(out, lines)
  lines += ['', '## Versions and devices', '',
            (_read(os.path.join(out, 'versions.md')) or '(none)').strip(), '',
            '## Tests on the device', '',
            'Selected: ' + args.tests_selection, '', '```',
            _tests_digest(tests), '```', '']
  tp = _read(os.path.join(out, 'throughput.md'))
  if tp and tp.startswith('## '):  # its own heading: one level down
    tp = tp.split('\n', 1)[-1]
  lines += ['## ResNet-18, 224px, 1000 classes: our train step vs the plain '
            'Flax reference (`bench/train_throughput.py`)', '',
            tp.strip() if tp else '(no output: see throughput.log)', '']
  lines += ['## CIFAR-10 ResNet-20: uniform vs compound-transferred (the CLI)',
            '', 'Command: `' + (_read(os.path.join(out, 'cifar10.cmd')) or
                                '-').strip() + '`', '']
  rmd = _read(os.path.join(out, 'cifar10', 'results.md'))
  if rmd:  # its headings two levels down; its plots are not copied
    rmd = '\n'.join('##' + l if l.startswith('#') else l
                     for l in rmd.splitlines() if not l.startswith('!['))
  lines += [rmd.strip() if rmd else '(no results.md: see cifar10.log)', '']
  timing = _json(os.path.join(out, 'cifar10', 'timing.json'))
  if timing:
    lines += ['Where the wall time went (`timing.json`):', '', '```',
              json.dumps(timing, indent=1)[:3000], '```', '']
  plan = _read(os.path.join(out, 'plan.md'))
  if plan:
    lines += ['## The accuracy grid on this accelerator (`python '
              'experiments/accuracy_grid.py --budget=gpu --plan`), at the '
              'per-seed training rate measured above', '', plan.strip(), '']
  lines += ['## Not run here', '',
            '- the input pipeline benchmark (`bench/input_pipeline.py`): it '
            'measures tf.data, which a JAX-only accelerator machine does not '
            'have; run it on a host with TensorFlow.', '']
  if versions.get('missing_core'):
    lines += [f'Missing core requirements: {versions["missing_core"]}', '']
  with open(args.markdown, 'w') as f:
    f.write('\n'.join(lines).rstrip() + '\n')
  print(args.markdown)
  return 0


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  sub = p.add_subparsers(dest='cmd', required=True)
  v = sub.add_parser('versions')
  v.add_argument('out')
  v.add_argument('--expect_accelerator', action='store_true')
  c = sub.add_parser('cifar')
  c.add_argument('src')
  c.add_argument('cache')
  r = sub.add_parser('cifar_run')
  r.add_argument('src')
  r.add_argument('cache')
  r.add_argument('out')
  r.add_argument('flags', nargs='*')
  s = sub.add_parser('summary')
  s.add_argument('out')
  s.add_argument('markdown')
  s.add_argument('--seconds', default='?')
  s.add_argument('--dry', action='store_true')
  s.add_argument('--command', default='bench/accelerator_check.sh')
  s.add_argument('--date', default='')
  s.add_argument('--commit', default='unknown')
  s.add_argument('--tests_selection', default='')
  args = p.parse_args()
  if args.cmd == 'versions':
    return versions(args.out, args.expect_accelerator)
  if args.cmd == 'cifar':
    return cifar(args.src, args.cache)
  if args.cmd == 'cifar_run':
    return cifar_run(args.src, args.cache, args.out, args.flags)
  return summary(args)


if __name__ == '__main__':
  sys.exit(main())
