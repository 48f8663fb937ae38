"""The width-transfer chain: data -> project -> optimize -> extrapolate -> train
-> report.

`run(config, workdir)`:
1. `prepare`: validates every config block (each by the module that owns
   it) and everything that needs the data (the widths file, the MACs
   target, that every image the run reads decodes), and builds the original
   and the projected problem once. Nothing is written before this passes.
2. Takes the workdir's lock (one run per workdir; `workdir.Lock`).
3. Runs the selected stages of `stages.STAGES` in chain order, step by
   step, deciding from fingerprints (`fingerprint`): a step whose record
   equals its current inputs and whose outputs are intact is reused; one
   with the same inputs but no outputs yet resumes (training from its last
   checkpoint); one whose inputs changed, or whose output file is corrupt,
   is recomputed, after its old outputs move to
   `workdir/superseded/<step>-<time>/`. One line names what changed. With
   `config.train.batch_seeds` a training stage's seeds that are not reused
   train together, in one program (`stages.Stage.together`).
4. Rewrites the report from the outputs whose fingerprints match.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional

from absl import logging
import jax
from jax.experimental import multihost_utils
import psutil

from wt_jax import architectures
from wt_jax import console
from wt_jax import cost
from wt_jax import custom_archs
from wt_jax import data
from wt_jax import extrapolate
from wt_jax import files
from wt_jax import fingerprint
from wt_jax import problem as problem_lib
from wt_jax import projection
from wt_jax import stages as stages_lib
from wt_jax import train
from wt_jax import validation
from wt_jax import widths as widths_lib
from wt_jax import width_optimizers
from wt_jax.errors import ConfigError
from wt_jax.errors import NonFiniteLossError
from wt_jax.errors import WidthError
from wt_jax.stages import Run
from wt_jax.stages import STAGES
from wt_jax.stages import Step
from wt_jax.workdir import Lock
from wt_jax.workdir import Workdir

# A MACs target above this many times the original uniform network's MACs
# is refused as a typo (1e13 on ResNet-20 would be a 272-billion-parameter
# network); a real target that large means another width_mult.
MAX_TARGET_FACTOR = 64


# ----------------------------------------------------------------------------
# Validation: every block, before any work.
# ----------------------------------------------------------------------------


def normalize(config) -> None:
  """`--config.stages=optimize,transfer` arrives as one comma string."""
  names = tuple(s.strip() for item in tuple(config.stages)
                for s in str(item).split(',') if s.strip())
  if names != tuple(config.stages):
    config.stages = names


def _optimizes(config) -> bool:
  stages = tuple(config.stages)
  return ('optimize' in stages and not config.widths_file) or (
      'optimize_direct' in stages)


def validate(config) -> None:
  """Checks every block, each by the module that owns it (no I/O but a
  'folder:' source's existence); raises ConfigError on the first bad field."""
  f = validation.Fields(config)
  custom_archs.import_module(config.get('arch_module', ''))
  f.choice('arch', architectures.names())
  f.number('width_mult', 0, lo_open=True)
  try:
    architectures.get_arch(config.arch, tuple(config.depth) or None)
  except ConfigError as e:
    raise ConfigError(f'config.depth: {e}') from e
  f.choice('dtype', ('float32', 'bfloat16'))
  f.number('seed', 0, integer=True)
  f.integers('seeds', 0, unique=True)
  stages = tuple(config.stages)
  if not stages or any(s not in STAGES for s in stages):
    f.fail('stages', f'a non-empty subset of {", ".join(STAGES)}')
  f.string('widths_file', 'a path to a JSON width file, or "" to run the '
           'optimizer')
  data.validate(config.data)
  train.validate(config.train)
  width_optimizers.validate(config)
  projection.validate(config.projection)
  extrapolate.validate(config.transfer)
  if _optimizes(config) and not config.data.val_fraction > 0:
    validation.fail('config.data.val_fraction', config.data.val_fraction,
                    'a number in (0, 1) when a width optimizer runs (stages '
                    'optimize / optimize_direct decide on the val split, '
                    'never on test)')


def _check_target(config, original) -> None:
  target = int(config.transfer.target_macs)
  if not target:
    return
  arch, res = original.widths.arch, original.resolution
  floor = cost.macs(original.widths.replace(
      [config.transfer.min_width] * len(original.widths)), res,
                    original.num_classes)
  uniform = cost.macs(original.widths, res, original.num_classes)
  if target < floor:
    raise ConfigError(
        f'config.transfer.target_macs={target:,} is infeasible: the '
        f'smallest {arch} (every group at min_width='
        f'{config.transfer.min_width}) costs {floor:,} MACs at {res}px; '
        f'allowed: >= {floor:,}')
  if target > MAX_TARGET_FACTOR * uniform:
    raise ConfigError(
        f'config.transfer.target_macs={target:,} is invalid: '
        f'{target / uniform:,.0f} x the uniform {arch} ({uniform:,} MACs at '
        f'{res}px); allowed: {floor:,} to {MAX_TARGET_FACTOR * uniform:,} '
        f'({MAX_TARGET_FACTOR} x the uniform network; for a larger network '
        'raise config.width_mult)')


def check_problem(config, original, projected) -> None:
  """Checks that need the problems: the widths file and the MACs target."""
  if config.widths_file:
    try:
      widths_lib.load(config.widths_file, expect_arch=projected.widths.arch,
                      expect_depth=projected.widths.depth)
    except WidthError as e:
      raise ConfigError(
          f'config.widths_file: {e} (it must be a width vector of the '
          f'projected net: {projected.widths.arch} with depth '
          f'{list(projected.widths.depth)})') from e
  _check_target(config, original)


def _check_workdir(workdir: str) -> None:
  if '://' in workdir:
    return
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    validation.fail('--workdir', workdir, 'a directory (this is a file)')
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.access(parent, os.W_OK | os.X_OK):
    validation.fail('--workdir', workdir, f'a writable directory ({parent} '
                    'is not writable)')


def reads(config, original, projected) -> list[tuple[object, tuple]]:
  """(data config, splits) of every split the selected stages read."""
  stages = tuple(config.stages)
  orig, proj = set(), set()
  if any(s.startswith('train_') for s in stages):
    orig |= {'train', 'test'}
  if 'optimize_direct' in stages:
    orig |= {'train', 'val'}
  if 'optimize' in stages and not config.widths_file:
    proj |= {'train', 'val'}
  order = lambda names: tuple(s for s in data.SPLITS if s in names)
  return [(p.data, order(names)) for p, names in ((original, orig),
                                                  (projected, proj)) if names]


def prepare(config, workdir: str, timing: Optional[dict] = None) -> Run:
  """Validates `config` and builds the two problems, once per run; every
  image the run will read is decoded here (and cached), so a bad file
  stops the run before any work. `timing` gets the seconds of each part."""
  timing = {} if timing is None else timing
  t0 = time.perf_counter()
  normalize(config)
  validate(config)
  _check_workdir(workdir)
  original = problem_lib.from_config(config)
  projected = projection.project(original, config.projection,
                                 divisor=config.transfer.divisor)
  check_problem(config, original, projected)
  t1 = time.perf_counter()
  timing['images_decoded'] = sum(
      data.preload(data_config, split_names)
      for data_config, split_names in reads(config, original, projected))
  timing['validate_and_list_s'] = t1 - t0
  timing['decode_s'] = time.perf_counter() - t1
  return Run(config, Workdir(workdir), original, projected)


# ----------------------------------------------------------------------------
# Steps: reuse, resume or recompute.
# ----------------------------------------------------------------------------


def _read_record(step: Step) -> Optional[dict]:
  try:
    return files.read_json(step.record_path)
  except FileNotFoundError:
    return None
  except ValueError:
    logging.warning('Corrupt fingerprint %s: recomputing %s.',
                    step.record_path, step.key)
    return None


def _corrupt(step: Step) -> list[str]:
  """Output files that exist but do not parse."""
  bad = []
  for path in step.outputs:
    if path.endswith('.json') and files.exists(path):
      try:
        files.read_json(path)
      except ValueError:
        bad.append(path)
  return bad


def is_fresh(step: Step) -> bool:
  """Outputs present and intact, made from exactly these inputs."""
  return (all(files.exists(p) for p in step.outputs) and not _corrupt(step)
          and _read_record(step) == step.inputs)


def _supersede(r: Run, step: Step) -> Optional[str]:
  """Moves a step's old outputs to workdir/superseded/<step>-<time>/."""
  paths = [p for p in (step.home,) + step.owned if files.exists(p)]
  if not paths or not r.is_main:
    return None
  dest = r.workdir.path('superseded', step.key.replace('/', '-') + '-' +
                        time.strftime('%Y%m%d-%H%M%S'))
  for p in paths:
    files.move(p, files.join(dest, os.path.relpath(p, r.workdir.root)))
  return dest


def _begin(r: Run, step: Step) -> bool:
  """Decides whether one step is reused, resumed or recomputed, and says
  which in one line (moving superseded outputs away); True: compute it."""
  stored = _read_record(step)
  bad = _corrupt(step)
  if stored == step.inputs and not bad:
    if all(files.exists(p) for p in step.outputs):
      console.line(f'  {step.key}: reused (made from the same inputs)')
      return False
    if files.exists(step.home):
      console.line(f'  {step.key}: resuming')
  elif stored is not None or bad or files.exists(step.home) or any(
      files.exists(p) for p in step.owned):
    why = ([f'corrupt {p}' for p in bad] or
           fingerprint.changes(stored, step.inputs))
    dest = _supersede(r, step)
    console.line(f'  {step.key}: recomputing ({"; ".join(why)})'
                 + (f'; old outputs moved to {dest}' if dest else ''))
  if r.is_main:
    files.write_json(step.record_path, step.inputs)
  return True


def _run_group(r: Run, stage: stages_lib.Stage, group: list[Step]) -> bool:
  """Reuses, resumes or recomputes the steps of `group`: those not reused
  one by one, or (a group of seeds, `stage.together`) in one program; True
  if it computed anything."""
  pending = [step for step in group if _begin(r, step)]
  if not pending:
    return False
  t0 = time.perf_counter()
  if len(pending) > 1:
    summaries = stage.together(r, [step.seed for step in pending])
    note = f', {len(pending)} seeds in one program'
  else:
    summaries, note = [pending[0].make()], ''
  for step, summary in zip(pending, summaries):
    console.line(f'  {step.key}: {summary} '
                 f'({time.perf_counter() - t0:.1f} s{note})')
  return True


def _barrier(name: str) -> None:
  """Multi-host: every process waits here until all have arrived, so what
  process 0 wrote (a step's outputs, its fingerprint) is there for all."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _run_stage(r: Run, name: str) -> bool:
  """Runs a stage's steps (a training stage's seeds in one program with
  `config.train.batch_seeds`); True if any of them computed anything."""
  stage, computed = STAGES[name], False
  steps = stage.steps(r)
  together = stage.together is not None and r.config.train.batch_seeds
  for group in ([steps] if together and len(steps) > 1 else
                [[step] for step in steps]):
    key = group[0].key if len(group) == 1 else f'{name}/seeds'
    try:
      _barrier(f'before {key}')
      computed |= _run_group(r, stage, group)
      _barrier(f'after {key}')
    except NonFiniteLossError as e:
      raise NonFiniteLossError(e.step, e.value, (
          f'stage {key}: {e} Lower {stage.lr_field(r.config)} or '
          'check the data.')) from e
    except KeyboardInterrupt as e:
      e.wt_jax_stage = key
      raise
  return computed


def fresh_outputs(r: Run) -> Callable[[str], bool]:
  """A predicate over output paths: made from this run's inputs?"""
  fresh = set()
  for name, stage in STAGES.items():
    try:
      steps = stage.steps(r)
    except (OSError, ValueError):  # an upstream file this run lacks
      continue
    for step in steps:
      if is_fresh(step):
        fresh.update(step.outputs + (step.home,))
  return lambda path: path in fresh


def run(config, workdir: str) -> Optional[dict]:
  """Runs the selected stages in chain order; returns the report (if run).

  Writes `timing.json`: where this run's wall time went (start-up and
  imports before `run`, validation and listing, image decoding, and each
  step's wall time; the training loops' own parts are in their results).
  """
  timing = {'startup_and_imports_s': time.time() - psutil.Process(
      os.getpid()).create_time()}
  r = prepare(config, workdir, timing)
  selected = [s for s in STAGES if s in tuple(config.stages)]
  lock = Lock(workdir) if r.is_main else None
  if lock:
    lock.acquire()
  try:
    if r.is_main:
      files.write_json(r.workdir.config, config.to_dict())
    r.save_widths('uniform', r.original.widths,
                  macs=r.macs(r.original.widths),
                  resolution=r.original.resolution)
    r.save_widths('projected_uniform', r.projected.widths,
                  macs=r.macs(r.projected.widths, r.projected),
                  resolution=r.projected.resolution)
    out, computed = None, False
    for name in selected:
      console.header(f'Stage {name}')
      t0 = time.perf_counter()
      if name == 'report':
        out = stages_lib.write_report(r, fresh_outputs(r))
      else:
        computed |= _run_stage(r, name)
      timing[f'{name}_s'] = time.perf_counter() - t0
    if r.is_main and computed:  # a run that only reused keeps the old one
      files.write_json(r.workdir.timing, timing)
    return out
  finally:
    if lock:
      lock.release()
