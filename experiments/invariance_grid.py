r"""Runs the width-invariance grid (experiments/invariance_configs.py).

  python experiments/invariance_grid.py --root=/work/invariance \
      [--runs=morphnet:direct:0,...] [--seeds=0,1,2]

Every (optimizer, arm, seed) is one `python -m wt_jax.main` subprocess in
its own workdir (`<root>/<optimizer>/<arm>/seed_<s>`), so a killed grid
resumes: a run that ended with this config is skipped (`<root>/runs.jsonl`),
a killed one runs again (from its checkpoint where it has one), and one whose
config has changed since it ended runs again (the pipeline moves its old
outputs to `superseded/`). "This config" is `config_digest`: the whole config
minus the blocks of the width optimizers the run does not use, so changing
AutoSlim's budget re-runs the AutoSlim runs only. Each subprocess's wall and
CPU time, the load average and the digest are appended to
`<root>/runs.jsonl`. The runs share a persistent JAX compilation cache
(`<root>/jax_cache`): seeds of one arm compile the same programs.
CIFAR-10 is unzipped from ../shared once (never into the repository).
"""
from __future__ import annotations

import argparse
import functools
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
from wt_jax import defaults  # noqa: E402  pylint: disable=g-import-not-at-top
from wt_jax.optimizers import registry  # noqa: E402  pylint: disable=g-import-not-at-top
from wt_jax.run import pipeline  # noqa: E402  pylint: disable=g-import-not-at-top
from wt_jax.util import fingerprint  # noqa: E402  pylint: disable=g-import-not-at-top

# The order: every arm's first seed before any second seed, MorphNet first,
# so a grid cut short still has every arm. AutoSlim (a direct run costs
# ~45 min here) has two direct seeds, the second last: one pair of direct
# seeds is its noise floor.
DEFAULT_RUNS = (
    [f'morphnet:{a}:{s}' for s in (0, 1, 2) for a in grid.ARMS] +
    ['autoslim:direct:0'] + [f'autoslim:compound:{s}' for s in (0, 1, 2)] +
    ['autoslim:direct:1'])


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


def config_digest(config: dict) -> str:
  """Digest of a run's config (a dict, as its workdir stores it): every leaf
  but the result-free ones (`fingerprint.RESULT_FREE`) and the blocks of the
  registered width optimizers other than its own, which cannot change its
  result. A field the stored config lacks, because it was added to wt_jax
  later, counts at its default: adding a field keeps the old behaviour."""
  flat = fingerprint.flatten(defaults.get_config().to_dict())
  flat.update(fingerprint.flatten(config))
  unused = set(registry.REGISTRY) - {config['optimizer']}
  return fingerprint.digest({
      k: v for k, v in flat.items()
      if k not in fingerprint.RESULT_FREE and k.split('.')[0] not in unused})


def finished(root: str) -> dict[str, dict]:
  """{spec: its last runs.jsonl record with rc 0}, each with its
  `config_digest`: a record written before digests were recorded gets the
  digest of the config its workdir holds (`config.json`)."""
  path = os.path.join(root, 'runs.jsonl')
  if not os.path.exists(path):
    return {}
  out = {}
  for rec in map(json.loads, open(path)):
    if rec['rc'] != 0:
      continue
    if 'config_digest' not in rec:
      stored = os.path.join(workdir(root, rec['spec']), 'config.json')
      rec['config_digest'] = (config_digest(json.load(open(stored)))
                              if os.path.exists(stored) else '')
    out[rec['spec']] = rec
  return out


@functools.lru_cache(maxsize=None)
def current_digest(spec: str) -> str:
  """The digest of `spec`'s config as the run stores it (normalized)."""
  config = grid.get_config(spec)
  pipeline.normalize(config)
  return config_digest(config.to_dict())


def ended_with_this_config(root: str) -> dict[str, dict]:
  """The `finished` records whose config is the one their spec has now."""
  return {spec: rec for spec, rec in finished(root).items()
          if rec['config_digest'] == current_digest(spec)}


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
                            config_digest=current_digest(spec),
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
  done = ended_with_this_config(args.root)
  todo = [s for s in specs if s not in done]
  print(f'[grid] {len(specs) - len(todo)} of {len(specs)} runs ended with '
        f'this config; running {len(todo)}', flush=True)
  failed = [s for s in todo if run(args.root, s) != 0]
  total = time.time() - t0
  with open(os.path.join(args.root, 'grid.jsonl'), 'a') as f:
    f.write(json.dumps(dict(runs=len(specs), failed=failed, wall_s=total,
                            end=time.strftime('%Y-%m-%d %H:%M:%S'))) + '\n')
  print(f'[grid] {len(specs)} runs in {total:.0f} s; failed: '
        f'{failed or "none"}', flush=True)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
