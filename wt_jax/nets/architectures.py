"""Architectures by name, their channel groups and their layer graphs.

This module is where the *structure* of a width vector is born:

* `get_arch(name, depth)` returns an `Arch`: the registered network under
  `name` (a built-in family member, `families`, or a user's network,
  `custom_archs`) at a number of blocks per stage.
* `groups(arch)` lists the channel groups in network order. A group is a
  set of conv outputs that must share one channel count, so a width vector
  is one integer per group.
* `layers(arch, values, resolution, num_classes)` lists every conv,
  depthwise conv and FC layer (`graph.Layer`) with its input group, output
  group, kernel, stride, output size and Flax parameter paths, as the trace
  of the network's module finds them (`tracing`); `layer_graph` compiles it
  (`graph.LayerGraph`): the one form the cost counter (`wt_jax.nets.cost`),
  MorphNet and AutoSlim count over.
* `multiples(arch)`: per group, what its width must be a multiple of (a
  grouped conv's fixed group count; 1 for most groups).
* `identity_ties(arch, values)` lists the pairs of groups that an identity
  shortcut adds together at those widths; such groups must keep equal
  widths.

Stages and blocks are numbered from 1 in names and in `Group.stage` /
`Group.block`; stem and head have `stage = block = None`. Every function
here works the same for every network: there is no per-family code.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

from wt_jax.errors import ArchError
from wt_jax.nets import custom_archs
from wt_jax.nets import families
from wt_jax.nets import graph
from wt_jax.nets.custom_archs import Arch
from wt_jax.nets.custom_archs import Group
from wt_jax.nets.custom_archs import make_divisible
from wt_jax.nets.graph import Layer

NAMES = families.NAMES  # the built-in architectures
__all__ = ['Arch', 'Group', 'Layer', 'NAMES', 'default_resolution',
           'get_arch', 'groups', 'identity_ties', 'layer_graph', 'layers',
           'make_divisible', 'multiples', 'names', 'scale_depth',
           'tie_units',
           'uniform_values']


def names() -> tuple[str, ...]:
  """Every known architecture: the built-ins, then the registered ones."""
  return custom_archs.names()


def get_arch(name: str, depth: Optional[Sequence[int]] = None) -> Arch:
  """Returns the architecture `name`, optionally with other blocks per stage."""
  net = custom_archs.get(name)
  if net is None:
    raise ArchError(f'arch={name!r} is unknown; known architectures: '
                    f'{", ".join(names())} (your own network: '
                    'wt_jax.register_arch, in the module config.arch_module '
                    'names)')
  return net.arch(depth)


def scale_depth(arch: Arch, depth_mult: float) -> Arch:
  """Blocks per stage become max(1, round(d * n)), halves rounding up."""
  if not depth_mult > 0:
    raise ArchError(f'depth_mult={depth_mult!r}: must be > 0')
  if not arch.depth and depth_mult != 1:
    raise ArchError(
        f'config.projection.depth_mult={depth_mult!r} is invalid for '
        f'arch={arch.name!r}; allowed: 1 (it was registered without depth=, '
        'so it has no blocks per stage to scale)')
  return dataclasses.replace(arch, depth=tuple(
      max(1, int(math.floor(depth_mult * n + 0.5))) for n in arch.depth))


def groups(arch: Arch) -> tuple[Group, ...]:
  """The channel groups of `arch`, in network order."""
  return arch.net.groups(arch.depth)


def uniform_values(arch: Arch, width_mult: float = 1.0,
                   divisor: int = 8) -> tuple[int, ...]:
  """Uniform widths of `arch` at `width_mult`, in `groups(arch)` order."""
  if not width_mult > 0:
    raise ArchError(f'width_mult={width_mult!r}: must be > 0')
  return arch.net.uniform_values(arch.depth, width_mult, divisor)


def multiples(arch: Arch) -> tuple[int, ...]:
  """Per group (in `groups` order): the number its width must be a multiple
  of: the least common multiple of the `feature_group_count` of the grouped
  convs that read or write it (over groups tied to it); 1 for most groups
  and for every group of the built-in families."""
  return arch.net.multiples(arch.depth)


def layers(arch: Arch, values: Sequence[int], resolution: int,
           num_classes: int) -> tuple[Layer, ...]:
  """The layer graph of `arch` with widths `values` (in `groups` order)."""
  return arch.net.layers(arch.depth, values, resolution, num_classes)


def identity_ties(arch: Arch, values: Sequence[int]) -> tuple[tuple[str, str],
                                                              ...]:
  """Pairs of distinct groups summed by an identity shortcut at `values`
  (e.g. ResNet-18's stem and stage1 at uniform widths), in network order."""
  return arch.net.ties(arch.depth, values)


def default_resolution(arch: Arch) -> int:
  return arch.net.resolution


def tie_units(arch: Arch, values: Sequence) -> tuple[tuple[str, ...], ...]:
  """Groups merged across identity shortcuts, in network order.

  Each unit is a tuple of group names that must keep one width (for
  `values`, the widths in `groups(arch)` order); most units are one group.
  MorphNet regularizes, AutoSlim slims and FLOPs matching scales a unit as
  a whole.
  """
  return graph.tie_units([g.name for g in groups(arch)],
                         identity_ties(arch, values))


def layer_graph(arch: Arch, values: Sequence[int], resolution: int,
                num_classes: int) -> graph.LayerGraph:
  """`layers(...)` compiled against the groups of `arch` (with its ties)."""
  return graph.LayerGraph.build(
      layers(arch, values, resolution, num_classes),
      [g.name for g in groups(arch)], identity_ties(arch, values))
