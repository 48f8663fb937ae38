"""The stages of the chain, as a table: `STAGES = {name: Stage}`.

A stage is a list of *steps* (`Stage.steps(run)`): one for most stages, one
per seed for the training stages. A `Step` knows its directory (`home`, which
holds its fingerprint), the files that mark it done, the exact inputs it is
computed from (`fingerprint.record`: the config fields it reads and the
digests of the upstream files it consumes) and how to make it. The pipeline
(`pipeline.run`) decides from the fingerprints whether to reuse, resume or
recompute a step; the stages themselves only compute.

Where a width vector is born, changed and consumed:
* `widths/uniform.json`: the original network at `config.width_mult`
  (`problem.from_config`), written by `pipeline.run`;
* `widths/projected_uniform.json`: the projected net (`projection.project`);
* `widths/projected_optimized.json`: stage `optimize` (the width optimizer
  on the projected problem, `registry.optimize`, or
  `config.widths_file`);
* `widths/transferred.json`: stage `transfer` (`extrapolate.extrapolate`);
* `widths/direct_optimized.json`, `widths/direct.json`: stage
  `optimize_direct` (the optimizer on the original problem, then FLOPs
  matching, as a reference);
* consumed by `train_<arm>` (`train.train_and_evaluate`, once per seed, or
  `train.train_and_evaluate_seeds`, the seeds in one program, with
  `config.train.batch_seeds`) and `report`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import numpy as np

from wt_jax import report
from wt_jax import train
from wt_jax.nets import cost
from wt_jax.nets import widths as widths_lib
from wt_jax.optimizers import registry
from wt_jax.optimizers import result as result_lib
from wt_jax.transfer import extrapolate
from wt_jax.transfer.problem import Problem
from wt_jax.util import files
from wt_jax.util import fingerprint
from wt_jax.util import workdir as workdir_lib
from wt_jax.util.workdir import ARMS
from wt_jax.util.workdir import Workdir

# Config fields that define the original problem (the uniform widths round
# to transfer.divisor).
PROBLEM_FIELDS = ('arch', 'arch_module', 'width_mult', 'depth', 'data',
                  'transfer.divisor')


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

  def fields(self, *prefixes: str, exclude=()) -> dict:
    return fingerprint.config_fields(self.config, prefixes, exclude)

  def upstream(self, *paths: str) -> dict[str, str]:
    """{workdir-relative name: path} of files under the workdir."""
    return {self.workdir.name(p): p for p in paths}


@dataclasses.dataclass(frozen=True)
class Step:
  """One reusable unit of a stage (see the module doc)."""
  key: str  # 'optimize', 'train_uniform/seed_0'
  home: str  # its directory: fingerprint.json and what it writes itself
  outputs: tuple[str, ...]  # files whose presence marks it done
  owned: tuple[str, ...]  # other files it writes (superseded with home)
  inputs: dict  # its fingerprint record
  make: Callable[[], str]  # computes it; returns a one-line summary
  seed: Optional[int] = None  # the seed a training step trains

  @property
  def record_path(self) -> str:
    return workdir_lib.step_record(self.home)

  @property
  def manifest_path(self) -> str:
    return workdir_lib.step_manifest(self.home)


@dataclasses.dataclass(frozen=True)
class Stage:
  steps: Callable[[Run], list[Step]]
  lr_field: Callable[[Any], str]  # the learning rate its training uses
  # Computes several of its steps (by seed) in one program, one summary
  # each, when config.train.batch_seeds (the training stages).
  together: Optional[Callable[[Run, list[int]], list[str]]] = None
  # The stage whose outputs it consumes: selected too, or already made
  # from this config's inputs (`reuse.check_upstream`).
  needs: Optional[str] = None


# ----------------------------------------------------------------------------
# What each stage computes.
# ----------------------------------------------------------------------------


def optimize(r: Run) -> str:
  """Width optimization on the projected problem (or `config.widths_file`)."""
  proj = r.projected
  out = r.workdir.optimize()
  if r.config.widths_file:
    opt = widths_lib.load(r.config.widths_file, expect_arch=proj.widths.arch,
                          expect_depth=proj.widths.depth)
    found = result_lib.OptimizeResult(opt, 0, 0, 0.0, 0.0, dict(
        optimizer='external', widths_file=r.config.widths_file))
    result_lib.save(out, found)
  else:
    found = registry.optimize(r.config, proj, out)
  macs = r.macs(found.widths, proj)
  r.save_widths('projected_optimized', found.widths, macs=macs,
                resolution=proj.resolution)
  return (f'{cost.human(macs)} MACs, {macs / r.macs(proj.widths, proj):.2f} '
          f'of the projected uniform net; cost {found.train_macs:.3g} '
          'MAC-examples')


def transfer(r: Run) -> str:
  """Dimension matching, depth matching and FLOPs matching."""
  proj, orig, t = r.projected, r.original, r.config.transfer
  opt = widths_lib.load(r.workdir.widths('projected_optimized'),
                        expect_arch=proj.widths.arch,
                        expect_depth=proj.widths.depth)
  match = extrapolate.extrapolate(
      opt, proj.widths, orig.widths, rule=t.stacking,
      target_macs=int(t.target_macs), resolution=orig.resolution,
      num_classes=orig.num_classes, divisor=t.divisor, min_width=t.min_width)
  r.save_widths('transferred', match.widths, macs=match.macs,
                target_macs=match.target_macs, scale=match.scale,
                stacking=t.stacking,
                multipliers=dict(zip(orig.widths.names, np.round(
                    match.multipliers, 6).tolist())))
  return (f'{cost.human(match.macs)} MACs (target '
          f'{cost.human(match.target_macs)})')


def optimize_direct(r: Run) -> str:
  """The reference: the optimizer on the original problem, FLOPs-matched."""
  orig, t = r.original, r.config.transfer
  found = registry.optimize(r.config, orig,
                                    r.workdir.optimize(direct=True))
  target = int(t.target_macs) or r.macs(orig.widths)
  match = extrapolate.flops_match(found.widths, target, orig.resolution,
                                  orig.num_classes, divisor=t.divisor,
                                  min_width=t.min_width)
  r.save_widths('direct_optimized', found.widths)
  r.save_widths('direct', match.widths, macs=match.macs,
                target_macs=match.target_macs)
  return (f'{cost.human(match.macs)} MACs after FLOPs matching; cost '
          f'{found.train_macs:.3g} MAC-examples')


def train_seed(r: Run, arm: str, seed: int) -> str:
  """Final training of one arm and seed (resumes from its checkpoints)."""
  widths = widths_lib.load(r.workdir.widths(arm))
  metrics = train.train_and_evaluate(
      r.config, widths, r.workdir.train(arm, seed), seed=int(seed),
      eval_split='test')
  return _save_final(r, arm, seed, metrics)


def train_seeds(r: Run, arm: str, seeds: list[int]) -> list[str]:
  """Final training of several seeds of one arm in one program
  (`config.train.batch_seeds`; each resumes from its checkpoints)."""
  widths = widths_lib.load(r.workdir.widths(arm))
  finals = train.train_and_evaluate_seeds(
      r.config, widths, [r.workdir.train(arm, s) for s in seeds], seeds,
      eval_split='test')
  return [_save_final(r, arm, s, m) for s, m in zip(seeds, finals)]


def _save_final(r: Run, arm: str, seed: int, metrics: dict) -> str:
  if r.is_main:
    files.write_json(r.workdir.final(arm, seed),
                     dict(arm=arm, seed=int(seed), **metrics))
  return f'test top-1 {100 * metrics["top1"]:.2f}% after {metrics["steps"]} steps'


# ----------------------------------------------------------------------------
# Their steps: inputs, outputs, homes.
# ----------------------------------------------------------------------------


def _optimizer_fields(r: Run) -> tuple[str, ...]:
  return ('dtype', 'seed', 'train', 'optimizer', 'optimizer_module',
          r.config.optimizer, 'transfer.min_width')


def optimize_steps(r: Run) -> list[Step]:
  wd = r.workdir
  if r.config.widths_file:  # by its content, wherever it lies
    inputs = fingerprint.record(
        r.fields(*PROBLEM_FIELDS, 'projection'),
        {'widths_file': r.config.widths_file})
  else:
    inputs = fingerprint.record(
        r.fields(*PROBLEM_FIELDS, 'projection', *_optimizer_fields(r)))
  home = wd.optimize()
  return [Step('optimize', home,
               (workdir_lib.summary(home),
                wd.widths('projected_optimized')),
               (wd.widths('projected_optimized'),), inputs,
               lambda: optimize(r))]


def transfer_steps(r: Run) -> list[Step]:
  wd = r.workdir
  inputs = fingerprint.record(
      r.fields(*PROBLEM_FIELDS, 'projection', 'transfer'),
      r.upstream(wd.widths('projected_optimized')))
  return [Step('transfer', wd.transfer, (wd.widths('transferred'),),
               (wd.widths('transferred'),), inputs, lambda: transfer(r))]


def optimize_direct_steps(r: Run) -> list[Step]:
  wd = r.workdir
  inputs = fingerprint.record(
      r.fields(*PROBLEM_FIELDS, 'transfer', *_optimizer_fields(r)))
  home = wd.optimize(direct=True)
  widths = (wd.widths('direct_optimized'), wd.widths('direct'))
  return [Step('optimize_direct', home,
               (workdir_lib.summary(home),) + widths, widths,
               inputs, lambda: optimize_direct(r))]


def train_steps(r: Run, arm: str) -> list[Step]:
  """One step per seed: seeds are reused, resumed or trained one by one."""
  wd = r.workdir
  fields = r.fields('data', 'train', 'dtype', exclude=('train.eval_batch_size',))
  out = []
  for seed in r.config.seeds:
    inputs = fingerprint.record(fields, r.upstream(wd.widths(arm)),
                                seed=int(seed))
    out.append(Step(f'train_{arm}/seed_{seed}', wd.train(arm, seed),
                    (wd.final(arm, seed),), (), inputs,
                    lambda seed=seed: train_seed(r, arm, seed), int(seed)))
  return out


def _train_lr(config) -> str:
  return 'config.train.base_lr'


def _optimize_lr(config) -> str:
  return registry.lr_field(config)


STAGES: dict[str, Stage] = {  # in chain order
    'optimize': Stage(optimize_steps, _optimize_lr),
    'transfer': Stage(transfer_steps, _train_lr, needs='optimize'),
    'train_transferred': Stage(
        lambda r: train_steps(r, 'transferred'), _train_lr,
        lambda r, seeds: train_seeds(r, 'transferred', seeds),
        needs='transfer'),
    'train_uniform': Stage(
        lambda r: train_steps(r, 'uniform'), _train_lr,
        lambda r, seeds: train_seeds(r, 'uniform', seeds)),
    'optimize_direct': Stage(optimize_direct_steps, _optimize_lr),
    'train_direct': Stage(lambda r: train_steps(r, 'direct'), _train_lr,
                          lambda r, seeds: train_seeds(r, 'direct', seeds),
                          needs='optimize_direct'),
    # No steps and no fingerprint: the pipeline rewrites the report from
    # the outputs whose fingerprints match this run (`write_report`).
    'report': Stage(lambda r: [], _train_lr),
}
assert {f'train_{a}' for a in ARMS} <= set(STAGES)


def write_report(r: Run, fresh: Callable[[str], bool]) -> dict:
  return report.write_report(r.config, r.original, r.projected, r.workdir,
                             fresh=fresh)
