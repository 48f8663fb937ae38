"""The width-transfer chain: data -> project -> optimize -> extrapolate -> train
-> report.

`run(config, workdir)`:
1. `prepare`: validates every config block (each by the module that owns
   it) and everything that needs the data (the projection, the widths file,
   the MACs target, that every split read has examples and every image the
   run reads decodes), and builds the original and the projected problem
   once; `reuse.check_upstream` then refuses a stage whose input neither a
   selected stage nor the workdir provides. Nothing is written before these
   pass.
2. Takes the workdir's lock (one run per workdir; `workdir.Lock`).
3. Runs the selected stages of `stages.STAGES` in chain order, step by
   step, each reused, resumed or recomputed as its fingerprint and manifest
   say (`reuse`), with one line naming what changed or what is missing.
   With `config.train.batch_seeds` a training stage's seeds that are not
   reused train together, in one program (`stages.Stage.together`).
4. Rewrites the report from the outputs whose fingerprints match.

An interrupt or an OSError (disk full) raised on the way carries the stage
it stopped (`in_stage`) for the CLI's one-line message.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator, Optional

import jax
from jax.experimental import multihost_utils
import psutil

from wt_jax import data
from wt_jax import train
from wt_jax.errors import ConfigError
from wt_jax.errors import DataError
from wt_jax.errors import NonFiniteLossError
from wt_jax.errors import WidthError
from wt_jax.nets import architectures
from wt_jax.nets import cost
from wt_jax.nets import custom_archs
from wt_jax.nets import widths as widths_lib
from wt_jax.optimizers import registry
from wt_jax.run import reuse
from wt_jax.run import stages as stages_lib
from wt_jax.run.stages import Run
from wt_jax.run.stages import STAGES
from wt_jax.run.stages import Step
from wt_jax.transfer import extrapolate
from wt_jax.transfer import problem as problem_lib
from wt_jax.transfer import projection
from wt_jax.util import console
from wt_jax.util import files
from wt_jax.util import validation
from wt_jax.util.workdir import Lock
from wt_jax.util.workdir import Workdir

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
  validation.all_finite(config)
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
  registry.validate(config)
  projection.validate(config.projection)
  extrapolate.validate(config.transfer)
  if _optimizes(config):
    data.require_val_split(config.data, 'stage optimize / optimize_direct')


def _check_target(config, original) -> None:
  target = int(config.transfer.target_macs)
  if not target:
    return
  arch, res = original.widths.arch, original.resolution
  floor = cost.macs(widths_lib.fit(
      original.widths, [config.transfer.min_width] * len(original.widths),
      config.transfer.min_width), res, original.num_classes)
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


def _check_widths_file(config, projected) -> None:
  """The widths file is a width vector of the projected net, no group wider
  than MAX_TARGET_FACTOR x its width at width multiplier 1.0."""
  try:
    found = widths_lib.load(config.widths_file,
                            expect_arch=projected.widths.arch,
                            expect_depth=projected.widths.depth)
  except WidthError as e:
    raise ConfigError(
        f'config.widths_file: {e} (it must be a width vector of the '
        f'projected net: {projected.widths.arch} with depth '
        f'{list(projected.widths.depth)})') from e
  full = widths_lib.uniform(found.arch, 1.0, depth=found.depth,
                            divisor=config.transfer.divisor)
  for name, width, base in zip(found.names, found.values, full.values):
    if width > MAX_TARGET_FACTOR * base:
      raise ConfigError(
          f'config.widths_file={config.widths_file!r}: group {name!r} has '
          f'width {width:,}; allowed: at most {MAX_TARGET_FACTOR * base:,} '
          f'({MAX_TARGET_FACTOR} x its width {base} at width multiplier 1.0)')


def _check_projection(config, original, projected) -> None:
  """A projection is never larger than the original problem."""
  if projected.resolution > original.resolution:
    validation.fail(
        'config.projection.resolution', config.projection.resolution,
        f'0 or an integer <= {original.resolution}, the original '
        'resolution (a projection is a cheaper copy, never a larger one)')


def check_problem(config, original, projected) -> None:
  """Checks that need the problems: the projection, the widths file and the
  MACs target."""
  _check_projection(config, original, projected)
  if config.widths_file:
    _check_widths_file(config, projected)
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


def _check_splits(data_config, split_names) -> None:
  """Every split the run reads has examples."""
  counts = data.dataset_info(data_config).num_examples
  for split in split_names:
    if not counts[split]:
      raise DataError(
          f'config.data.source={data_config.source!r}: the {split} split is '
          f'empty (examples per split: {counts}); allowed: a source with '
          'examples in every split the selected stages read (the val split '
          'needs 2+ train examples per class and config.data.val_fraction '
          '> 0)')


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
  for data_config, split_names in reads(config, original, projected):
    _check_splits(data_config, split_names)
  t1 = time.perf_counter()
  timing['images_decoded'] = sum(
      data.preload(data_config, split_names)
      for data_config, split_names in reads(config, original, projected))
  timing['validate_and_list_s'] = t1 - t0
  timing['decode_s'] = time.perf_counter() - t1
  return Run(config, Workdir(workdir), original, projected)


def _run_group(r: Run, stage: stages_lib.Stage, group: list[Step]) -> bool:
  """Reuses, resumes or recomputes the steps of `group`: those not reused
  one by one, or (a group of seeds, `stage.together`) in one program; True
  if it computed anything. Each computed step's manifest is written when it
  ends."""
  pending = [step for step in group if reuse.begin(r, step)]
  if not pending:
    return False
  t0 = time.perf_counter()
  if len(pending) > 1:
    summaries = stage.together(r, [step.seed for step in pending])
    note = f', {len(pending)} seeds in one program'
  else:
    summaries, note = [pending[0].make()], ''
  for step, summary in zip(pending, summaries):
    reuse.write_manifest(r, step)
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
      with in_stage(key):
        _barrier(f'before {key}')
        computed |= _run_group(r, stage, group)
        _barrier(f'after {key}')
    except NonFiniteLossError as e:
      raise NonFiniteLossError(e.step, e.value, (
          f'stage {key}: {e} Lower {stage.lr_field(r.config)} or '
          'check the data.')) from e
  return computed


# What `in_stage` calls the part of a run before its first stage.
START = 'the start of the run (the workdir lock, config.json, widths/)'


@contextlib.contextmanager
def in_stage(name: str) -> Iterator[None]:
  """Tags an interrupt or an OSError (disk full, ...) raised inside with the
  stage (or step) it stopped, for the CLI's one-line message."""
  try:
    yield
  except (OSError, KeyboardInterrupt) as e:
    if getattr(e, 'wt_jax_stage', None) is None:
      e.wt_jax_stage = name
    raise


def run(config, workdir: str) -> Optional[dict]:
  """Runs the selected stages in chain order; returns the report (if run).

  Writes `timing.json`: where this run's wall time went (start-up and
  imports before `run`, validation and listing, image decoding, and each
  step's wall time; the training loops' own parts are in their results).
  """
  timing = {'startup_and_imports_s': time.time() - psutil.Process(
      os.getpid()).create_time()}
  r = prepare(config, workdir, timing)
  reuse.check_upstream(r)
  selected = [s for s in STAGES if s in tuple(config.stages)]
  lock = Lock(workdir) if r.is_main else None
  with in_stage(START):
    if lock:
      lock.acquire()
  try:
    with in_stage(START):
      _start(r)
    out, computed = None, False
    for name in selected:
      console.header(f'Stage {name}')
      t0 = time.perf_counter()
      if name == 'report':
        with in_stage('report'):
          out = stages_lib.write_report(r, reuse.fresh_outputs(r))
      else:
        computed |= _run_stage(r, name)
      timing[f'{name}_s'] = time.perf_counter() - t0
    if r.is_main and computed:  # a run that only reused keeps the old one
      with in_stage('end (timing.json)'):
        files.write_json(r.workdir.timing, timing)
    return out
  finally:
    if lock:
      lock.release()


def _start(r: Run) -> None:
  """The run's config and the two uniform width vectors, into the workdir."""
  if r.is_main:
    files.write_json(r.workdir.config, r.config.to_dict())
  r.save_widths('uniform', r.original.widths,
                macs=r.macs(r.original.widths),
                resolution=r.original.resolution)
  r.save_widths('projected_uniform', r.projected.widths,
                macs=r.macs(r.projected.widths, r.projected),
                resolution=r.projected.resolution)
