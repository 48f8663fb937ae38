r"""Runs the width-invariance grid (experiments/invariance_configs.py).

  python experiments/invariance_grid.py --root=/work/invariance \
      [--runs=morphnet:direct:0,...] [--seeds=0,1,2]

Every (optimizer, arm, seed) is one `python -m wt_jax.main` subprocess in
its own workdir (`<root>/<optimizer>/<arm>/seed_<s>`), so a killed grid
resumes: runs that ended are skipped (`<root>/runs.jsonl`), a killed one
runs again (from its checkpoint where it has one). Each subprocess's wall
and CPU time and the load average are appended to `<root>/runs.jsonl`. The runs share a persistent JAX compilation cache
(`<root>/jax_cache`): seeds of one arm compile the same programs.
CIFAR-10 is unzipped from ../shared once (never into the repository).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import zipfile

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _ROOT)

from experiments import invariance_configs as grid  # noqa: E402  pylint: disable=g-import-not-at-top

# The order: every arm's first seed before any second seed, MorphNet first,
# so a grid cut short still has every arm.
DEFAULT_RUNS = (
    [f'morphnet:{a}:{s}' for s in (0, 1, 2) for a in grid.ARMS] +
    ['autoslim:direct:0'] + [f'autoslim:compound:{s}' for s in (0, 1, 2)])


def ensure_data() -> None:
  if os.path.isdir(os.path.join(grid.DATA_DIR, 'train')):
    return
  print(f'[grid] unzipping {grid.DATA_ZIP} to {grid.DATA_DIR}', flush=True)
  with zipfile.ZipFile(grid.DATA_ZIP) as z:
    z.extractall(grid.DATA_DIR)


def _children_cpu() -> float:
  """CPU seconds (user + system) of the finished subprocesses so far: a
  run's CPU time hardly moves when a neighbour takes a core, its wall
  time does."""
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def finished(root: str) -> set[str]:
  """Specs that already ended with rc 0 (the grid resumes after them)."""
  path = os.path.join(root, 'runs.jsonl')
  if not os.path.exists(path):
    return set()
  return {r['spec'] for r in map(json.loads, open(path)) if r['rc'] == 0}


def workdir(root: str, spec: str) -> str:
  optimizer, arm, seed = spec.split(':')
  return os.path.join(root, optimizer, arm, f'seed_{seed}')


def run(root: str, spec: str) -> int:
  wd = workdir(root, spec)
  os.makedirs(wd, exist_ok=True)
  cmd = [sys.executable, '-m', 'wt_jax.main',
         f'--config=experiments/invariance_configs.py:{spec}',
         f'--workdir={wd}']
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(
      root, 'jax_cache'), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='-1')
  t0, cpu0 = time.time(), _children_cpu()
  with open(os.path.join(wd, 'run.log'), 'a') as log:
    rc = subprocess.call(cmd, cwd=_ROOT, stdout=log, stderr=subprocess.STDOUT,
                         env=env)
  wall, cpu = time.time() - t0, _children_cpu() - cpu0
  with open(os.path.join(root, 'runs.jsonl'), 'a') as f:
    f.write(json.dumps(dict(spec=spec, rc=rc, wall_s=wall, cpu_s=cpu,
                            load=os.getloadavg()[0],
                            end=time.strftime('%Y-%m-%d %H:%M:%S'))) + '\n')
  print(f'[grid] {time.strftime("%H:%M:%S")} {spec}: rc={rc} in {wall:.0f} s'
        f' (load {os.getloadavg()[0]:.1f})', flush=True)
  return rc


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root', default='/work/invariance')
  parser.add_argument('--runs', default=','.join(DEFAULT_RUNS))
  args = parser.parse_args()
  specs = [s for s in args.runs.split(',') if s]
  for spec in specs:
    grid.get_config(spec)  # bad specs fail here, before any run
  ensure_data()
  os.makedirs(args.root, exist_ok=True)
  t0 = time.time()
  done = finished(args.root)
  failed = [s for s in specs if s not in done and run(args.root, s) != 0]
  total = time.time() - t0
  with open(os.path.join(args.root, 'grid.jsonl'), 'a') as f:
    f.write(json.dumps(dict(runs=len(specs), failed=failed, wall_s=total,
                            end=time.strftime('%Y-%m-%d %H:%M:%S'))) + '\n')
  print(f'[grid] {len(specs)} runs in {total:.0f} s; failed: '
        f'{failed or "none"}', flush=True)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
