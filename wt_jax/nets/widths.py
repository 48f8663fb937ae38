"""Width vectors: one integer channel count per channel group.

A `Widths` is an immutable value: the architecture name, its blocks per
stage, and one width per group of `architectures.groups(arch)`, in that
order. It is validated on construction, hashable (so it can be a Flax module
attribute or a jit static argument), and carries the stage and block of every
group, which is what extrapolation needs to map it onto another depth.

Pure functions:
* `uniform(arch, width_mult)`: the uniform widths at a width multiplier;
* `multipliers(widths, base)`: per-group widths / base widths;
* `from_multipliers(base, mults, divisor, min_width)`: base * mults, rounded
  to the nearest multiple of `divisor`, never below `min_width`;
* `steps(widths, divisor)`: per group, the multiple its widths round to:
  lcm(divisor, the group's `multiples`), so that a grouped conv keeps its
  group count in every width the chain makes; `fit(widths, values)` rounds
  any values (an optimizer's counts) to the groups' `multiples`;
* `save` / `load`: human-readable JSON ({group name: width} plus the
  architecture), written atomically.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from wt_jax.errors import ArchError
from wt_jax.errors import WidthError
from wt_jax.nets import architectures
from wt_jax.util import files


@dataclasses.dataclass(frozen=True)
class Widths:
  """One channel count per channel group of `arch` at `depth`."""
  arch: str
  depth: tuple[int, ...]
  values: tuple[int, ...]

  def __post_init__(self):
    object.__setattr__(self, 'depth', tuple(int(d) for d in self.depth))
    spec = architectures.get_arch(self.arch, self.depth)
    names = [g.name for g in architectures.groups(spec)]
    values = tuple(self.values)
    if len(values) != len(names):
      raise WidthError(
          f'width vector for {self.arch} with depth {self.depth} has '
          f'{len(values)} entries; expected {len(names)}, one per group: '
          f'{", ".join(names)}')
    clean = []
    for name, v in zip(names, values):
      if isinstance(v, (bool, np.bool_)) or not isinstance(
          v, (numbers.Integral, numbers.Real)):
        raise WidthError(f'width of group {name!r} is {v!r}; allowed: a '
                         'positive integer')
      if isinstance(v, numbers.Real) and not float(v).is_integer():
        raise WidthError(f'width of group {name!r} is {v!r}, not an integer; '
                         'allowed: a positive integer')
      if int(v) <= 0:
        raise WidthError(f'width of group {name!r} is {v!r}; allowed: a '
                         'positive integer (>= 1)')
      clean.append(int(v))
    for name, v, m in zip(names, clean, architectures.multiples(spec)):
      if v % m:
        raise WidthError(
            f'width of group {name!r} is {v}, not a multiple of {m}, the '
            f'feature_group_count of a grouped conv of {self.arch} that '
            f'reads or writes it; allowed: a multiple of {m}')
    object.__setattr__(self, 'values', tuple(clean))

  @property
  def spec(self) -> architectures.Arch:
    return architectures.get_arch(self.arch, self.depth)

  @property
  def groups(self) -> tuple[architectures.Group, ...]:
    return architectures.groups(self.spec)

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(g.name for g in self.groups)

  @property
  def multiples(self) -> tuple[int, ...]:
    """Per group: its width is a multiple of this (`architectures.multiples`:
    a grouped conv's group count; 1 for most groups)."""
    return architectures.multiples(self.spec)

  def __getitem__(self, name: str) -> int:
    return self.as_dict()[name]

  def __len__(self) -> int:
    return len(self.values)

  def as_dict(self) -> dict[str, int]:
    return dict(zip(self.names, self.values))

  def array(self) -> np.ndarray:
    return np.asarray(self.values, dtype=np.int64)

  def replace(self, values: Sequence[Any]) -> 'Widths':
    return Widths(self.arch, self.depth, tuple(values))

  def same_structure(self, other: 'Widths') -> bool:
    return self.arch == other.arch and self.depth == other.depth


def uniform(arch: str, width_mult: float = 1.0,
            depth: Optional[Sequence[int]] = None, divisor: int = 8) -> Widths:
  """Uniform widths of `arch` at `width_mult` (MobileNetV2 rounding rule)."""
  spec = architectures.get_arch(arch, depth)
  return Widths(arch, spec.depth,
                architectures.uniform_values(spec, width_mult, divisor))


def multipliers(widths: Widths, base: Widths) -> np.ndarray:
  """Per-group multipliers of `widths` relative to `base` (same structure)."""
  _check_same(widths, base, 'multipliers')
  return widths.array() / base.array()


_HALF_TOLERANCE = 1e-9


def round_widths(values: np.ndarray, divisor=8,
                 min_width: Optional[int] = None, multiples=1) -> np.ndarray:
  """Nearest multiple of `divisor` (halves round up), at least `min_width`.

  `divisor` is one integer or one per value (`steps`); so are `multiples`,
  which each divisor is a multiple of: `min_width` is raised to the next
  multiple of them (a grouped conv's group count; 1 keeps it). Monotone
  non-decreasing in `values`, which FLOPs matching relies on. A value within
  `_HALF_TOLERANCE` divisor steps below a half rounds up too, so float noise
  (288 computed as 40 x (288 / 40) = 288.00000000000006 or
  287.99999999999994) never flips a half: extrapolating through the identity
  projection gives exactly the direct FLOPs-matched widths.
  """
  divisor = np.asarray(divisor, np.int64)
  if np.any(divisor < 1):
    raise WidthError(f'divisor={divisor.tolist()!r}; allowed: an integer >= 1')
  min_width = divisor if min_width is None else int(min_width)
  if np.any(np.asarray(min_width) < 1):
    raise WidthError(f'min_width={min_width!r}; allowed: an integer >= 1')
  values = np.asarray(values, dtype=np.float64)
  if not np.all(np.isfinite(values)):
    raise WidthError(f'non-finite widths {values.tolist()}')
  rounded = np.floor(values / divisor + 0.5 + _HALF_TOLERANCE).astype(
      np.int64) * divisor
  multiples = np.asarray(multiples, np.int64)
  return np.maximum(rounded, -(-np.asarray(min_width) // multiples) *
                    multiples)


def steps(widths: Widths, divisor: int = 1) -> np.ndarray:
  """[groups] lcm(divisor, the group's multiple): the step of its widths."""
  return np.asarray([math.lcm(int(divisor), m) for m in widths.multiples],
                    np.int64)


def fit(widths: Widths, values: Sequence[float], min_width: int = 1
        ) -> Widths:
  """`values` (e.g. an optimizer's channel counts) as widths of `widths`'
  structure: each rounded to its group's multiple, at least `min_width`."""
  return widths.replace(round_widths(values, steps(widths), min_width,
                                     widths.multiples).tolist())


def from_multipliers(base: Widths, mults: Sequence[float], divisor: int = 8,
                     min_width: Optional[int] = None) -> Widths:
  """Widths = base * mults, rounded to `divisor` (and each group's multiple,
  `steps`), at least `min_width`."""
  mults = np.asarray(mults, dtype=np.float64)
  if mults.shape != (len(base),):
    raise WidthError(f'{mults.shape[0] if mults.ndim else 0} multipliers for '
                     f'{len(base)} groups of {base.arch}')
  for name, m in zip(base.names, mults):
    if not (np.isfinite(m) and m > 0):
      raise WidthError(f'multiplier of group {name!r} is {m!r}; allowed: a '
                       'finite number > 0')
  return base.replace(round_widths(base.array() * mults, steps(base, divisor),
                                   min_width, base.multiples).tolist())


def _check_same(a: Widths, b: Widths, what: str) -> None:
  if not a.same_structure(b):
    raise WidthError(f'{what}: width vectors of different structure: '
                     f'{a.arch} depth {a.depth} vs {b.arch} depth {b.depth}')


def to_json(widths: Widths, **extra: Any) -> dict[str, Any]:
  return dict(arch=widths.arch, depth=list(widths.depth),
              widths=widths.as_dict(), **extra)


def from_json(obj: Mapping[str, Any], *, expect_arch: Optional[str] = None,
              expect_depth: Optional[Sequence[int]] = None,
              source: str = 'width vector') -> Widths:
  """Parses `to_json` output, checking the group names one by one."""
  for key in ('arch', 'widths'):
    if key not in obj:
      raise WidthError(f'{source}: missing field {key!r}; expected fields '
                       '"arch", "depth" and "widths" ({group: width})')
  arch = obj['arch']
  if expect_arch is not None and arch != expect_arch:
    raise WidthError(f'{source}: arch is {arch!r}, but {expect_arch!r} is '
                     'expected')
  try:
    spec = architectures.get_arch(arch, obj.get('depth') or None)
  except ArchError as e:
    raise WidthError(f'{source}: {e}') from e
  if expect_depth and tuple(expect_depth) != spec.depth:
    raise WidthError(f'{source}: depth is {list(spec.depth)}, but '
                     f'{list(expect_depth)} is expected')
  names = [g.name for g in architectures.groups(spec)]
  given = obj['widths']
  if not isinstance(given, Mapping):
    raise WidthError(f'{source}: "widths" must map group names to widths')
  unknown = [k for k in given if k not in names]
  missing = [n for n in names if n not in given]
  if unknown or missing:
    raise WidthError(
        f'{source}: group names do not match {arch} with depth '
        f'{list(spec.depth)}: unknown {unknown}, missing {missing}; expected '
        f'{len(names)} groups: {", ".join(names)}')
  return Widths(arch, spec.depth, tuple(given[n] for n in names))


def save(path: str, widths: Widths, **extra: Any) -> None:
  """Writes `widths` (plus any JSON-able `extra` fields) atomically."""
  files.write_json(path, to_json(widths, **extra))


def load(path: str, *, expect_arch: Optional[str] = None,
         expect_depth: Optional[Sequence[int]] = None) -> Widths:
  if not files.exists(path):
    raise WidthError(f'widths file {path!r} does not exist')
  try:
    obj = files.read_json(path)
  except ValueError as e:
    raise WidthError(f'widths file {path!r} is not valid JSON: {e}') from e
  except OSError as e:  # a directory, unreadable, ...
    raise WidthError(f'widths file {path!r} cannot be read: '
                     f'{e.strerror or e}; allowed: a JSON file') from e
  return from_json(obj, expect_arch=expect_arch, expect_depth=expect_depth,
                   source=f'widths file {path!r}')
