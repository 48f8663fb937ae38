"""The result of a width optimization, and its files.

Every width optimizer returns an `OptimizeResult`; `save` / `load` keep it in
the optimizer's workdir as `summary.json` (the completion marker, holding the
widths too). This module sits below the optimizers and the registry
(`registry`), so both import it and neither imports the other.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax

from wt_jax.nets import widths as widths_lib
from wt_jax.nets.widths import Widths
from wt_jax.util import files
from wt_jax.util import workdir as workdir_lib

# The file names in an optimizer's workdir (spelled in `wt_jax.util.workdir`).
SUMMARY = workdir_lib.SUMMARY_FILE
HISTORY = workdir_lib.HISTORY_FILE  # an optimizer's path through width space


@dataclasses.dataclass(frozen=True)
class OptimizeResult:
  """What a width optimizer found and what it cost."""
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


def save(workdir: str, result: OptimizeResult) -> None:
  """Writes summary.json atomically: the run is complete once it exists.

  Process 0 only: under multi-host every process holds the result, each
  with its own wall time, and one file must hold one of them (the step's
  manifest records its digest)."""
  if jax.process_index() == 0:
    files.write_json(workdir_lib.summary(workdir), result.summary())


def load(workdir: str) -> Optional[OptimizeResult]:
  """The stored result of a finished optimization, or None."""
  path = workdir_lib.summary(workdir)
  if not files.exists(path):
    return None
  s = files.read_json(path)
  return OptimizeResult(widths_lib.from_json(s['widths'], source=path),
                        s['train_macs'], s['examples'], s['epochs'],
                        s['wall_time_s'], s['details'])
