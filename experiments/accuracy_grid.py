r"""The CIFAR-10 width-transfer reproduction grid: every arm, sequentially.

  python experiments/accuracy_grid.py --budget=cpu \
      [--workdir_root=/work/grid_cifar10] [--arms=uniform,mn_direct,...]

Each arm (experiments/accuracy_configs.py: `ARMS`, run in `ORDER`) is one pipeline
workdir, WORKDIR_ROOT/BUDGET/ARM, run in its own subprocess:

  python -m wt_jax.main --config=experiments/accuracy_configs.py:BUDGET:ARM \
      --workdir=WORKDIR_ROOT/BUDGET/ARM

Under a budget with per-seed optimization (`accuracy_configs.per_seed`: the
gpu preset), an optimized arm is one run per seed instead, each its own
optimization seeded by it and one final training
(`...:BUDGET:ARM:SEED`, WORKDIR_ROOT/BUDGET/ARM/seed_SEED), so the spread
of its accuracy includes the optimizer's own noise; the uniform baseline
is one run of every seed. The uniform baseline is trained once (its own
workdir); the other arms run only their own stages
(optimize/transfer/train_transferred, or optimize_direct/train_direct). Re-running resumes: the pipeline skips
finished stages and resumes training from its checkpoints. An arm with
`share_optimize_from` reuses that arm's finished optimization (its
`optimize/` summary, widths and history are copied before it starts).

After each arm, experiments/accuracy_results.py regenerates results/cifar10_accuracy.md
(unless --no_results). A failing arm is logged and the grid goes on.

  python experiments/accuracy_grid.py --budget=gpu --plan [--img_per_s=N]

prints the grid's work without running it (`plan`): per arm, the images
through a training step (final training over all seeds, and the width
optimization), and with `--img_per_s` (a measured training rate of the
uniform network; `bench/accelerator_check.sh` passes its own) the expected
wall time.
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

# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import accuracy_configs as grid_configs  # noqa: E402
from wt_jax.nets import widths as widths_lib  # noqa: E402
from wt_jax.optimizers import autoslim  # noqa: E402
from wt_jax.optimizers import morphnet  # noqa: E402
from wt_jax.train import length  # noqa: E402
from wt_jax.transfer import problem as problem_lib  # noqa: E402
from wt_jax.transfer import projection  # noqa: E402
from wt_jax.util import workdir as workdir_lib  # noqa: E402
# pylint: enable=g-import-not-at-top,wrong-import-position

DEFAULT_ROOT = '/work/grid_cifar10'


# Greedy slimming rounds from the full width to 50% of the MACs at 10% steps:
# 39, measured (the invariance grid's direct AutoSlim run, ResNet-20 w0.5,
# optimize/history.json); each round scores one candidate per unit.
SLIM_ROUNDS = 39
FORWARD = 1 / 3  # a forward pass, in training steps (forward + backward)


def _steps_images(train_config, examples: float) -> int:
  """Images through the steps of a run of `train_config` on `examples`
  training images, by the train loop's own rule (`length.run_length`)."""
  return (length.run_length(train_config, int(examples)).total_steps *
          int(train_config.batch_size))


def plan(budget: str) -> list[dict]:
  """The work of every arm of `budget`, in training-step images.

  `final`: all seeds of the final training plus its test evaluation, every
  arm at the uniform network's MACs. `optimize`: the width optimization,
  once per run of the arm (`accuracy_configs.runs`: per seed under the gpu
  preset), counted as if its network were the full one (an upper bound: a
  projected
  network's step is cheaper, on an accelerator far less than its MACs say).
  MorphNet's step is one pass (its regularizer costs nothing measurable,
  results/bench.md); AutoSlim's sandwich step is 2 + num_random masked
  full-width passes, and its slimming SLIM_ROUNDS x units candidates, each
  a forward pass over its calibration and val images (units:
  `autoslim.space`, groups tied by identity shortcuts are one unit).
  """
  rows = []
  for arm in grid_configs.ORDER:
    optimizations = len(grid_configs.runs(budget, arm))
    c = grid_configs.arm_config(budget, arm)
    spec = grid_configs.ARMS[arm]
    train_split = grid_configs.train_examples(c)
    val = grid_configs.CIFAR10_TRAIN * c.data.val_fraction
    seeds = len(c.seeds)
    final = seeds * (_steps_images(c.train, train_split) + FORWARD * 10_000)
    opt, opt_examples = 0.0, grid_configs.optimization_examples(c)
    if spec['optimizer'] == 'morphnet' and not spec.get('share_optimize_from'):
      opt = _steps_images(morphnet.structure_learning_train_config(c),
                          opt_examples)
    elif spec['optimizer'] == 'autoslim':
      ac = c.autoslim
      prob = problem_lib.Problem(  # CIFAR-10's sizes; no data is read
          widths_lib.uniform(c.arch, c.width_mult,
                             divisor=c.transfer.divisor),
          c.data, 32, 10, int(train_split), float(c.width_mult))
      if 'optimize' in c.stages:  # the projected network's units
        prob = projection.project(prob, c.projection,
                                  divisor=c.transfer.divisor,
                                  num_train=int(opt_examples))
      units = autoslim.space_from_config(c, prob.widths, prob.resolution,
                                         prob.num_classes).num_units
      scored = (ac.calib_batches * c.train.batch_size +
                (ac.eval_batches * c.train.eval_batch_size
                 if ac.eval_batches else val))
      opt = (_steps_images(autoslim.slimmable_train_config(c), opt_examples)
             * (2 + ac.num_random) + FORWARD * SLIM_ROUNDS * units * scored)
    rows.append(dict(arm=arm, seeds=seeds, final=final,
                     optimize=optimizations * opt,
                     optimizations=optimizations if spec['optimizer'] and
                     not spec.get('share_optimize_from') else 0))
  return rows


def print_plan(budget: str, img_per_s: float) -> None:
  rows = plan(budget)
  total = sum(r['final'] + r['optimize'] for r in rows)
  print(f'| arm | seeds | optimizations | final training (images) | width '
        f'optimization (images, upper bound) |'
        f'{" hours |" if img_per_s else ""}')
  print(f'|---|---:|---:|---:|---:|{"---:|" if img_per_s else ""}')
  for r in rows:
    hours = ((r['final'] + r['optimize']) / img_per_s / 3600 if img_per_s
             else None)
    print(f'| {r["arm"]} | {r["seeds"]} | {r["optimizations"]} | '
          f'{r["final"]:.3g} | '
          f'{r["optimize"]:.3g} |' + (f' {hours:.2f} |' if img_per_s else ''))
  line = f'total: {total:.4g} training-step images'
  if img_per_s:
    line += (f'; at {img_per_s:.0f} img/s, {total / img_per_s / 3600:.1f} h '
             'of steps (compilation, data decoding and checkpoints not '
             'counted)')
  print(line)


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


def arm_workdir(root, budget, arm, seed=None):
  """WORKDIR_ROOT/BUDGET/ARM, or .../ARM/seed_SEED for a per-seed run."""
  path = os.path.join(root, budget, arm)
  return path if seed is None else os.path.join(path, f'seed_{seed}')


def share_optimize(root, budget, arm, seed=None):
  src_arm = grid_configs.ARMS[arm].get('share_optimize_from')
  if not src_arm:
    return True
  src = workdir_lib.Workdir(arm_workdir(root, budget, src_arm, seed)
                            ).optimize()
  dst = workdir_lib.Workdir(arm_workdir(root, budget, arm, seed)).optimize()
  if os.path.exists(workdir_lib.summary(dst)):
    return True
  if not os.path.exists(workdir_lib.summary(src)):
    print(f'[grid] {arm}: {src_arm} has no finished optimization; '
          'skipping', flush=True)
    return False
  os.makedirs(dst, exist_ok=True)
  for name in ('widths.json', workdir_lib.HISTORY_FILE,
               workdir_lib.SUMMARY_FILE):  # the completion marker last
    if os.path.exists(os.path.join(src, name)):
      shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
  with open(os.path.join(dst, 'SHARED_FROM'), 'w') as f:
    f.write(src + '\n')
  return True


def run_arm(root, budget, arm, log_dir, seed=None):
  """One run of an arm (of one seed, for a per-seed arm); its return code."""
  workdir = arm_workdir(root, budget, arm, seed)
  os.makedirs(workdir, exist_ok=True)
  if not share_optimize(root, budget, arm, seed):
    return 1
  spec = f'{budget}:{arm}' + (f':{seed}' if seed is not None else '')
  cmd = [sys.executable, '-m', 'wt_jax.main',
         f'--config=experiments/accuracy_configs.py:{spec}',
         f'--workdir={workdir}']
  name = arm if seed is None else f'{arm}-seed_{seed}'
  log = os.path.join(log_dir, f'{name}.log')
  print(f'[grid] {time.strftime("%H:%M:%S")} {name}: {" ".join(cmd)} '
        f'(log {log})', flush=True)
  t0 = time.time()
  with open(log, 'a') as f:
    rc = subprocess.call(cmd, cwd=_ROOT, stdout=f, stderr=subprocess.STDOUT)
  dt = time.time() - t0
  with open(os.path.join(workdir, 'grid_wall_time.txt'), 'a') as f:
    f.write(f'{time.strftime("%Y-%m-%d %H:%M:%S")} rc={rc} {dt:.1f}\n')
  print(f'[grid] {time.strftime("%H:%M:%S")} {name}: rc={rc} in {dt:.0f} s',
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
  parser.add_argument('--plan', action='store_true',
                      help='print the work of every arm; run nothing')
  parser.add_argument('--img_per_s', type=float, default=0.0,
                      help='with --plan: a measured training rate')
  args = parser.parse_args()
  if args.plan:
    print_plan(args.budget, args.img_per_s)
    return 0
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
    for seed in grid_configs.runs(args.budget, arm):
      if run_arm(args.workdir_root, args.budget, arm, log_dir, seed) != 0:
        failed.append(arm if seed is None else f'{arm}:{seed}')
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
