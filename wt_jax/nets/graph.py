"""The layer graph of a network, and its one compiled (array) form.

`Layer` is one conv, grouped or depthwise conv or FC layer: kernel, stride,
channels, sizes, the channel groups it reads and writes, and its Flax
parameter paths. A layer reads one group, or the concatenation of several
(`in_group` a tuple: the channel axis of `jnp.concatenate` is the union of
its inputs' channels, each input keeping its own group).
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
  must keep one width;
* `multiples`: per group, the number its width must be a multiple of (the
  least common multiple of the `feature_group_count` of every grouped conv
  that reads or writes it, over its unit; 1 for most groups).

A layer's input channels are `in_matrix @ counts + in_const`: `in_matrix`
[layers, groups] counts how often each group is concatenated into its input
(one 1 for a plain layer), constant channels (the image's 3) are in
`in_const`. Its output is one group, or constant (the logits' num_classes:
`out_group` -1, the count in `out_const`).

`keep_order(full, blocks)` is the order in which a group's channels are kept
when it is slimmed (AutoSlim's masks, DMCP's marginals): the first k
channels, or where a grouped conv splits the group into `blocks` blocks, the
first k / blocks channels of every block, so that a slimmed grouped conv
keeps its group count.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence, Union

import numpy as np


@dataclasses.dataclass(frozen=True)
class Layer:
  """One conv, grouped or depthwise conv or FC layer of a network.

  `in_group` is None where the input is the image (constant channels), a
  group's name, or a tuple of group names where the input is their
  concatenation along the channel axis (in that order); `out_group` is None
  for the FC logits (constant classes). `feature_groups` is a grouped conv's
  fixed `feature_group_count` (1 otherwise; a depthwise conv is kind
  'depthwise'). `path` is the Flax parameter path of the kernel and `bn` that
  of the batch norm after it. MACs and params follow the usual conventions:
  a conv's MACs are kh*kw*H_out*W_out*C_in*C_out/groups (taps that fall into
  padding count, as in the published counts), params are kernel weights +
  bias (where `bias`) + BN scale and bias (BN running statistics are state,
  not params).

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
  in_group: Union[None, str, tuple[str, ...]]
  out_group: Optional[str]
  path: tuple[str, ...]
  bn: Optional[tuple[str, ...]]
  bias: bool = False  # a bias vector (the built-in families: the FC only)
  feature_groups: int = 1  # a grouped conv's feature_group_count

  @property
  def in_groups(self) -> tuple[str, ...]:
    """The groups of the input channels, in channel order (() for the
    image)."""
    if self.in_group is None:
      return ()
    return (self.in_group,) if isinstance(self.in_group, str) else tuple(
        self.in_group)

  @property
  def coeff(self) -> int:
    """kh*kw*H_out*W_out: MACs per (input channel, output channel) pair.

    A traced network's kernels and sizes are square (one int); a layer list
    written by hand may give (kh, kw) and (H_out, W_out)."""
    return _area(self.kernel) * _area(self.out_size)

  @property
  def macs(self) -> int:
    if self.kind == 'depthwise':
      return self.coeff * self.out_channels
    return (self.coeff * self.in_channels * self.out_channels //
            self.feature_groups)

  @property
  def params(self) -> int:
    if self.kind == 'depthwise':
      weights = _area(self.kernel) * self.out_channels
    else:
      weights = (_area(self.kernel) * self.in_channels * self.out_channels //
                 self.feature_groups)
    bias = self.out_channels if self.bias else 0
    bn = 2 * self.out_channels if self.bn is not None else 0
    return weights + bias + bn


def _area(side) -> int:
  return side * side if isinstance(side, int) else int(side[0]) * int(side[1])


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


def keep_order(full: int, blocks: int = 1) -> np.ndarray:
  """[full] the rank at which each channel is kept (kept: rank < k).

  With `blocks` > 1 (a grouped conv's groups), channel j of block j // per
  (per = full / blocks channels each) has rank (j % per) x blocks + j // per:
  for every k that is a multiple of `blocks`, rank < k keeps the first
  k / blocks channels of each block.
  """
  j = np.arange(int(full))
  if blocks <= 1:
    return j
  per = int(full) // int(blocks)
  return (j % per) * int(blocks) + j // per


def _lcm(values) -> int:
  out = 1
  for v in values:
    out = out * int(v) // math.gcd(out, int(v))
  return out


@dataclasses.dataclass(frozen=True, eq=False)
class LayerGraph:
  """`layers` compiled against the groups `names` (see the module doc)."""
  layers: tuple[Layer, ...]
  names: tuple[str, ...]  # the width vector's groups, in order
  units: tuple[tuple[str, ...], ...]  # groups merged by identity ties
  group_unit: np.ndarray  # [groups] unit index of each group
  multiples: np.ndarray  # [groups] each width is a multiple of it
  coeff: np.ndarray  # [layers] kh*kw*H_out*W_out
  depthwise: np.ndarray  # [layers] bool
  feature_groups: np.ndarray  # [layers] a grouped conv's group count, or 1
  in_matrix: np.ndarray  # [layers, groups] times each group is read
  out_group: np.ndarray  # [layers] group index, -1 for constant channels
  in_const: np.ndarray  # [layers] constant input channels (the image's)
  out_const: np.ndarray  # [layers] channels where out_group == -1

  @classmethod
  def build(cls, layers: Sequence[Layer], names: Sequence[str],
            ties: Sequence[tuple[str, str]] = ()) -> 'LayerGraph':
    names = tuple(names)
    index = {n: i for i, n in enumerate(names)}
    units = tie_units(names, ties)
    unit_of = {n: u for u, unit in enumerate(units) for n in unit}
    ints = lambda xs: np.asarray(list(xs), np.int64)
    in_matrix = np.zeros((len(layers), len(names)), np.int64)
    for i, l in enumerate(layers):
      for g in l.in_groups:
        in_matrix[i, index[g]] += 1
    needs = {n: [] for n in names}
    for l in layers:
      if l.feature_groups > 1:
        for g in l.in_groups + (l.out_group,):
          needs[g].append(l.feature_groups)
    unit_multiple = [_lcm(m for n in unit for m in needs[n]) for unit in units]
    return cls(
        layers=tuple(layers), names=names, units=units,
        group_unit=ints(unit_of[n] for n in names),
        multiples=ints(unit_multiple[unit_of[n]] for n in names),
        coeff=ints(l.coeff for l in layers),
        depthwise=np.asarray([l.kind == 'depthwise' for l in layers], bool),
        feature_groups=ints(l.feature_groups for l in layers),
        in_matrix=in_matrix,
        # A BatchNorm of a concatenation (kind 'bn', no MACs) writes its
        # input's groups: counted as constant channels.
        out_group=ints(index[l.out_group] if isinstance(l.out_group, str)
                       else -1 for l in layers),
        in_const=ints(0 if l.in_group is not None else l.in_channels
                      for l in layers),
        out_const=ints(l.out_channels for l in layers))

  def _in(self, values, const, xp):
    """Per layer: the sum of `values` over its input groups, plus `const`.

    Without concatenations, a pick of each layer's one input group (so a
    network without them computes exactly what it computed before they
    were supported, gradients included); with them, an elementwise product
    and sum (exact on every backend)."""
    if self.in_matrix.sum(-1).max(initial=0) <= 1:
      one = np.where(self.in_matrix.any(-1), self.in_matrix.argmax(-1), -1)
      return self._side(values, one, const, xp)
    summed = (values[..., None, :] * self.in_matrix.astype(values.dtype)
              ).sum(-1)
    return summed + const.astype(summed.dtype)

  def _side(self, values, groups, const, xp):
    """Per layer: values[..., group], or `const` where the group is -1."""
    picked = xp.take(values, np.maximum(groups, 0), axis=-1)
    return xp.where(groups >= 0, picked, const.astype(picked.dtype))

  def _per_group(self, pairs, xp):
    """`pairs` (in x out channel products) over the conv groups."""
    if pairs.dtype.kind in 'iu':
      return pairs // self.feature_groups
    return pairs / self.feature_groups.astype(pairs.dtype)

  def macs(self, counts, xp: Any = np):
    """MACs with `counts[..., g]` channels in group g ([...] result).

    numpy integer counts give exact int64 MACs; jnp counts (float32) are
    traceable, for MorphNet's cost and expected-FLOPs losses.
    """
    counts = xp.asarray(counts)
    if xp is np and counts.dtype.kind in 'iub':
      counts = counts.astype(np.int64)
    k_in = self._in(counts, self.in_const, xp)
    k_out = self._side(counts, self.out_group, self.out_const, xp)
    per_layer = xp.where(self.depthwise, k_out,
                         self._per_group(k_in * k_out, xp))
    return (self.coeff.astype(per_layer.dtype) * per_layer).sum(-1)

  def gamma_term(self, alive, sums, xp: Any = np):
    """sum over layers of coeff x (alive_in x sums_out + alive_out x sums_in)
    / groups; depthwise layers coeff x (sums_in + sums_out). A concatenated
    input's alive count and sum are its groups' totals. Constant channels
    count as alive, with a sum of 0 (MorphNet's regularizer)."""
    alive, sums = xp.asarray(alive), xp.asarray(sums)
    zero = np.zeros_like(self.in_const)
    a_in = self._in(alive, self.in_const, xp)
    a_out = self._side(alive, self.out_group, self.out_const, xp)
    s_in = self._in(sums, zero, xp)
    s_out = self._side(sums, self.out_group, zero, xp)
    per_layer = xp.where(self.depthwise, s_in + s_out,
                         self._per_group(a_in * s_out + a_out * s_in, xp))
    return (self.coeff.astype(per_layer.dtype) * per_layer).sum(-1)

  def unit_index(self, group: str) -> int:
    return int(self.group_unit[self.names.index(group)])
