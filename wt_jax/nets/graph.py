"""The layer graph of a network, and its one compiled (array) form.

`Layer` is one conv, depthwise conv or FC layer: kernel, stride, channels,
sizes, the channel groups it reads and writes, and its Flax parameter paths.
`tracing.trace` finds them in a network's Flax module, the same way for the
built-in families and a user's registered network (`architectures.layers`).

`LayerGraph` compiles such a list against a width vector's groups into
arrays, once, so that every consumer counts over the same form:

* `macs(counts)`: MACs with `counts[g]` channels kept in group g; this is
  `cost.macs` for the full widths, MorphNet's cost for the alive counts,
  AutoSlim's cost of a masked sub-network, and works on numpy (exact int64)
  and traced jnp arrays alike;
* `gamma_term(alive, sums)`: MorphNet's regularizer, the same sum with one
  factor replaced by the groups' sums of |gamma|;
* `units` / `group_unit`: groups merged across identity shortcuts, which
  must keep one width.

Constant channels (the image's 3, the logits' num_classes) have group -1 and
their count in `in_const` / `out_const`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Layer:
  """One conv, depthwise conv or FC layer of a network.

  `in_group` is None where the input is the image (constant channels);
  `out_group` is None for the FC logits (constant classes). `path` is the Flax
  parameter path of the kernel and `bn` that of the batch norm after it.
  MACs and params follow the usual conventions: a conv's MACs are
  kh*kw*H_out*W_out*C_in*C_out/groups (taps that fall into padding count, as in
  the published counts), params are kernel weights + bias (where `bias`) + BN
  scale and bias (BN running statistics are state, not params).

  A traced network (`wt_jax.nets.tracing`) may also hold layers of kind 'bn': a
  batch norm that reads no conv's output directly (e.g. pre-activation), with
  kernel 0, so no weights and no MACs, and `bn` == `path`.
  """
  name: str
  kind: str  # 'conv' | 'depthwise' | 'fc' | 'bn'
  kernel: int
  stride: int
  in_channels: int
  out_channels: int
  in_size: int
  out_size: int
  in_group: Optional[str]
  out_group: Optional[str]
  path: tuple[str, ...]
  bn: Optional[tuple[str, ...]]
  bias: bool = False  # a bias vector (the built-in families: the FC only)

  @property
  def coeff(self) -> int:
    """kh*kw*H_out*W_out: MACs per (input channel, output channel) pair."""
    return self.kernel * self.kernel * self.out_size * self.out_size

  @property
  def macs(self) -> int:
    if self.kind == 'depthwise':
      return self.coeff * self.out_channels
    return self.coeff * self.in_channels * self.out_channels

  @property
  def params(self) -> int:
    if self.kind == 'depthwise':
      weights = self.kernel * self.kernel * self.out_channels
    else:
      weights = self.kernel * self.kernel * self.in_channels * self.out_channels
    bias = self.out_channels if self.bias else 0
    bn = 2 * self.out_channels if self.bn is not None else 0
    return weights + bias + bn


def conv_out(size: int, stride: int) -> int:
  """Output side of a conv or pool with padding k//2 (odd k): ceil(n / s)."""
  return -(-size // stride)


def tie_units(names: Sequence[str], ties: Sequence[tuple[str, str]]
              ) -> tuple[tuple[str, ...], ...]:
  """Groups merged across the tied pairs (union-find), in `names` order."""
  parent = {n: n for n in names}

  def find(n):
    while parent[n] != n:
      n = parent[n]
    return n

  for a, b in ties:
    parent[find(a)] = find(b)
  roots = list(dict.fromkeys(find(n) for n in names))
  return tuple(tuple(n for n in names if find(n) == r) for r in roots)


@dataclasses.dataclass(frozen=True, eq=False)
class LayerGraph:
  """`layers` compiled against the groups `names` (see the module doc)."""
  layers: tuple[Layer, ...]
  names: tuple[str, ...]  # the width vector's groups, in order
  units: tuple[tuple[str, ...], ...]  # groups merged by identity ties
  group_unit: np.ndarray  # [groups] unit index of each group
  coeff: np.ndarray  # [layers] kh*kw*H_out*W_out
  depthwise: np.ndarray  # [layers] bool
  in_group: np.ndarray  # [layers] group index, -1 for constant channels
  out_group: np.ndarray  # [layers]
  in_const: np.ndarray  # [layers] channels where in_group == -1
  out_const: np.ndarray  # [layers]

  @classmethod
  def build(cls, layers: Sequence[Layer], names: Sequence[str],
            ties: Sequence[tuple[str, str]] = ()) -> 'LayerGraph':
    names = tuple(names)
    index = {n: i for i, n in enumerate(names)}
    units = tie_units(names, ties)
    unit_of = {n: u for u, unit in enumerate(units) for n in unit}
    ints = lambda xs: np.asarray(list(xs), np.int64)
    return cls(
        layers=tuple(layers), names=names, units=units,
        group_unit=ints(unit_of[n] for n in names),
        coeff=ints(l.coeff for l in layers),
        depthwise=np.asarray([l.kind == 'depthwise' for l in layers], bool),
        in_group=ints(-1 if l.in_group is None else index[l.in_group]
                      for l in layers),
        out_group=ints(-1 if l.out_group is None else index[l.out_group]
                       for l in layers),
        in_const=ints(l.in_channels for l in layers),
        out_const=ints(l.out_channels for l in layers))

  def _side(self, values, groups, const, xp):
    """Per layer: values[..., group], or `const` where the group is -1."""
    picked = xp.take(values, np.maximum(groups, 0), axis=-1)
    return xp.where(groups >= 0, picked, const.astype(picked.dtype))

  def macs(self, counts, xp: Any = np):
    """MACs with `counts[..., g]` channels in group g ([...] result).

    numpy integer counts give exact int64 MACs; jnp counts (float32) are
    traceable, for MorphNet's cost and expected-FLOPs losses.
    """
    counts = xp.asarray(counts)
    if xp is np and counts.dtype.kind in 'iub':
      counts = counts.astype(np.int64)
    k_in = self._side(counts, self.in_group, self.in_const, xp)
    k_out = self._side(counts, self.out_group, self.out_const, xp)
    per_layer = xp.where(self.depthwise, k_out, k_in * k_out)
    return (self.coeff.astype(per_layer.dtype) * per_layer).sum(-1)

  def gamma_term(self, alive, sums, xp: Any = np):
    """sum over layers of coeff x (alive_in x sums_out + alive_out x sums_in);
    depthwise layers coeff x (sums_in + sums_out). Constant channels count
    as alive, with a sum of 0 (MorphNet's regularizer)."""
    alive, sums = xp.asarray(alive), xp.asarray(sums)
    zero = np.zeros_like(self.in_const)
    a_in = self._side(alive, self.in_group, self.in_const, xp)
    a_out = self._side(alive, self.out_group, self.out_const, xp)
    s_in = self._side(sums, self.in_group, zero, xp)
    s_out = self._side(sums, self.out_group, zero, xp)
    per_layer = xp.where(self.depthwise, s_in + s_out,
                         a_in * s_out + a_out * s_in)
    return (self.coeff.astype(per_layer.dtype) * per_layer).sum(-1)

  def unit_index(self, group: str) -> int:
    return int(self.group_unit[self.names.index(group)])
