"""A width-optimization problem: one network on one dataset, as a value.

`Problem` is what the chain passes around: the network's uniform widths
(which also fix its architecture and depth), its data config, and the sizes
that every cost depends on. `from_config` builds the original problem of a
run once; `projection.project` maps it to the cheap copy, another `Problem`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from wt_jax import data
from wt_jax.nets import widths as widths_lib
from wt_jax.nets.widths import Widths


@dataclasses.dataclass(frozen=True)
class Problem:
  widths: Widths  # the network's uniform widths (architecture and depth too)
  data: Any  # its data config (a ConfigDict: `config.data`, or projected)
  resolution: int  # the image side fed to the network
  num_classes: int
  num_train: int  # training examples (after the data's sample_fraction)
  width_mult: float = 1.0  # the uniform width multiplier of `widths`


def from_config(config) -> Problem:
  """The original problem of `config`: network, data and their sizes."""
  info = data.dataset_info(config.data)
  uniform = widths_lib.uniform(config.arch, config.width_mult,
                               depth=tuple(config.depth) or None,
                               divisor=config.transfer.divisor)
  return Problem(uniform, config.data, info.resolution, info.num_classes,
                 info.num_examples['train'], float(config.width_mult))
