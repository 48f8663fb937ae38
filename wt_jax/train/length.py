"""How long a training run is: full batches per epoch, and total steps.

One rule, from the training split's size and `config.train` (`batch_size`,
`epochs`, `num_steps`; `recipe.num_train_steps`): whoever must know a run's
length before it runs (DMCP's warm-up and architecture schedules,
experiments/accuracy_grid.py's work plan) asks `run_length`, as the train
loop's plan does.
"""
from __future__ import annotations

import dataclasses

from wt_jax.train import batches
from wt_jax.train import recipe


@dataclasses.dataclass(frozen=True)
class Length:
  steps_per_epoch: int  # full batches per epoch (0: fewer examples than one)
  total_steps: int


def run_length(train_config, num_train: int,
               process_count: int = 1) -> Length:
  """The length of a run of `train_config` on `num_train` training examples
  over `process_count` processes. With fewer examples than one batch (a
  run the train loop refuses) the steps count as one batch per epoch."""
  per_epoch = batches.steps_per_epoch(int(num_train),
                                      int(train_config.batch_size),
                                      process_count)
  return Length(per_epoch,
                recipe.num_train_steps(train_config, max(per_epoch, 1)))
