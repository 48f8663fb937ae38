"""Projection: the original width-optimization problem -> a cheap copy.

Four independent knobs (config block `projection`), freely combined; their
savings compound:

* `width_mult`: the projected net's uniform widths are the original's
  uniform widths at `width_mult` x the original's width multiplier
  (rounded to multiples of the transfer divisor);
* `depth_mult`: blocks per stage become max(1, round(depth_mult * n));
* `sample_fraction`: multiplies the data's class-balanced training fraction;
* `resolution`: the projected images' side (0 keeps the original's).

`project` is a pure function of plain values.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from wt_jax import architectures
from wt_jax import validation
from wt_jax import widths as widths_lib
from wt_jax.widths import Widths

FIELDS = ('width_mult', 'depth_mult', 'sample_fraction', 'resolution')


@dataclasses.dataclass(frozen=True)
class Projected:
  uniform: Widths  # the projected net's uniform widths (its structure too)
  data: Any  # the projected data config (a ConfigDict)
  resolution: int  # the projected image side


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


def project(original_uniform: Widths, width_mult: float, data_config,
            resolution: int, projection, divisor: int = 8) -> Projected:
  """Maps the original problem to the projected one.

  Args:
    original_uniform: the original net's uniform widths (arch and depth).
    width_mult: the original's uniform width multiplier.
    data_config: the original data config (`config.data`).
    resolution: the original image side.
    projection: the `config.projection` block.
    divisor: uniform widths are rounded to multiples of it (MobileNetV2
      rule); use the transfer divisor so that a small net's width 0.5 is
      really half (ResNet-20's 16 channels -> 8 with divisor 8, but its 8
      channels would stay 8; with divisor 4 they become 4).
  """
  validate(projection)
  spec = architectures.scale_depth(original_uniform.spec,
                                   projection.get('depth_mult', 1.0))
  uniform = widths_lib.uniform(original_uniform.arch,
                               width_mult * projection.get('width_mult', 1.0),
                               depth=spec.depth, divisor=divisor)
  data = ml_collections.ConfigDict(data_config.to_dict())
  data.sample_fraction = (data_config.sample_fraction *
                          projection.get('sample_fraction', 1.0))
  new_res = projection.get('resolution', 0) or resolution
  data.resolution = new_res
  return Projected(uniform, data, new_res)


def overhead(original_uniform: Widths, original_resolution: int,
             original_train_examples: int, proj: Projected,
             projected_train_examples: int, num_classes: int,
             projected_cost: float) -> dict:
  """The optimization overhead of a projected run against the direct run.

  The direct optimization is the same optimizer with the same schedule in
  epochs on the original network, data and resolution, so its analytic
  cost is the projected cost times the ratio of training MACs per example
  and the ratio of training examples per epoch. `cost_ratio` is that
  product: how many times cheaper the projected optimization is.
  """
  from wt_jax import cost  # pylint: disable=g-import-not-at-top
  macs_orig = cost.macs(original_uniform, original_resolution, num_classes)
  macs_proj = cost.macs(proj.uniform, proj.resolution, num_classes)
  ratio = (macs_orig / macs_proj) * (original_train_examples /
                                     projected_train_examples)
  return dict(
      projected_cost=float(projected_cost),
      direct_cost_analytic=float(projected_cost) * ratio,
      cost_ratio=ratio,
      macs_ratio=macs_orig / macs_proj,
      data_ratio=original_train_examples / projected_train_examples,
      original_macs=macs_orig, projected_macs=macs_proj,
      original_train_examples=int(original_train_examples),
      projected_train_examples=int(projected_train_examples))
