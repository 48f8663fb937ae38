r"""The CIFAR-10 width-transfer reproduction grid: every arm, sequentially.

  python experiments/accuracy_grid.py --budget=cpu \
      [--workdir_root=/work/grid_cifar10] [--arms=uniform,mn_direct,...]

Each arm (experiments/accuracy_configs.py: `ARMS`, run in `ORDER`) is one pipeline
workdir, WORKDIR_ROOT/BUDGET/ARM, run in its own subprocess:

  python -m wt_jax.main --config=experiments/accuracy_configs.py:BUDGET:ARM \
      --workdir=WORKDIR_ROOT/BUDGET/ARM

The uniform baseline is trained once (its own workdir); the other arms run
only their own stages (optimize/transfer/train_transferred, or
optimize_direct/train_direct). Re-running resumes: the pipeline skips
finished stages and resumes training from its checkpoints. An arm with
`share_optimize_from` reuses that arm's finished optimization (its
`optimize/` summary, widths and history are copied before it starts).

After each arm, experiments/accuracy_results.py regenerates results/cifar10_accuracy.md
(unless --no_results). A failing arm is logged and the grid goes on.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != _HERE]
sys.path.insert(0, _ROOT)

from experiments import accuracy_configs as grid_configs  # noqa: E402  pylint: disable=g-import-not-at-top

DEFAULT_ROOT = '/work/grid_cifar10'


def ensure_data():
  """Unzips the CIFAR-10 JPEGs to /tmp/cifar10_jpeg if not there yet."""
  root = grid_configs.DATA_DIR
  if all(os.path.isdir(os.path.join(root, s)) and os.listdir(
      os.path.join(root, s)) for s in ('train', 'test')):
    return
  os.makedirs(root, exist_ok=True)
  subprocess.run(['unzip', '-qn', grid_configs.DATA_ZIP, '-d', root],
                 check=True)
  for s in ('train', 'test'):
    if not os.path.isdir(os.path.join(root, s)):
      raise SystemExit(f'{grid_configs.DATA_ZIP} did not unzip to '
                       f'{root}/{s}/<class>/; check its layout')


def arm_workdir(root, budget, arm):
  return os.path.join(root, budget, arm)


def share_optimize(root, budget, arm):
  src_arm = grid_configs.ARMS[arm].get('share_optimize_from')
  if not src_arm:
    return True
  src = os.path.join(arm_workdir(root, budget, src_arm), 'optimize')
  dst = os.path.join(arm_workdir(root, budget, arm), 'optimize')
  if os.path.exists(os.path.join(dst, 'summary.json')):
    return True
  if not os.path.exists(os.path.join(src, 'summary.json')):
    print(f'[grid] {arm}: {src_arm} has no finished optimization; '
          'skipping', flush=True)
    return False
  os.makedirs(dst, exist_ok=True)
  for name in ('widths.json', 'history.json', 'summary.json'):  # marker last
    if os.path.exists(os.path.join(src, name)):
      shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
  with open(os.path.join(dst, 'SHARED_FROM'), 'w') as f:
    f.write(src + '\n')
  return True


def run_arm(root, budget, arm, log_dir):
  workdir = arm_workdir(root, budget, arm)
  os.makedirs(workdir, exist_ok=True)
  if not share_optimize(root, budget, arm):
    return 1
  cmd = [sys.executable, '-m', 'wt_jax.main',
         f'--config=experiments/accuracy_configs.py:{budget}:{arm}',
         f'--workdir={workdir}']
  log = os.path.join(log_dir, f'{arm}.log')
  print(f'[grid] {time.strftime("%H:%M:%S")} {arm}: {" ".join(cmd)} '
        f'(log {log})', flush=True)
  t0 = time.time()
  with open(log, 'a') as f:
    rc = subprocess.call(cmd, cwd=_ROOT, stdout=f, stderr=subprocess.STDOUT)
  dt = time.time() - t0
  with open(os.path.join(workdir, 'grid_wall_time.txt'), 'a') as f:
    f.write(f'{time.strftime("%Y-%m-%d %H:%M:%S")} rc={rc} {dt:.1f}\n')
  print(f'[grid] {time.strftime("%H:%M:%S")} {arm}: rc={rc} in {dt:.0f} s',
        flush=True)
  return rc


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--budget', default='cpu',
                      choices=sorted(grid_configs.BUDGETS))
  parser.add_argument('--workdir_root', default=DEFAULT_ROOT)
  parser.add_argument('--arms', default=','.join(grid_configs.ORDER),
                      help='comma-separated arms, run in this order')
  parser.add_argument('--no_results', action='store_true',
                      help='do not regenerate results/cifar10_accuracy.md')
  args = parser.parse_args()
  arms = [a for a in args.arms.split(',') if a]
  unknown = [a for a in arms if a not in grid_configs.ARMS]
  if unknown:
    parser.error(f'unknown arms {unknown}; allowed: '
                 f'{", ".join(grid_configs.ORDER)}')
  ensure_data()
  log_dir = os.path.join(args.workdir_root, args.budget, 'logs')
  os.makedirs(log_dir, exist_ok=True)
  t0 = time.time()
  failed = []
  for arm in arms:
    if run_arm(args.workdir_root, args.budget, arm, log_dir) != 0:
      failed.append(arm)
    if not args.no_results:
      subprocess.call([sys.executable, 'experiments/accuracy_results.py',
                       f'--budget={args.budget}',
                       f'--workdir_root={args.workdir_root}'], cwd=_ROOT)
  total = time.time() - t0
  with open(os.path.join(args.workdir_root, args.budget,
                         'grid_wall_time.txt'), 'a') as f:
    f.write(f'{time.strftime("%Y-%m-%d %H:%M:%S")} arms={",".join(arms)} '
            f'failed={",".join(failed)} {total:.1f}\n')
  print(f'[grid] done in {total:.0f} s; failed: {failed or "none"}',
        flush=True)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
