"""Projection: the original width-optimization problem -> a cheap copy.

Four independent knobs (config block `projection`), freely combined; their
savings compound:

* `width_mult`: the projected net's uniform widths are the original's
  uniform widths at `width_mult` x the original's width multiplier
  (rounded to multiples of the transfer divisor);
* `depth_mult`: blocks per stage become max(1, round(depth_mult * n));
* `sample_fraction`: multiplies the data's class-balanced training fraction;
* `resolution`: the projected images' side (0 keeps the original's).

`project(original, knobs) -> Problem` is a pure function of plain values
(it reads only the labels of the data, to count the projected examples);
`overhead` is the analytic saving of optimizing the projected problem.
"""
from __future__ import annotations

from typing import Optional

import ml_collections

from wt_jax import data
from wt_jax.nets import architectures
from wt_jax.nets import cost
from wt_jax.nets import widths as widths_lib
from wt_jax.transfer.problem import Problem
from wt_jax.util import validation

FIELDS = ('width_mult', 'depth_mult', 'sample_fraction', 'resolution')


def validate(projection) -> None:
  """Raises ConfigError naming the field, its value and the range."""
  f = validation.Fields(projection, 'projection')
  f.known(FIELDS)
  for field in ('width_mult', 'depth_mult', 'sample_fraction'):
    if field in projection:
      f.number(field, 0, 1, lo_open=True)
  if 'resolution' in projection:
    f.number('resolution', 0, integer=True,
             note='0 keeps the original resolution')


def project(original: Problem, knobs, *, divisor: int = 8,
            num_train: Optional[int] = None) -> Problem:
  """The cheap copy of `original` under the `config.projection` knobs.

  Args:
    original: the original problem (its widths at `original.width_mult`).
    knobs: the `config.projection` block.
    divisor: uniform widths are rounded to multiples of it (MobileNetV2
      rule); use the transfer divisor so that a small net's width 0.5 is
      really half (ResNet-20's 16 channels -> 8 with divisor 8, but its 8
      channels would stay 8; with divisor 4 they become 4).
    num_train: the projected training examples; None counts them from the
      projected data config (`data.dataset_info`, a label-only read).
  """
  validate(knobs)
  spec = architectures.scale_depth(original.widths.spec,
                                   knobs.get('depth_mult', 1.0))
  width_mult = original.width_mult * knobs.get('width_mult', 1.0)
  uniform = widths_lib.uniform(original.widths.arch, width_mult,
                               depth=spec.depth, divisor=divisor)
  data_config = ml_collections.ConfigDict(original.data.to_dict())
  data_config.sample_fraction = (original.data.sample_fraction *
                                 knobs.get('sample_fraction', 1.0))
  resolution = knobs.get('resolution', 0) or original.resolution
  data_config.resolution = resolution
  if num_train is None:
    num_train = data.dataset_info(data_config).num_examples['train']
  return Problem(uniform, data_config, resolution, original.num_classes,
                 int(num_train), width_mult)


def overhead(original: Problem, projected: Problem, projected_cost: float,
             fixed_cost: float = 0.0) -> dict:
  """The optimization overhead of a projected run against the direct run.

  The direct optimization is the same optimizer with the same schedule in
  epochs on the original network, data and resolution. Its analytic cost:
  the part of the projected cost that grows with the training split
  (training) times the ratio of MACs per example and the ratio of training
  examples, plus `fixed_cost` (the part that does not, e.g. AutoSlim's
  candidate scoring on the val split, which is the same size under every
  sample fraction) times the MACs ratio alone. `cost_ratio` is direct /
  projected: how many times cheaper the projected optimization is.
  """
  macs_orig = cost.macs(original.widths, original.resolution,
                        original.num_classes)
  macs_proj = cost.macs(projected.widths, projected.resolution,
                        projected.num_classes)
  macs_ratio = macs_orig / macs_proj
  data_ratio = original.num_train / projected.num_train
  scaling = float(projected_cost) - float(fixed_cost)
  direct = scaling * macs_ratio * data_ratio + float(fixed_cost) * macs_ratio
  return dict(
      projected_cost=float(projected_cost), fixed_cost=float(fixed_cost),
      direct_cost_analytic=direct,
      cost_ratio=direct / float(projected_cost) if projected_cost else
      macs_ratio * data_ratio,
      macs_ratio=macs_ratio, data_ratio=data_ratio, original_macs=macs_orig,
      projected_macs=macs_proj,
      original_train_examples=int(original.num_train),
      projected_train_examples=int(projected.num_train))
