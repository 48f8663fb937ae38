"""The width-transfer chain: data -> project -> optimize -> extrapolate -> train
-> report.

`run(config, workdir)` validates the config (`validate`: each block by the
module that owns it), builds the original and the projected problem once
(`Run`), and runs the selected stages of `STAGES` in chain order. Each stage
is a function of that `Run` that writes its outputs under the workdir
(`workdir.Workdir` owns every path); a stage whose outputs exist is skipped,
so a re-run resumes (and training resumes from its orbax checkpoints).

Where a width vector is born, changed and consumed:
* `widths/uniform.json`: the original network at `config.width_mult`
  (`problem.from_config`), written by `run`;
* `widths/projected_uniform.json`: the projected net (`projection.project`);
* `widths/projected_optimized.json`: stage `optimize` (the width optimizer
  on the projected problem, `width_optimizers.optimize`, or
  `config.widths_file`);
* `widths/transferred.json`: stage `transfer` (`extrapolate.extrapolate`);
* `widths/direct_optimized.json`, `widths/direct.json`: stage
  `optimize_direct` (the optimizer on the original problem, then FLOPs
  matching, as a reference);
* consumed by `train_<arm>` (`train.train_and_evaluate`, once per seed) and
  `report`.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional

from absl import logging
import jax

from wt_jax import architectures
from wt_jax import cost
from wt_jax import data
from wt_jax import extrapolate
from wt_jax import files
from wt_jax import problem as problem_lib
from wt_jax import projection
from wt_jax import report
from wt_jax import result as result_lib
from wt_jax import train
from wt_jax import validation
from wt_jax import widths as widths_lib
from wt_jax import width_optimizers
from wt_jax.errors import ConfigError
from wt_jax.errors import WidthError
from wt_jax.problem import Problem
from wt_jax.workdir import ARMS
from wt_jax.workdir import Workdir


@dataclasses.dataclass(frozen=True)
class Run:
  """What every stage reads: the config, the workdir and the two problems."""
  config: Any
  workdir: Workdir
  original: Problem
  projected: Problem

  @property
  def is_main(self) -> bool:
    return jax.process_index() == 0

  def save_widths(self, name: str, widths, **extra) -> None:
    if self.is_main:
      widths_lib.save(self.workdir.widths(name), widths, **extra)

  def macs(self, widths, prob: Optional[Problem] = None) -> int:
    prob = prob or self.original
    return cost.macs(widths, prob.resolution, prob.num_classes)


# ----------------------------------------------------------------------------
# Stages: each writes its outputs; `run` skips a stage whose outputs exist.
# ----------------------------------------------------------------------------


def stage_optimize(r: Run) -> None:
  """Width optimization on the projected problem (or `config.widths_file`)."""
  proj = r.projected
  out = r.workdir.optimize()
  if r.config.widths_file:
    opt = widths_lib.load(r.config.widths_file, expect_arch=proj.widths.arch,
                          expect_depth=proj.widths.depth)
    found = result_lib.OptimizeResult(opt, 0, 0, 0.0, 0.0, dict(
        optimizer='external', widths_file=r.config.widths_file))
    if r.is_main:
      result_lib.save(out, found)
  else:
    found = width_optimizers.optimize(r.config, proj, out)
  r.save_widths('projected_optimized', found.widths,
                macs=r.macs(found.widths, proj), resolution=proj.resolution)


def stage_transfer(r: Run) -> None:
  """Dimension matching, depth matching and FLOPs matching."""
  proj, orig, t = r.projected, r.original, r.config.transfer
  opt = widths_lib.load(r.workdir.widths('projected_optimized'),
                        expect_arch=proj.widths.arch,
                        expect_depth=proj.widths.depth)
  match = extrapolate.extrapolate(
      opt, proj.widths, orig.widths, rule=t.stacking,
      target_macs=int(t.target_macs), resolution=orig.resolution,
      num_classes=orig.num_classes, divisor=t.divisor, min_width=t.min_width)
  mults = extrapolate.depth_match(
      extrapolate.dimension_match(opt, proj.widths), proj.widths, orig.widths,
      t.stacking)
  r.save_widths('transferred', match.widths, macs=match.macs,
                target_macs=match.target_macs, scale=match.scale,
                stacking=t.stacking,
                multipliers=dict(zip(orig.widths.names,
                                     mults.round(6).tolist())))


def stage_optimize_direct(r: Run) -> None:
  """The reference: the optimizer on the original problem, FLOPs-matched."""
  orig, t = r.original, r.config.transfer
  found = width_optimizers.optimize(r.config, orig,
                                    r.workdir.optimize(direct=True))
  target = int(t.target_macs) or r.macs(orig.widths)
  match = extrapolate.flops_match(found.widths, target, orig.resolution,
                                  orig.num_classes, divisor=t.divisor,
                                  min_width=t.min_width)
  r.save_widths('direct_optimized', found.widths)
  r.save_widths('direct', match.widths, macs=match.macs,
                target_macs=match.target_macs)


def stage_train(r: Run, arm: str) -> None:
  """Final training of one arm, once per seed (each seed resumable)."""
  widths = widths_lib.load(r.workdir.widths(arm))
  for seed in r.config.seeds:
    out = r.workdir.final(arm, seed)
    if files.exists(out):
      continue
    metrics = train.train_and_evaluate(
        r.config, widths, r.workdir.train(arm, seed), seed=int(seed),
        eval_split='test')
    if r.is_main:
      files.write_json(out, dict(arm=arm, seed=int(seed), **metrics))


def stage_report(r: Run) -> dict:
  return report.write_report(r.config, r.original, r.projected, r.workdir)


@dataclasses.dataclass(frozen=True)
class Stage:
  run: Callable[[Run], Optional[dict]]
  outputs: Callable[[Run], list[str]]  # files whose existence marks it done


def _train_stage(arm: str) -> Stage:
  return Stage(lambda r: stage_train(r, arm),
               lambda r: [r.workdir.final(arm, s) for s in r.config.seeds])


# In chain order. The report has no outputs that mark it done: it is cheap
# and always rewritten from what exists now.
STAGES: dict[str, Stage] = {
    'optimize': Stage(stage_optimize,
                      lambda r: [r.workdir.widths('projected_optimized')]),
    'transfer': Stage(stage_transfer,
                      lambda r: [r.workdir.widths('transferred')]),
    'train_transferred': _train_stage('transferred'),
    'train_uniform': _train_stage('uniform'),
    'optimize_direct': Stage(stage_optimize_direct,
                             lambda r: [r.workdir.widths('direct')]),
    'train_direct': _train_stage('direct'),
    'report': Stage(stage_report, lambda r: []),
}
assert {f'train_{a}' for a in ARMS} <= set(STAGES)


# ----------------------------------------------------------------------------
# Validation and the chain.
# ----------------------------------------------------------------------------


def validate(config) -> None:
  """Checks every block, each by the module that owns it (no I/O but a
  'folder:' source's existence); raises ConfigError on the first bad field."""
  f = validation.Fields(config)
  f.choice('arch', architectures.NAMES)
  f.number('width_mult', 0, lo_open=True)
  try:
    architectures.get_arch(config.arch, tuple(config.depth) or None)
  except ConfigError as e:
    raise ConfigError(f'config.depth: {e}') from e
  f.choice('dtype', ('float32', 'bfloat16'))
  f.number('seed', 0, integer=True)
  f.integers('seeds', 0)
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


def check_problem(config, original: Problem, projected: Problem) -> None:
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
  target = int(config.transfer.target_macs)
  if target:
    floor = cost.macs(original.widths.replace(
        [config.transfer.min_width] * len(original.widths)),
                      original.resolution, original.num_classes)
    if target < floor:
      raise ConfigError(
          f'config.transfer.target_macs={target:,} is infeasible: the '
          f'smallest {original.widths.arch} (every group at '
          f'min_width={config.transfer.min_width}) costs {floor:,} MACs at '
          f'{original.resolution}px; allowed: >= {floor:,}')


def prepare(config, workdir: str) -> Run:
  """Validates `config` and builds the two problems, once per run."""
  validate(config)
  original = problem_lib.from_config(config)
  projected = projection.project(original, config.projection,
                                 divisor=config.transfer.divisor)
  check_problem(config, original, projected)
  return Run(config, Workdir(workdir), original, projected)


def run(config, workdir: str) -> Optional[dict]:
  """Runs the selected stages in chain order; returns the report (if run)."""
  r = prepare(config, workdir)
  if r.is_main:
    files.write_json(r.workdir.config, config.to_dict())
  r.save_widths('uniform', r.original.widths, macs=r.macs(r.original.widths),
                resolution=r.original.resolution)
  r.save_widths('projected_uniform', r.projected.widths,
                macs=r.macs(r.projected.widths, r.projected),
                resolution=r.projected.resolution)
  out = None
  for name in [s for s in STAGES if s in tuple(config.stages)]:
    stage = STAGES[name]
    done = stage.outputs(r)
    if done and all(files.exists(p) for p in done):
      logging.info('Stage %s: done already, skipped.', name)
      continue
    logging.info('Stage %s ...', name)
    t0 = time.perf_counter()
    produced = stage.run(r)  # only the report returns a value
    out = produced if produced is not None else out
    logging.info('Stage %s: %.1f s.', name, time.perf_counter() - t0)
  return out
