"""The width-transfer chain: data -> project -> optimize -> extrapolate -> train
-> report.

Each stage is a function of plain values that writes its output under the
workdir; a stage whose output exists is skipped, so a re-run resumes (and
the training stages resume from their orbax checkpoints mid-run).

Where a width vector is born, changed and consumed:
* `widths/uniform.json`: the original network at `config.width_mult`
  (`widths.uniform`), born in `problem`;
* `widths/projected_uniform.json`: the projected net (`projection.project`);
* `widths/projected_optimized.json`: stage `optimize`
  (`optimizers.optimize` on the projected problem, or `config.widths_file`);
* `widths/transferred.json`: stage `transfer` (`extrapolate.extrapolate`);
* `widths/direct_optimized.json`, `widths/direct.json`: stage
  `optimize_direct` (the optimizer on the original problem, then FLOPs
  matching, as a reference);
* consumed by `train_<arm>` (`train.train_and_evaluate`, once per seed) and
  `report`.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Optional

from absl import logging
import jax

from wt_jax import cost
from wt_jax import extrapolate
from wt_jax import files
from wt_jax import optimizers
from wt_jax import projection
from wt_jax import widths as widths_lib
from wt_jax.widths import Widths

STAGES = ('optimize', 'transfer', 'train_transferred', 'train_uniform',
          'optimize_direct', 'train_direct', 'report')
ARMS = ('uniform', 'transferred', 'direct')


@dataclasses.dataclass(frozen=True)
class Problem:
  """The original width-optimization problem."""
  uniform: Widths  # the original network's uniform widths
  data: Any  # its data config
  resolution: int
  num_classes: int
  num_train: int  # training examples (after the data's own sample_fraction)


def problem(config) -> Problem:
  """The original problem of `config`: network, data and their sizes."""
  from wt_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  info = data_lib.dataset_info(config.data)
  uniform = widths_lib.uniform(config.arch, config.width_mult,
                               depth=tuple(config.depth) or None,
                               divisor=config.transfer.divisor)
  return Problem(uniform, config.data, info.resolution, info.num_classes,
                 info.num_examples['train'])


def projected(config, prob: Problem) -> projection.Projected:
  return projection.project(prob.uniform, config.width_mult, prob.data,
                            prob.resolution, config.projection,
                            divisor=config.transfer.divisor)


def _path(workdir, *parts):
  return os.path.join(workdir, *parts)


def _widths_path(workdir, name):
  return _path(workdir, 'widths', f'{name}.json')


def _is_main():
  return jax.process_index() == 0


# ----------------------------------------------------------------------------
# Stages. Each returns nothing and writes its outputs; `run` skips a stage
# whose outputs exist.
# ----------------------------------------------------------------------------


def stage_optimize(config, prob: Problem, workdir: str) -> None:
  """Width optimization on the projected problem."""
  proj = projected(config, prob)
  if config.widths_file:
    opt = widths_lib.load(config.widths_file, expect_arch=proj.uniform.arch,
                          expect_depth=proj.uniform.depth)
    result = optimizers.OptimizeResult(opt, 0, 0, 0.0, 0.0,
                                       dict(optimizer='external',
                                            widths_file=config.widths_file))
    if _is_main():
      optimizers.save_result(_path(workdir, 'optimize'), result)
  else:
    result = optimizers.optimize(config, proj.data, proj.uniform,
                                 _path(workdir, 'optimize'))
  if _is_main():
    widths_lib.save(_widths_path(workdir, 'projected_optimized'),
                    result.widths,
                    macs=cost.macs(result.widths, proj.resolution,
                                   prob.num_classes),
                    resolution=proj.resolution)


def stage_transfer(config, prob: Problem, workdir: str) -> None:
  """Dimension matching, depth matching and FLOPs matching."""
  proj = projected(config, prob)
  opt = widths_lib.load(_widths_path(workdir, 'projected_optimized'),
                        expect_arch=proj.uniform.arch,
                        expect_depth=proj.uniform.depth)
  t = config.transfer
  match = extrapolate.extrapolate(
      opt, proj.uniform, prob.uniform, rule=t.stacking,
      target_macs=int(t.target_macs), resolution=prob.resolution,
      num_classes=prob.num_classes, divisor=t.divisor, min_width=t.min_width)
  mults = extrapolate.depth_match(
      extrapolate.dimension_match(opt, proj.uniform), proj.uniform,
      prob.uniform, t.stacking)
  if _is_main():
    widths_lib.save(_widths_path(workdir, 'transferred'), match.widths,
                    macs=match.macs, target_macs=match.target_macs,
                    scale=match.scale, stacking=t.stacking,
                    multipliers=dict(zip(prob.uniform.names,
                                         mults.round(6).tolist())))


def stage_optimize_direct(config, prob: Problem, workdir: str) -> None:
  """The reference: the optimizer on the original problem, FLOPs-matched."""
  result = optimizers.optimize(config, prob.data, prob.uniform,
                               _path(workdir, 'optimize_direct'))
  target = int(config.transfer.target_macs) or cost.macs(
      prob.uniform, prob.resolution, prob.num_classes)
  match = extrapolate.flops_match(
      result.widths, target, prob.resolution, prob.num_classes,
      divisor=config.transfer.divisor, min_width=config.transfer.min_width)
  if _is_main():
    widths_lib.save(_widths_path(workdir, 'direct_optimized'), result.widths)
    widths_lib.save(_widths_path(workdir, 'direct'), match.widths,
                    macs=match.macs, target_macs=match.target_macs)


def _arm_widths(workdir, arm) -> Widths:
  return widths_lib.load(_widths_path(workdir, arm))


def _final_path(workdir, arm, seed):
  return _path(workdir, 'train', arm, f'seed_{seed}', 'final.json')


def stage_train(config, arm: str, workdir: str) -> None:
  """Final training of one arm, once per seed (each seed resumable)."""
  from wt_jax import train  # pylint: disable=g-import-not-at-top
  widths = _arm_widths(workdir, arm)
  for seed in config.seeds:
    out = _final_path(workdir, arm, seed)
    if files.exists(out):
      continue
    metrics = train.train_and_evaluate(
        config, widths, os.path.dirname(out), seed=int(seed),
        eval_split='test')
    if _is_main():
      files.write_json(out, dict(arm=arm, seed=int(seed), **metrics))


# ----------------------------------------------------------------------------
# Outputs and the chain.
# ----------------------------------------------------------------------------


def outputs(config, stage: str, workdir: str) -> list[str]:
  """The files whose existence marks `stage` as done."""
  if stage == 'optimize':
    return [_widths_path(workdir, 'projected_optimized')]
  if stage == 'transfer':
    return [_widths_path(workdir, 'transferred')]
  if stage == 'optimize_direct':
    return [_widths_path(workdir, 'direct')]
  if stage.startswith('train_'):
    return [_final_path(workdir, stage[len('train_'):], s)
            for s in config.seeds]
  if stage == 'report':
    return []  # always rewritten: cheap, and it reflects what exists now
  raise ValueError(f'unknown stage {stage!r}; allowed: {", ".join(STAGES)}')


def run(config, workdir: str) -> Optional[dict]:
  """Runs the selected stages in chain order; returns the report (if run)."""
  from wt_jax import config_check  # pylint: disable=g-import-not-at-top
  from wt_jax import report  # pylint: disable=g-import-not-at-top
  config_check.validate(config)
  prob = problem(config)
  proj = projected(config, prob)
  config_check.validate_against_problem(config, prob, proj)
  if _is_main():
    files.write_json(_path(workdir, 'config.json'), config.to_dict())
    widths_lib.save(_widths_path(workdir, 'uniform'), prob.uniform,
                    macs=cost.macs(prob.uniform, prob.resolution,
                                   prob.num_classes),
                    resolution=prob.resolution)
    widths_lib.save(_widths_path(workdir, 'projected_uniform'), proj.uniform,
                    macs=cost.macs(proj.uniform, proj.resolution,
                                   prob.num_classes),
                    resolution=proj.resolution)
  selected = [s for s in STAGES if s in tuple(config.stages)]
  result = None
  for stage in selected:
    done = outputs(config, stage, workdir)
    if done and all(files.exists(p) for p in done):
      logging.info('Stage %s: done already, skipped.', stage)
      continue
    logging.info('Stage %s ...', stage)
    t0 = time.perf_counter()
    if stage == 'optimize':
      stage_optimize(config, prob, workdir)
    elif stage == 'transfer':
      stage_transfer(config, prob, workdir)
    elif stage == 'optimize_direct':
      stage_optimize_direct(config, prob, workdir)
    elif stage.startswith('train_'):
      stage_train(config, stage[len('train_'):], workdir)
    elif stage == 'report':
      result = report.write_report(config, prob, proj, workdir)
    logging.info('Stage %s: %.1f s.', stage, time.perf_counter() - t0)
  return result

