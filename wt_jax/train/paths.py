"""Where training writes in its workdir (local or remote, e.g. gs://...).

* `workdir/metrics.jsonl`: one JSON record per line (`records`);
* `workdir/checkpoints/`: orbax checkpoints (`checkpoints`), with
  `workdir/checkpoints/structure.json` describing the run they belong to;
* TensorBoard summaries: `events.out.tfevents.*` files directly in
  `workdir` (`summaries`, tensorboard's own event writer).

The names are `wt_jax.util.workdir`'s (the whole layout, in one place).
"""
from __future__ import annotations

import os

from wt_jax.util.workdir import CHECKPOINTS_DIR
from wt_jax.util.workdir import METRICS_FILE
from wt_jax.util.workdir import STRUCTURE_FILE

__all__ = ['CHECKPOINTS_DIR', 'METRICS_FILE', 'STRUCTURE_FILE', 'join']


def join(directory: str, *names: str) -> str:
  """Joins a local (made absolute) or remote (gs://...) path."""
  if '://' in str(directory):
    return '/'.join([str(directory).rstrip('/'), *names])
  return os.path.join(os.path.abspath(directory), *names)
