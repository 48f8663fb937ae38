"""The width-optimizer interface: `optimize(config, data_config, widths, workdir)`.

Every width optimizer (MorphNet, AutoSlim; DMCP would be a third) is a
function with this signature, registered in `OPTIMIZERS`:

    optimize(config, data_config, widths, workdir) -> OptimizeResult

* `config`: the whole run config; the optimizer reads its own block
  (`config.morphnet`, `config.autoslim`) and `config.train` for the rest.
* `data_config`: the (possibly projected) data block.
* `widths`: the starting network (the projected net's uniform widths).
* `workdir`: where it checkpoints, writes `widths.json` (the result),
  `history.json` (its path through width space) and `summary.json`. A
  re-run with a finished workdir returns the stored result without work.

`OptimizeResult.train_macs` is the optimization's cost in the unit of the
overhead accounting: the sum over its steps of training MACs per example x
examples processed (`cost.train_macs_per_example`, forward + backward).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

from wt_jax import files
from wt_jax import widths as widths_lib
from wt_jax.widths import Widths

SUMMARY = 'summary.json'
WIDTHS = 'widths.json'
HISTORY = 'history.json'


@dataclasses.dataclass(frozen=True)
class OptimizeResult:
  widths: Widths  # the optimized width vector (validated)
  train_macs: int  # optimization cost: sum of train MACs x examples
  examples: int  # training examples processed
  epochs: float  # epochs over the optimizer's training split
  wall_time_s: float  # measured wall time of the optimization
  details: dict  # optimizer-specific figures (strength, evaluations, ...)

  def summary(self) -> dict[str, Any]:
    return dict(train_macs=int(self.train_macs), examples=int(self.examples),
                epochs=float(self.epochs), wall_time_s=float(self.wall_time_s),
                details=self.details, widths=widths_lib.to_json(self.widths))


def save_result(workdir: str, result: OptimizeResult) -> None:
  """Writes widths.json, then summary.json (the completion marker)."""
  widths_lib.save(os.path.join(workdir, WIDTHS), result.widths)
  files.write_json(os.path.join(workdir, SUMMARY), result.summary())


def load_result(workdir: str):
  """The stored result of a finished optimization, or None."""
  path = os.path.join(workdir, SUMMARY)
  if not files.exists(path):
    return None
  s = files.read_json(path)
  return OptimizeResult(widths_lib.from_json(s['widths'], source=path),
                        s['train_macs'], s['examples'], s['epochs'],
                        s['wall_time_s'], s['details'])


def _morphnet(*args, **kwargs):
  from wt_jax import morphnet  # pylint: disable=g-import-not-at-top
  return morphnet.optimize(*args, **kwargs)


def _autoslim(*args, **kwargs):
  from wt_jax import autoslim  # pylint: disable=g-import-not-at-top
  return autoslim.optimize(*args, **kwargs)


OPTIMIZERS: dict[str, Callable[..., OptimizeResult]] = {
    'morphnet': _morphnet,
    'autoslim': _autoslim,
}


def optimize(config, data_config, widths: Widths, workdir: str
             ) -> OptimizeResult:
  """Runs `config.optimizer` on (data_config, widths); resumes in workdir."""
  if config.optimizer not in OPTIMIZERS:
    raise ValueError(f'optimizer={config.optimizer!r}; allowed: '
                     f'{", ".join(OPTIMIZERS)}')
  done = load_result(workdir)
  if done is not None:
    if not done.widths.same_structure(widths):
      raise widths_lib.WidthError(
          f'{workdir} holds an optimization of {done.widths.arch} depth '
          f'{done.widths.depth}, not {widths.arch} depth {widths.depth}')
    return done
  result = OPTIMIZERS[config.optimizer](config, data_config, widths, workdir)
  save_result(workdir, result)
  return result
