"""Analytic cost of a network: MACs and params, per layer and in total.

What is counted (the conventions of the published torchvision counts):
* MACs (multiply-accumulates) of every conv, depthwise conv and the FC
  layer: kh*kw*H_out*W_out*C_in*C_out (a grouped conv with G groups: / G;
  depthwise: kh*kw*H_out*W_out*C). A conv reading a concatenation has the
  sum of its groups' channels as C_in. Taps that fall into zero padding are
  counted. BN, activations, pooling and
  residual adds are not counted. One MAC is two FLOPs in XLA's count.
* params: conv and FC weights (a grouped conv's kh*kw*C_in/G*C_out), FC
  bias, and BN scale and bias. BN running mean and variance are state, not
  params.

Training cost, for overhead accounting, is `TRAIN_MACS_FACTOR` (3) times the
forward MACs per example: the forward pass, plus the backward pass's two
convolutions per layer (gradient with respect to the input and to the
weights), each as large as the forward one.

Command line: `python -m wt_jax.cost` (`wt_jax/cost.py`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from wt_jax.nets import architectures
from wt_jax.nets.graph import Layer
from wt_jax.nets.graph import LayerGraph
from wt_jax.nets.widths import Widths
from wt_jax.util import validation

TRAIN_MACS_FACTOR = 3


@dataclasses.dataclass(frozen=True)
class Cost:
  """The compiled layer graph of one width vector, and its totals."""
  graph: LayerGraph
  values: tuple[int, ...]  # the widths, in group order

  @property
  def layers(self) -> tuple[Layer, ...]:
    return self.graph.layers

  @property
  def macs(self) -> int:
    return int(self.graph.macs(np.asarray(self.values, np.int64)))

  @property
  def params(self) -> int:
    return sum(l.params for l in self.layers)


def count(widths: Widths, resolution: int, num_classes: int = 1000) -> Cost:
  """Per-layer and total MACs and params of `widths` at `resolution`."""
  validation.number('resolution', resolution, lo=1, integer=True)
  validation.number('num_classes', num_classes, lo=1, integer=True)
  return Cost(architectures.layer_graph(widths.spec, widths.values,
                                        resolution, num_classes),
              widths.values)


def macs(widths: Widths, resolution: int, num_classes: int = 1000) -> int:
  return count(widths, resolution, num_classes).macs


def params(widths: Widths, resolution: int = 32, num_classes: int = 1000
           ) -> int:
  return count(widths, resolution, num_classes).params


def train_macs_per_example(widths: Widths, resolution: int,
                           num_classes: int) -> int:
  """Forward + backward MACs of one training example."""
  return TRAIN_MACS_FACTOR * macs(widths, resolution, num_classes)


def unpadded_macs(layer: Layer) -> int:
  """MACs of `layer` without the taps that fall into zero padding.

  XLA's cost analysis counts a convolution's FLOPs this way (2 per MAC), so
  `2 * sum(unpadded_macs)` is exactly XLA's count for a conv-only network,
  and it equals `layer.macs` for 1x1 or unpadded convs.
  """
  if layer.kind == 'fc':
    return layer.macs
  pad = layer.kernel // 2
  valid = sum(1 for o in range(layer.out_size) for k in range(layer.kernel)
              if 0 <= o * layer.stride + k - pad < layer.in_size)
  per_pair = valid * valid
  if layer.kind == 'depthwise':
    return per_pair * layer.out_channels
  return per_pair * layer.in_channels * layer.out_channels


def human(n: float, unit: str = '') -> str:
  for div, suffix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
    if abs(n) >= div:
      return f'{n / div:.3f} {suffix}{unit}'
  return f'{n:.0f} {unit}'.rstrip()


def table(widths: Widths, cost: Cost) -> str:
  """A plain-text report: the width vector, then the per-layer rows."""
  lines = [f'{widths.arch}  depth={list(widths.depth)}', '',
           f'{"group":<28} {"width":>6}']
  lines += [f'{n:<28} {v:>6}' for n, v in widths.as_dict().items()]
  head = (f'{"layer":<30} {"kind":<9} {"k":>2} {"s":>2} {"in":>5} {"out":>5} '
          f'{"size":>5} {"MACs":>14} {"params":>11}')
  lines += ['', head, '-' * len(head)]
  for l in cost.layers:
    kind = l.kind if l.feature_groups == 1 else f'{l.kind}/g{l.feature_groups}'
    lines.append(f'{l.name:<30} {kind:<9} {l.kernel:>2} {l.stride:>2} '
                 f'{l.in_channels:>5} {l.out_channels:>5} {l.out_size:>5} '
                 f'{l.macs:>14,} {l.params:>11,}')
  lines += ['-' * len(head),
            f'{"total":<30} {"":<9} {"":>2} {"":>2} {"":>5} {"":>5} {"":>5} '
            f'{cost.macs:>14,} {cost.params:>11,}',
            f'MACs: {human(cost.macs)}   params: {cost.params:,}']
  return '\n'.join(lines)


def to_json(widths: Widths, cost: Cost, resolution: int, num_classes: int
            ) -> dict:
  return dict(
      arch=widths.arch, depth=list(widths.depth), resolution=resolution,
      num_classes=num_classes, macs=cost.macs, params=cost.params,
      widths=widths.as_dict(),
      layers=[dict(name=l.name, kind=l.kind, kernel=l.kernel, stride=l.stride,
                   in_channels=l.in_channels, out_channels=l.out_channels,
                   out_size=l.out_size, in_group=l.in_group,
                   feature_groups=l.feature_groups,
                   out_group=l.out_group, macs=l.macs, params=l.params)
              for l in cost.layers])
