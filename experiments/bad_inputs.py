r"""Bad inputs and faults, tried through the CLI as a new user would.

    python experiments/bad_inputs.py --out=results/bad_inputs.md

Runs `python -m wt_jax.main` on tiny quickstart runs (resnet_tiny, digits,
a few steps) with each bad input or fault of the reliability issue
(numbered as there), and writes one table row per case: the exit code it
gave, the one it should give, how many lines it wrote to stderr, and those
lines. Each case checks what it must (the exit code and, where the run goes
on, what stdout must say); the script exits 1 if any case fails.

The disk-full cases need a small filesystem that can be filled: they mount
a 4 MiB tmpfs (root only) and are listed as skipped where that is not
allowed. Everything else runs in a temporary directory, removed at the end.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ('--config.arch=resnet_tiny', '--config.data.resolution=0',
        '--config.train.num_steps=30', '--config.train.checkpoint_every=5',
        '--config.train.log_every=5', '--config.morphnet.num_steps=6',
        '--config.morphnet.export_every=3', '--config.seeds=0,',
        '--config.projection.resolution=6', '--config.transfer.divisor=2',
        '--config.transfer.min_width=2')


@dataclasses.dataclass
class Case:
  item: str  # the item number
  what: str
  expect: int  # the exit code it must give
  args: tuple = ()
  config: str = 'configs/quickstart.py'
  workdir: str = ''  # '' = a fresh one
  setup: Optional[Callable[[], None]] = None
  stdout_has: str = ''  # what stdout must contain
  stderr_has: str = ''  # what stderr must contain


# A run long enough to be killed after a few checkpoints.
PENDING = ('--config.stages=train_uniform', '--config.train.num_steps=1500',
           '--config.train.checkpoint_every=20')


def _cli(workdir: str, args, config='configs/quickstart.py',
         path=REPO):
  cmd = [sys.executable, '-m', 'wt_jax.main', f'--config={config}',
         f'--workdir={workdir}', *FAST, *args]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        timeout=900, check=False,
                        env=dict(os.environ, PYTHONPATH=path))


def _images(root: str, classes) -> str:
  rng = np.random.default_rng(0)
  for split in ('train', 'test'):
    for name in classes:
      os.makedirs(os.path.join(root, split, name), exist_ok=True)
      for i in range(4):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(
            os.path.join(root, split, name, f'{i}.png'))
  return root


def _mount_tmpfs(path: str, size: str) -> bool:
  os.makedirs(path, exist_ok=True)
  return subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}',
                         'tmpfs', path], capture_output=True,
                        check=False).returncode == 0


def _fill(path: str, leave_kib: int) -> None:
  stat = os.statvfs(path)
  free = stat.f_bavail * stat.f_frsize // 1024
  with open(os.path.join(path, 'filler'), 'wb') as f:
    f.write(b'\0' * max(0, free - leave_kib) * 1024)


def _kill_when(workdir: str, args, ready: Callable[[], bool]) -> None:
  """Starts a run and SIGKILLs it once `ready()`."""
  cmd = [sys.executable, '-m', 'wt_jax.main', '--config=configs/quickstart.py',
         f'--workdir={workdir}', *FAST, *args]
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL,
                          env=dict(os.environ, PYTHONPATH=REPO))
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None and not ready():
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()


def _checkpoints(workdir: str) -> list[int]:
  path = os.path.join(workdir, 'train', 'uniform', 'seed_0', 'checkpoints')
  return sorted(int(p) for p in os.listdir(path) if p.isdigit()) if (
      os.path.isdir(path)) else []


def cases(tmp: str, full: str) -> list[Case]:
  """Every case; `full` is a finished quickstart workdir."""
  t = lambda *p: os.path.join(tmp, *p)
  projected = os.path.join(full, 'widths', 'projected_optimized.json')
  obj = json.load(open(projected))

  def widths_file(name, **change):
    path = t(name)
    widths = dict(obj['widths'], **change)
    with open(path, 'w') as f:
      json.dump(dict(obj, widths=widths), f)
    return path

  def write(name, text):
    with open(t(name), 'w') as f:
      f.write(text)
    return t(name)

  first_group = next(iter(obj['widths']))
  out = [
      Case('1', 'a folder: source with one class', 2,
           (f'--config.data.source=folder:{_images(t("one"), ["cat"])}',)),
      Case('2', 'a list field given twice: --config.seeds=0,1 '
           '--config.seeds=2,', 0, ('--config.seeds=0,1', '--config.seeds=2,',
                                    '--config.stages=report'),
           stdout_has='seeds: [2].'),
      Case('3', 'a copied workdir', 0, workdir=t('copied'),
           setup=lambda: shutil.copytree(full, t('copied'), symlinks=True),
           stdout_has='train_uniform/seed_0: reused'),
      Case('3', 'a workdir reached through a symlink, by a relative path', 0,
           workdir=os.path.relpath(t('alias'), REPO),
           setup=lambda: os.symlink(t('copied'), t('alias')),
           stdout_has='train_uniform/seed_0: reused'),
      Case('4', 'rm WD/optimize/history.json, then re-run', 0,
           workdir=t('copied'),
           setup=lambda: os.remove(t('copied', 'optimize', 'history.json')),
           stdout_has='optimize: recomputing (missing optimize/history.json)'),
      Case('5', '--config.widths_file=<projected widths>: what the report '
           'names', 0, (f'--config.widths_file={projected}',),
           stdout_has=f'Widths from: widths file {projected}'),
      Case('5', '--config.projection.resolution=64 (data: 8px)', 2,
           ('--config.projection.resolution=64',)),
      Case('6', 'a widths_file width of 1e9', 2,
           (f'--config.widths_file={widths_file("huge.json", **{first_group: 10**9})}',)),
      Case('8', '--config.train.epochs=inf', 2,
           ('--config.train.epochs=inf', '--config.train.num_steps=0')),
      Case('8', '--config.train.base_lr=inf', 2,
           ('--config.train.base_lr=inf',)),
      Case('9', 'a config file with a syntax error', 2,
           config=write('syntax.py', 'def get_config(:\n  pass\n')),
      Case('9', 'a missing config file', 2, config=t('missing.py')),
      Case('9', 'a config file without get_config', 2,
           config=write('noget.py', 'x = 1\n')),
      Case('9', 'a JSON file as --config', 2,
           config=write('c.json', '{"arch": "resnet20_cifar"}\n')),
      Case('10', 'an optimizer_module that raises RuntimeError', 2,
           ('--config.optimizer_module=bad_raises',)),
      Case('10', 'an optimizer_module that registers a name twice', 2,
           ('--config.optimizer_module=bad_twice',)),
      Case('10', 'an optimizer_module that registers a built-in name', 2,
           ('--config.optimizer_module=bad_builtin',)),
      Case('11', 'a torn newest checkpoint (array data cut short)', 0,
           PENDING, workdir=t('torn'), setup=lambda: _torn(t('torn')),
           stderr_has='is corrupt'),
      Case('12', '--config.widths_file=<a directory>', 2,
           (f'--config.widths_file={tmp}',)),
      Case('13', '--config.train.nonexistent=3', 2,
           ('--config.train.nonexistent=3',)),
      Case('14', 'an empty .lock', 4, workdir=t('locked'),
           setup=lambda: (os.makedirs(t('locked')),
                          write(os.path.join('locked', '.lock'), ''))),
      Case('15', '--config.stages=train_transferred on a fresh workdir', 2,
           ('--config.stages=train_transferred',)),
  ]
  for name, body in (
      ('bad_raises', 'raise RuntimeError("needs a GPU")\n'),
      ('bad_twice', 'import wt_jax\nf = lambda c, p, w: None\n'
       'wt_jax.register_optimizer("mine", f)\n'
       'wt_jax.register_optimizer("mine", f)\n'),
      ('bad_builtin', 'import wt_jax\nwt_jax.register_optimizer("morphnet", '
       'lambda c, p, w: None, replace=True)\n')):
    write(f'{name}.py', body)
  return out


def _torn(workdir: str) -> None:
  """A pending run whose newest checkpoint has its array data cut short."""
  _kill_when(workdir, PENDING, lambda: len(_checkpoints(workdir)) >= 2)
  newest = _checkpoints(workdir)[-1]
  for root, _, names in os.walk(os.path.join(
      workdir, 'train', 'uniform', 'seed_0', 'checkpoints', str(newest))):
    if os.path.basename(root) == 'd':
      for name in names:
        os.truncate(os.path.join(root, name), 10)


def disk_cases(tmp: str) -> list[Case]:
  """The two disk-full cases, on a small tmpfs (None if it cannot mount)."""
  disk = os.path.join(tmp, 'disk')
  if not _mount_tmpfs(disk, '4m'):
    return []
  args = PENDING + ('--config.train.keep_checkpoints=1',)
  wd = os.path.join(disk, 'wd')

  def full_mid_run():
    _kill_when(wd, args, lambda: len(_checkpoints(wd)) >= 1)
    _fill(disk, leave_kib=100)

  def full_from_the_start():
    shutil.rmtree(wd)
    os.remove(os.path.join(disk, 'filler'))
    _fill(disk, leave_kib=0)

  return [
      Case('7', 'disk full during a checkpoint save (a pending run resumed '
           'on a full disk)', 4, args, workdir=wd, setup=full_mid_run,
           stderr_has='No space left on device'),
      Case('17', 'disk full before the first write', 4, workdir=wd,
           setup=full_from_the_start, stderr_has='No space left on device'),
  ]


def run_case(case: Case, tmp: str) -> dict:
  if case.setup:
    case.setup()
  workdir = case.workdir or tempfile.mkdtemp(dir=tmp, prefix='wd-')
  if not case.workdir:
    os.rmdir(workdir)
  t0 = time.time()
  out = _cli(workdir, case.args, config=case.config,
             path=os.pathsep.join([REPO, tmp]))
  lines = out.stderr.splitlines()
  # A run after a killed one also says, in one line, that it took over the
  # killed run's lock.
  own = [l for l in lines if 'Taking over the lock of a run that is gone'
         not in l]
  ok = (out.returncode == case.expect and case.stdout_has in out.stdout and
        case.stderr_has in out.stderr and len(own) <= 1 and
        'Traceback' not in out.stderr)
  return dict(item=case.item, what=case.what, expect=case.expect,
              code=out.returncode, lines=len(lines), stderr=lines[:3],
              ok=ok, seconds=round(time.time() - t0, 1),
              stdout_line=next((l.strip() for l in out.stdout.splitlines()
                                if case.stdout_has and case.stdout_has in l),
                               ''))


def markdown(rows: list[dict], skipped: list[str], command: str) -> str:
  lines = ['# Bad inputs and faults through the CLI', '',
           f'Made by `{command}` ({time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}).'
           ' Each row is one `python -m wt_jax.main` run on a tiny quickstart'
           ' config (`experiments/bad_inputs.py` lists the flags); "item" is '
           "the number of the defect in the reliability issue.", '',
           '| item | case | exit code (expected) | stderr lines | what it '
           'said | ok |', '|---|---|---|---:|---|---|']
  for r in rows:
    said = ' / '.join(r['stderr']) or r['stdout_line'] or '(nothing)'
    said = said.replace('|', '\\|')
    lines.append(f'| {r["item"]} | {r["what"]} | {r["code"]} ({r["expect"]})'
                 f' | {r["lines"]} | {said} | {"yes" if r["ok"] else "**NO**"}'
                 ' |')
  for s in skipped:
    lines.append(f'| {s} | skipped: no tmpfs could be mounted here | | | | |')
  return '\n'.join(lines) + '\n'


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='', help='markdown file to write')
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix='wt_jax_bad_inputs_')
  rows = []
  try:
    full = os.path.join(tmp, 'full')
    done = _cli(full, ())
    if done.returncode:
      print(done.stderr[-3000:], file=sys.stderr)
      return 1
    todo = cases(tmp, full)
    disk = disk_cases(tmp)
    skipped = [] if disk else ['7', '17']
    for case in todo + disk:
      rows.append(run_case(case, tmp))
      r = rows[-1]
      print(f'{r["item"]:>3} {"ok " if r["ok"] else "BAD"} exit {r["code"]} '
            f'({r["expect"]}), {r["lines"]} stderr line(s), {r["seconds"]} s:'
            f' {r["what"]}', flush=True)
  finally:
    subprocess.run(['umount', os.path.join(tmp, 'disk')], capture_output=True,
                   check=False)
    shutil.rmtree(tmp, ignore_errors=True)
  text = markdown(rows, skipped, 'python experiments/bad_inputs.py ' +
                  ' '.join(sys.argv[1:]))
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
  print(text)
  return 0 if all(r['ok'] for r in rows) else 1


if __name__ == '__main__':
  sys.exit(main())
