"""Where training writes in its workdir (local or remote, e.g. gs://...).

* `workdir/metrics.jsonl`: one JSON record per line (`records`);
* `workdir/checkpoints/`: orbax checkpoints (`checkpoints`), with
  `workdir/checkpoints/structure.json` describing the run they belong to;
* TensorBoard summaries: clu writes them into `workdir` itself.
"""
from __future__ import annotations

import os

METRICS_FILE = 'metrics.jsonl'
CHECKPOINTS_DIR = 'checkpoints'
STRUCTURE_FILE = 'structure.json'


def join(directory: str, *names: str) -> str:
  """Joins a local (made absolute) or remote (gs://...) path."""
  if '://' in str(directory):
    return '/'.join([str(directory).rstrip('/'), *names])
  return os.path.join(os.path.abspath(directory), *names)
