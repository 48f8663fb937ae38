"""Every path a run writes under its workdir, in one place.

    <workdir>/
      config.json                   the run's config (the last run's)
      widths/<name>.json            width vectors (`WIDTH_FILES`)
      optimize/                     the width optimizer on the projected problem
      optimize_direct/              the width optimizer on the original problem
        summary.json, history.json, train/ (its checkpoints)
      train/<arm>/seed_<s>/         final training of one arm and seed
        checkpoints/, metrics.jsonl, TensorBoard events, final.json
      results.json, results.md      the report
      widths.png, overhead.png

The pipeline writes these, the report and experiments/ read them; none of
them spells a path itself.
"""
from __future__ import annotations

import dataclasses
import os

# Where each width vector is born (the stage that writes it).
WIDTH_FILES = {
    'uniform': 'the original network at config.width_mult (pipeline.run)',
    'projected_uniform': 'the projected network (pipeline.run)',
    'projected_optimized': 'stage optimize',
    'transferred': 'stage transfer',
    'direct_optimized': 'stage optimize_direct',
    'direct': 'stage optimize_direct, FLOPs-matched',
}
ARMS = ('transferred', 'uniform', 'direct')  # trained arms, in stage order


def _join(root: str, *parts: str) -> str:
  if '://' in root:
    return '/'.join([root.rstrip('/'), *parts])
  return os.path.join(root, *parts)


@dataclasses.dataclass(frozen=True)
class Workdir:
  """The layout of one run's output directory (local or gs://...)."""
  root: str

  def path(self, *parts: str) -> str:
    return _join(self.root, *parts)

  @property
  def config(self) -> str:
    return self.path('config.json')

  def widths(self, name: str) -> str:
    if name not in WIDTH_FILES:
      raise KeyError(f'unknown width file {name!r}; known: '
                     f'{", ".join(WIDTH_FILES)}')
    return self.path('widths', f'{name}.json')

  def optimize(self, direct: bool = False) -> str:
    """The width optimizer's directory (projected, or direct)."""
    return self.path('optimize_direct' if direct else 'optimize')

  def train(self, arm: str, seed: int) -> str:
    return self.path('train', arm, f'seed_{int(seed)}')

  def final(self, arm: str, seed: int) -> str:
    return _join(self.train(arm, seed), 'final.json')

  @property
  def results_json(self) -> str:
    return self.path('results.json')

  @property
  def results_md(self) -> str:
    return self.path('results.md')

  @property
  def widths_png(self) -> str:
    return self.path('widths.png')

  @property
  def overhead_png(self) -> str:
    return self.path('overhead.png')
