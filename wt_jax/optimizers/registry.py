"""The width-optimizer registry: `config.optimizer` -> the algorithm.

Every width optimizer is a function

    optimize(config, problem, workdir) -> result.OptimizeResult

* `config`: the whole run config; the optimizer reads its own block
  (`config.morphnet`, `config.autoslim`, `config.dmcp`) and `config.train`
  for the rest;
* `problem`: the `problem.Problem` to optimize (the projected one, or the
  original for a direct run): `problem.widths` is the starting network,
  `problem.data` its data config, and `resolution`, `num_classes`,
  `num_train` its sizes;
* `workdir`: where it checkpoints and writes `history.json` (its path
  through width space), so that a killed run resumes.

`OptimizeResult.train_macs` is the optimization's cost in the unit of the
overhead accounting: the sum over its steps of training MACs per example x
examples processed (`cost.train_macs_per_example`, forward + backward),
plus forward MACs of any examples it evaluates.

A user's own optimizer plugs in with `wt_jax.register_optimizer(name, fn)`
(`register`), in a module that `config.optimizer_module` names so that the
CLI imports it: `--config.optimizer=NAME --config.optimizer_module=pkg.mod`.

`optimize` here wraps the registered function: it returns a finished run's
stored result without work, applies the block's `expand_to` (FLOPs matching
of the result to that fraction of the starting MACs, the same for every
optimizer) and saves the result (`result.save`). This module sits above the
optimizers; they import only what is below them (`result`, `train`, ...).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from wt_jax.errors import WidthError
from wt_jax.nets import cost
from wt_jax.optimizers import autoslim
from wt_jax.optimizers import dmcp
from wt_jax.optimizers import morphnet
from wt_jax.optimizers import result as result_lib
from wt_jax.optimizers.result import OptimizeResult
from wt_jax.transfer import extrapolate
from wt_jax.transfer.problem import Problem
from wt_jax.util import validation


@dataclasses.dataclass(frozen=True)
class WidthOptimizer:
  optimize: Callable[..., OptimizeResult]  # (config, problem, workdir)
  validate: Optional[Callable[..., None]] = None  # (config) -> None
  # (config) -> the config field of the learning rate its training uses,
  # named in the error when that training diverges.
  lr_field: Callable[..., str] = lambda config: 'config.train.base_lr'


REGISTRY: dict[str, WidthOptimizer] = {
    'morphnet': WidthOptimizer(morphnet.optimize, morphnet.validate,
                               lambda config: 'config.morphnet.lr'),
    'autoslim': WidthOptimizer(
        autoslim.optimize, autoslim.validate,
        lambda config: ('config.autoslim.lr' if config.autoslim.lr > 0 else
                        'config.train.base_lr')),
    'dmcp': WidthOptimizer(
        dmcp.optimize, dmcp.validate,
        lambda config: ('config.dmcp.lr' if config.dmcp.lr > 0 else
                        'config.train.base_lr')),
}


BUILT_IN = frozenset(REGISTRY)


def register(name: str, optimize: Callable[..., OptimizeResult], *,
             validate: Optional[Callable[..., None]] = None,
             lr_field: Optional[Callable[..., str]] = None,
             replace: bool = False) -> None:
  """Registers a width optimizer under `name` (`--config.optimizer=name`).

  Args:
    name: the value of `config.optimizer` that selects it.
    optimize: `optimize(config, problem, workdir) -> result.OptimizeResult`
      (the module docstring says what it gets and must return). Its
      `train_macs` is its cost in MAC-examples, which the overhead
      accounting compares across problems; details it puts under
      `macs_not_scaling_with_data` (e.g. scoring on a fixed val sample) are
      scaled by the MACs ratio alone.
    validate: `validate(config)` raising `errors.ConfigError` for a bad
      field of its own block (`config.<name>`), called before any work.
    lr_field: `lr_field(config) -> 'config.<name>.lr'`, named in the error
      if its training diverges (default 'config.train.base_lr').
    replace: allow replacing a registered name (never a built-in one).
  """
  validation.new_name(
      'register_optimizer name', name, str.isidentifier,
      'a Python identifier', built_in=BUILT_IN, registered=REGISTRY,
      replace=replace,
      built_in_message='{name!r} is a built-in width optimizer; register '
      'yours under another name',
      registered_message='width optimizer {name!r} is registered already; '
      'pass replace=True to replace it')
  entry = WidthOptimizer(optimize, validate)
  if lr_field is not None:
    entry = dataclasses.replace(entry, lr_field=lr_field)
  REGISTRY[name] = entry


def import_module(config) -> None:
  """Imports `config.optimizer_module` (it registers its optimizer)."""
  validation.import_user_module('config.optimizer_module',
                                config.get('optimizer_module', ''),
                                'wt_jax.register_optimizer')


def lr_field(config) -> str:
  return REGISTRY[config.optimizer].lr_field(config)


def validate(config) -> None:
  """`config.optimizer` is registered (after importing
  `config.optimizer_module`); every registered block present is valid
  (each optimizer checks its own block)."""
  import_module(config)
  validation.Fields(config).choice('optimizer', REGISTRY)
  for name, entry in REGISTRY.items():
    if name in config and entry.validate is not None:
      entry.validate(config)


def expand(found: OptimizeResult, config, problem: Problem) -> OptimizeResult:
  """FLOPs-matches the result to `expand_to` x the starting MACs (if > 0)."""
  block = config.get(config.optimizer, None)
  expand_to = float(block.get('expand_to', 0.0)) if block is not None else 0.0
  if expand_to <= 0:
    return found
  start = cost.macs(problem.widths, problem.resolution, problem.num_classes)
  matched = extrapolate.flops_match(
      found.widths, int(expand_to * start), problem.resolution,
      problem.num_classes, divisor=config.transfer.divisor,
      min_width=config.transfer.min_width)
  return dataclasses.replace(found, widths=matched.widths)


def optimize(config, problem: Problem, workdir: str) -> OptimizeResult:
  """Runs `config.optimizer` on `problem`; resumes in `workdir`."""
  done = result_lib.load(workdir)
  if done is not None:
    if not done.widths.same_structure(problem.widths):
      raise WidthError(
          f'{workdir} holds an optimization of {done.widths.arch} depth '
          f'{done.widths.depth}, not {problem.widths.arch} depth '
          f'{problem.widths.depth}')
    return done
  found = REGISTRY[config.optimizer].optimize(config, problem, workdir)
  found = expand(found, config, problem)
  result_lib.save(workdir, found)
  return found
