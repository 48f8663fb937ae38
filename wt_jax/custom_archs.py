"""Registered networks: a user's width-parameterized Flax CNN, by name.

    wt_jax.register_arch('my_net', lambda widths, num_classes: MyNet(
        widths, num_classes), base_widths={'stem': 16, 'b1': 32, ...})

`register` traces the module once (`tracing.trace`, at probe widths) and
refuses, with an `ArchError` naming the layer and the group, what the layer
graph cannot express. From then on the name works wherever a built-in name
does (`architectures.get_arch` hands over to the `CustomArch` kept here):
`widths.uniform`, `cost.count`, `models.build_model` (`models.CustomNet`,
which applies AutoSlim's masks by intercepting the module's layers),
MorphNet, AutoSlim, projection and extrapolation, and the CLIs with
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
(`architectures.Group`): `stageS` is a stage's stream, `stageS/...` a
stage-level group, `stageS/blockB/...` a per-block group; any other name
(e.g. 'stem', 'head') is a group of its own. Layers at other resolutions
come from one more trace each (cached).
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn

from wt_jax import architectures
from wt_jax import tracing
from wt_jax import validation
from wt_jax.architectures import Group
from wt_jax.errors import ArchError
from wt_jax.graph import Layer

DEFAULT_RESOLUTION = 32
_STAGE = re.compile(r'^stage(\d+)(?:/(.+))?$')
_BLOCK = re.compile(r'^stage(\d+)/block(\d+)/(.+)$')


def _group(name: str) -> Group:
  """The role of a group, read off its name (see the module doc)."""
  block = _BLOCK.match(name)
  if block:
    return Group(name, 'block', int(block[1]), int(block[2]), block[3])
  stage = _STAGE.match(name)
  if stage:
    return Group(name, 'stream', int(stage[1]), None, stage[2] or '')
  kind = name if name in ('stem', 'head') else 'other'
  return Group(name, kind, position=name)


@dataclasses.dataclass(eq=False)
class CustomArch:
  """One registered network: its factory, base widths and traces."""
  name: str
  factory: Callable[..., nn.Module]
  base: tuple[tuple[str, int], ...]  # (group, width at 1.0), network order
  depth: tuple[int, ...]  # blocks per stage; () without depth=
  resolution: int
  takes_dtype: bool
  _traces: dict = dataclasses.field(default_factory=dict)
  _bases: dict = dataclasses.field(default_factory=dict)

  def arch(self, depth: Optional[Sequence[int]]) -> architectures.Arch:
    depth = self._check_depth(depth)
    return architectures.Arch(
        name=self.name, family='custom', block='', stem='', depth=depth,
        stage_widths=(), strides=(), stem_width=0, custom=self)

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

  def base_at(self, depth: tuple[int, ...]) -> tuple[tuple[str, int], ...]:
    """(group, base width) at `depth`, in network order."""
    if depth not in self._bases:
      self._bases[depth] = (self.base if depth == self.depth else
                            _restack(self.base, self.depth, depth))
    return self._bases[depth]

  def groups(self, depth: tuple[int, ...]) -> tuple[Group, ...]:
    return tuple(_group(n) for n, _ in self.base_at(depth))

  def uniform_values(self, depth, width_mult: float, divisor: int
                     ) -> tuple[int, ...]:
    return tuple(architectures.make_divisible(w * width_mult, divisor)
                 for _, w in self.base_at(depth))

  def module(self, widths: Mapping[str, int], num_classes: int,
             depth: tuple[int, ...], dtype: Any = None) -> nn.Module:
    """The user's module at `widths` (a {group: width} mapping)."""
    kwargs = {'depth': depth} if self.depth else {}
    if self.takes_dtype and dtype is not None:
      kwargs['dtype'] = dtype
    return self.factory(dict(widths), num_classes, **kwargs)

  def trace(self, depth: tuple[int, ...], resolution: int) -> tracing.Trace:
    """The trace at `depth` and `resolution` (once each; cached)."""
    key = (depth, int(resolution))
    if key not in self._traces:
      probes = tracing.probe_widths(n for n, _ in self.base_at(depth))
      where = (f'arch={self.name!r} (depth {list(depth)}, resolution '
               f'{resolution})' if depth else
               f'arch={self.name!r} (resolution {resolution})')
      try:
        module = self.module(probes, tracing.CLASSES_PROBE, depth)
        self._traces[key] = tracing.trace(module, probes, int(resolution))
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
    return self._traces[key]

  def layers(self, depth, values: Sequence[int], resolution: int,
             num_classes: int) -> tuple[Layer, ...]:
    names = [n for n, _ in self.base_at(depth)]
    return self.trace(depth, resolution).at(
        dict(zip(names, (int(v) for v in values))), num_classes)

  def masked(self, depth: tuple[int, ...]) -> dict[tuple[str, ...], str]:
    """{module path: group} of the layers whose outputs AutoSlim masks."""
    return dict(self.trace(depth, self.resolution).masked)


def _restack(base, registered: tuple[int, ...], depth: tuple[int, ...]):
  """The registered groups with each stage's blocks repeated or dropped."""
  blocks: dict[int, dict[int, list]] = {}
  for name, width in base:
    m = _BLOCK.match(name)
    if m:
      blocks.setdefault(int(m[1]), {}).setdefault(int(m[2]), []).append(
          (m[3], width))
  out, done = [], set()
  for name, width in base:
    m = _BLOCK.match(name)
    if not m:
      out.append((name, width))
      continue
    s = int(m[1])
    if s in done:
      continue
    done.add(s)
    last = registered[s - 1]
    for b in range(1, depth[s - 1] + 1):
      for pos, w in blocks[s].get(min(b, last), ()):
        out.append((f'stage{s}/block{b}/{pos}', w))
  return tuple(out)


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
    m = _BLOCK.match(group) or _STAGE.match(group)
    if m and not 1 <= int(m[1]) <= len(depth):
      raise ArchError(f'register_arch({name!r}): group {group!r} names stage '
                      f'{m[1]}, but depth={depth} has {len(depth)} stages')
    m = _BLOCK.match(group)
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
  if not isinstance(name, str) or not re.fullmatch(r'[A-Za-z0-9_.-]+', name):
    validation.fail('register_arch name', name,
                    'a non-empty name of letters, digits, _ . -', ArchError)
  if name in architectures.NAMES:
    raise ArchError(f'arch={name!r} is a built-in architecture; register '
                    'your network under another name')
  if name in architectures.names() and not replace:
    raise ValueError(f'architecture {name!r} is registered already; pass '
                     'replace=True to replace it')
  validation.number(f'register_arch({name!r}) resolution', resolution, lo=1,
                    integer=True, error=ArchError)
  base = _check_base(name, base_widths)
  depth = tuple(depth or ())
  if depth:
    _check_depth_names(name, base, depth)
  custom = CustomArch(name, factory, base, depth, int(resolution),
                      _takes(factory, 'dtype'))
  custom.trace(depth, resolution)
  architectures.add_custom(name, custom)


def import_module(module: str, field: str = 'config.arch_module') -> None:
  """Imports `module` (it registers its networks); '' does nothing."""
  validation.import_user_module(field, module, 'wt_jax.register_arch')
