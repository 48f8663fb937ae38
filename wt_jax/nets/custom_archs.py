"""Registered networks: every network, built-in or a user's, by name.

    wt_jax.register_arch('my_net', lambda widths, num_classes: MyNet(
        widths, num_classes), base_widths={'stem': 16, 'b1': 32, ...})

A `Network` is a width-parameterized Flax CNN under a name: its factory,
its groups with their widths at width multiplier 1.0, blocks per stage, and
the traces of its module (`tracing.trace`), from which its layer graph,
identity-shortcut ties and masked layers come. The built-in families
(`families`) are registered here exactly like a user's network, adding only
their uniform-width rule and layer names. `register` (public as
`wt_jax.register_arch`) traces the module once and refuses, with an
`ArchError` naming the layer and the group, what the layer graph cannot
express. From then on the name works everywhere (`architectures.get_arch`):
`widths.uniform`, `cost.count`, `models.build_model` (which applies
AutoSlim's masks by intercepting the module's layers), MorphNet, AutoSlim,
projection and extrapolation, and the CLIs with
`--config.arch_module=pkg.mod` / `--arch_module=pkg.mod` (`import_module`).

The factory is `factory(widths, num_classes) -> nn.Module`, `widths` a
mapping {group name: channel count} with the keys of `base_widths`, the
module's `__call__(x, train)` taking NHWC images and returning logits. It
also gets `dtype=` (`config.dtype`) when its signature has a `dtype`
parameter. With `depth=` (blocks per stage), it is called as
`factory(widths, num_classes, depth=...)` and its per-block group names
must read `stageS/blockB/<position>`: then other depths exist too (their
groups are the registered ones with blocks repeated or dropped, each new
block at the base widths of the stage's last registered block), for depth
projection and layer stacking. Without `depth=`, a network has one depth
and `projection.depth_mult` must stay 1.

Group names also give each group its role for extrapolation
(`group_names`: stage streams, per-block groups, others). The trace is
taken at probe widths that keep which widths are equal
(`tracing.probe_widths`), once per depth, resolution and pattern of equal
widths (cached): so a network may add two groups of equal width (ResNet's
identity shortcut), which ties them. Concatenations along
the channel axis and grouped convs with a fixed group count are followed
(`tracing`); `multiples` gives what each group's width must be a multiple
of, and `register` checks the base widths against it.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn

from wt_jax.errors import ArchError
from wt_jax.nets import graph
from wt_jax.nets import group_names
from wt_jax.nets import tracing
from wt_jax.nets.group_names import Group
from wt_jax.nets.graph import Layer
from wt_jax.util import validation

DEFAULT_RESOLUTION = 32


def make_divisible(value: float, divisor: int = 8,
                   min_value: Optional[int] = None) -> int:
  """Rounds to a multiple of `divisor`, never below 90% of `value`.

  The MobileNetV2 width-multiplier rule (and torchvision's), used for every
  network's uniform widths.
  """
  min_value = divisor if min_value is None else min_value
  new = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if new < 0.9 * value:
    new += divisor
  return int(new)


@dataclasses.dataclass(frozen=True)
class Arch:
  """A registered network at one depth: everything but its widths."""
  name: str
  depth: tuple[int, ...]  # blocks per stage; () for one without depth=
  net: Any = dataclasses.field(compare=False, repr=False)  # its `Network`

  @property
  def num_stages(self) -> int:
    return len(self.depth)


@dataclasses.dataclass(eq=False)
class Network:
  """One registered network: its factory, base widths and traces."""
  name: str
  factory: Callable[..., nn.Module]
  base: tuple[tuple[str, int], ...]  # (group, width at 1.0), network order
  depth: tuple[int, ...]  # blocks per stage; () without depth=
  resolution: int
  takes_dtype: bool
  # A family's own rules (`families`); a user's network: None.
  uniform_rule: Optional[Callable] = None  # (depth, mult, divisor) -> widths
  names_rule: Optional[Callable] = None  # depth -> group names
  layer_name: Optional[Callable] = None  # parameter path -> layer name
  family: Any = None
  _traces: dict = dataclasses.field(default_factory=dict)
  _bases: dict = dataclasses.field(default_factory=dict)
  _multiples: dict = dataclasses.field(default_factory=dict)

  def arch(self, depth: Optional[Sequence[int]]) -> Arch:
    return Arch(name=self.name, depth=self._check_depth(depth), net=self)

  def _check_depth(self, depth) -> tuple[int, ...]:
    if not depth:
      return self.depth
    depth = tuple(depth)
    if not self.depth:
      raise ArchError(f'depth={depth!r} for arch={self.name!r}: it was '
                      'registered without depth=, so it has one depth')
    if len(depth) != len(self.depth) or not all(
        isinstance(d, int) and d >= 1 for d in depth):
      raise ArchError(
          f'depth={depth!r} for arch={self.name!r}: expected '
          f'{len(self.depth)} integers >= 1 (blocks per stage), e.g. '
          f'{self.depth}')
    return depth

  def names(self, depth: tuple[int, ...]) -> tuple[str, ...]:
    """The group names at `depth`, in network order."""
    if self.names_rule is not None:
      return tuple(self.names_rule(depth))
    return tuple(n for n, _ in self.base_at(depth))

  def base_at(self, depth: tuple[int, ...]) -> tuple[tuple[str, int], ...]:
    """(group, base width) at `depth`, in network order."""
    if depth not in self._bases:
      self._bases[depth] = (
          self.base if depth == self.depth else
          tuple(zip(self.names(depth), self.uniform_values(depth, 1.0, 8)))
          if self.uniform_rule is not None else
          group_names.restack(self.base, self.depth, depth))
    return self._bases[depth]

  def groups(self, depth: tuple[int, ...]) -> tuple[Group, ...]:
    return tuple(group_names.role(n) for n in self.names(depth))

  def uniform_values(self, depth, width_mult: float, divisor: int
                     ) -> tuple[int, ...]:
    if self.uniform_rule is not None:
      return tuple(self.uniform_rule(depth, width_mult, divisor))
    return tuple(make_divisible(w * width_mult, math.lcm(divisor, m))
                 for (_, w), m in zip(self.base_at(depth),
                                      self.multiples(depth)))

  def multiples(self, depth: tuple[int, ...]) -> tuple[int, ...]:
    """Per group: the number its width must be a multiple of (the group
    counts of the grouped convs reading or writing it; 1 for most)."""
    if depth not in self._multiples:
      values = [w for _, w in self.base_at(depth)]
      found = graph.LayerGraph.build(
          self.layers(depth, values, self.resolution, 1), self.names(depth),
          self.ties(depth, values))
      self._multiples[depth] = tuple(int(m) for m in found.multiples)
    return self._multiples[depth]

  def module(self, widths: Mapping[str, int], num_classes: int,
             depth: tuple[int, ...], dtype: Any = None) -> nn.Module:
    """The network's module at `widths` (a {group: width} mapping)."""
    kwargs = {'depth': depth} if self.depth else {}
    if self.takes_dtype and dtype is not None:
      kwargs['dtype'] = dtype
    return self.factory(dict(widths), num_classes, **kwargs)

  def trace(self, depth: tuple[int, ...], resolution: int,
            values: Optional[Sequence[int]] = None) -> tracing.Trace:
    """The trace of the network at `depth`, `resolution` and `values`
    (default: the base widths). A trace taken before is reused where it
    holds for `values` (`Trace.holds_for`: the network's comparisons of its
    widths come out the same); else the network is traced at probes with
    the equal widths of `values`."""
    names = self.names(depth)
    if values is None:
      values = [w for _, w in self.base_at(depth)]
    widths = dict(zip(names, (int(v) for v in values)))
    known = self._traces.setdefault((depth, int(resolution)), [])
    for found in known:
      if found.holds_for(widths):
        return found
    probes = tracing.probe_widths(names, values)
    pattern = tuple(int(v) for v in probes.values())
    for found in known:
      if found.decisions is None and tuple(
          v // found.scale for _, v in found.probes) == pattern:
        return found
    known.append(self._trace(depth, int(resolution), probes))
    return known[-1]

  def _trace(self, depth, resolution: int, probes) -> tracing.Trace:
    where = (f'arch={self.name!r} (depth {list(depth)}, resolution '
             f'{resolution})' if depth else
             f'arch={self.name!r} (resolution {resolution})')
    try:
      found = tracing.trace(
          lambda at: self.module(at, tracing.CLASSES_PROBE, depth), probes,
          resolution)
    except ArchError as e:
      raise ArchError(f'{where}: {e}') from e
    except TypeError as e:
      raise ArchError(f"{where}: tracing failed: {e} (the module's "
                      '__call__ must take (x, train))') from e
    except KeyError as e:
      if not (e.args and isinstance(e.args[0], str)):
        raise
      raise ArchError(
          f'{where}: the network reads widths[{e.args[0]!r}], which is not '
          f'a group; groups: {", ".join(probes)}') from e
    if self.layer_name is None:
      return found
    return dataclasses.replace(found, layers=tuple(
        dataclasses.replace(l, name=self.layer_name(l.path))
        for l in found.layers))

  def layers(self, depth, values: Sequence[int], resolution: int,
             num_classes: int) -> tuple[Layer, ...]:
    values = [int(v) for v in values]
    return self.trace(depth, resolution, values).at(
        dict(zip(self.names(depth), values)), num_classes)

  def ties(self, depth, values: Sequence[int]) -> tuple[tuple[str, str], ...]:
    """Pairs of distinct groups that an identity shortcut adds together."""
    return self.trace(depth, self.resolution, values).ties

  def masked(self, depth: tuple[int, ...], values: Sequence[int]
             ) -> dict[tuple[str, ...], str]:
    """{module path: group} of the layers whose outputs AutoSlim masks."""
    return dict(self.trace(depth, self.resolution, values).masked)


# name -> Network: the built-ins (`families`), then the registered ones.
_NETWORKS: dict[str, Network] = {}
_BUILT_IN: list[str] = []


def names() -> tuple[str, ...]:
  """Every known architecture: the built-ins, then the registered ones."""
  return tuple(_NETWORKS)


def built_in() -> tuple[str, ...]:
  return tuple(_BUILT_IN)


def get(name: str) -> Optional[Network]:
  return _NETWORKS.get(name)


def add(net: Network, builtin: bool = False) -> None:
  """Makes `net` the architecture `net.name` (`register` checks it)."""
  _NETWORKS[net.name] = net
  if builtin:
    _BUILT_IN.append(net.name)


def _check_base(name: str, base_widths) -> tuple[tuple[str, int], ...]:
  label = f'register_arch({name!r}) base_widths'
  if not isinstance(base_widths, Mapping) or not base_widths:
    validation.fail(label, base_widths,
                    'a non-empty mapping {group name: width at 1.0}', ArchError)
  for group, width in base_widths.items():
    if not isinstance(group, str) or not group:
      validation.fail(label, group, 'group names that are non-empty strings',
                      ArchError)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
      validation.fail(f'{label}[{group!r}]', width, 'an integer >= 1',
                      ArchError)
  return tuple((g, int(w)) for g, w in base_widths.items())


def _check_depth_names(name: str, base, depth: tuple[int, ...]) -> None:
  """With depth=: every per-block group sits in a registered block."""
  if not all(isinstance(d, int) and d >= 1 for d in depth):
    validation.fail(f'register_arch({name!r}) depth', depth,
                    'a tuple of integers >= 1 (blocks per stage)', ArchError)
  for group, _ in base:
    m = group_names.BLOCK.match(group) or group_names.STAGE.match(group)
    if m and not 1 <= int(m[1]) <= len(depth):
      raise ArchError(f'register_arch({name!r}): group {group!r} names stage '
                      f'{m[1]}, but depth={depth} has {len(depth)} stages')
    m = group_names.BLOCK.match(group)
    if m and not 1 <= int(m[2]) <= depth[int(m[1]) - 1]:
      raise ArchError(f'register_arch({name!r}): group {group!r} names block '
                      f'{m[2]}, but stage {m[1]} has {depth[int(m[1]) - 1]}')


def _takes(factory, param: str) -> bool:
  try:
    params = inspect.signature(factory).parameters
  except (TypeError, ValueError):
    return False
  return param in params or any(p.kind == p.VAR_KEYWORD
                                for p in params.values())


def register(name: str, factory: Callable[..., nn.Module],
             base_widths: Mapping[str, int],
             depth: Optional[Sequence[int]] = None, *,
             resolution: int = DEFAULT_RESOLUTION,
             replace: bool = False) -> None:
  """Registers a Flax CNN as the architecture `name` (`--config.arch=name`).

  Args:
    name: the architecture's name; not a built-in one.
    factory: `factory(widths, num_classes) -> nn.Module` (with `depth=...`
      when `depth` is given; with `dtype=...` when it takes a dtype); the
      module's `__call__(x, train)` maps NHWC images to logits, and every
      nn.Conv / nn.Dense has `features=widths[<group>]` (or num_classes).
    base_widths: {group name: width at width multiplier 1.0}, in network
      order; tensors that are added share one group.
    depth: blocks per stage, for a factory that takes it and group names
      `stageS/blockB/...` (enables depth projection and layer stacking).
    resolution: the input side it is traced at now, and the cost CLI's
      default.
    replace: allow replacing a registered name.

  Raises:
    ArchError: naming the layer and the group, for what the trace cannot
      handle (the `trace_checks` module doc lists it).
  """
  validation.new_name(
      'register_arch name', name,
      lambda n: re.fullmatch(r'[A-Za-z0-9_.-]+', n) is not None,
      'a non-empty name of letters, digits, _ . -', built_in=_BUILT_IN,
      registered=_NETWORKS, replace=replace, error=ArchError,
      built_in_error=ArchError,
      built_in_message='arch={name!r} is a built-in architecture; register '
      'your network under another name',
      registered_message='architecture {name!r} is registered already; pass '
      'replace=True to replace it')
  validation.number(f'register_arch({name!r}) resolution', resolution, lo=1,
                    integer=True, error=ArchError)
  base = _check_base(name, base_widths)
  depth = tuple(depth or ())
  if depth:
    _check_depth_names(name, base, depth)
  net = Network(name, factory, base, depth, int(resolution),
                _takes(factory, 'dtype'))
  net.trace(depth, resolution)
  _check_multiples(net, depth)
  add(net)


def _check_multiples(net: Network, depth: tuple[int, ...]) -> None:
  """Every base width is a multiple of its grouped convs' group count."""
  for (group, width), m in zip(net.base, net.multiples(depth)):
    if width % m:
      convs = [l.name for l in net.trace(depth, net.resolution).layers
               if l.feature_groups > 1 and group in l.in_groups + (
                   l.out_group,)]
      raise ArchError(
          f'register_arch({net.name!r}) base_widths[{group!r}] = {width} is '
          f'not a multiple of {m}, the feature_group_count of grouped conv '
          f'{", ".join(repr(c) for c in convs) or "(via an identity tie)"} '
          f'that reads or writes it; allowed: a multiple of {m}')


def import_module(module: str, field: str = 'config.arch_module') -> None:
  """Imports `module` (it registers its networks); '' does nothing."""
  validation.import_user_module(field, module, 'wt_jax.register_arch')
