"""One way to check a config block, with one message format.

Every check names the field by its full path, the value and what is allowed:

    config.autoslim.step_fraction=1.5 is invalid; allowed: a number in (0, 1)

Each stage validates the block it owns with a `Fields` over that block
(`data.validate`, `morphnet.validate`, `autoslim.validate`, ...), and
`pipeline.validate` calls them all before any work starts.
"""
from __future__ import annotations

import importlib
import math
import numbers
import os
import traceback
from typing import Any, Callable, Iterable, Optional, Sequence, Type

from wt_jax.errors import ConfigError

_MISSING = object()


def fail(path: str, value: Any, allowed: str,
         error: Type[Exception] = ConfigError):
  """Raises `error('<path>=<value> is invalid; allowed: <allowed>')`."""
  raise error(f'{path}={value!r} is invalid; allowed: {allowed}')


def _range_text(kind: str, lo, hi, lo_open: bool, hi_open: bool) -> str:
  if lo is not None and hi is not None:
    return (f'{kind} in {"(" if lo_open else "["}{lo}, {hi}'
            f'{")" if hi_open else "]"}')
  if lo is not None:
    return f'{kind} {">" if lo_open else ">="} {lo}'
  if hi is not None:
    return f'{kind} {"<" if hi_open else "<="} {hi}'
  return kind


def is_integer(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def number(path: str, value: Any, lo=None, hi=None, *, lo_open: bool = False,
           hi_open: bool = False, integer: bool = False, note: str = '',
           error: Type[Exception] = ConfigError) -> Any:
  """Checks that `value` (named `path`) is a finite number within the
  bounds."""
  kind = 'an integer' if integer else (
      'a number' if lo is not None and hi is not None else 'a finite number')
  allowed = _range_text(kind, lo, hi, lo_open, hi_open) + (
      f' ({note})' if note else '')
  ok = is_integer(value) if integer else (is_number(value) and
                                          math.isfinite(value))
  if ok and lo is not None:
    ok = value > lo if lo_open else value >= lo
  if ok and hi is not None:
    ok = value < hi if hi_open else value <= hi
  if not ok:
    fail(path, value, allowed, error)
  return value


def batch_size(path: str, value: Any, *, devices: Optional[int] = None,
               processes: Optional[int] = None,
               error: Type[Exception] = ConfigError) -> int:
  """The batch size rule, for every batch size (`config.train.batch_size`
  and `eval_batch_size`, `data.make_dataset`'s): a positive integer that
  splits evenly over the `devices` and `processes` given (those the batch
  is split over; none: only a positive integer, as the config is checked
  before any device is known)."""
  over = [f'{name} ({n})' for name, n in (('devices', devices),
                                           ('processes', processes)) if n]
  ok = is_integer(value) and value >= 1 and not any(
      value % int(n) for n in (devices, processes) if n)
  if not ok:
    fail(path, value, ('a positive multiple of the number of ' +
                       ' and '.join(over)) if over else 'an integer >= 1',
         error)
  return value


def _leaves(node: Any, path: str):
  if hasattr(node, 'items'):
    for key, value in node.items():
      yield from _leaves(value, f'{path}.{key}')
  elif isinstance(node, (tuple, list)):
    for i, value in enumerate(node):
      yield from _leaves(value, f'{path}[{i}]')
  else:
    yield path, node


def all_finite(config, name: str = 'config') -> None:
  """Every number anywhere in `config` is finite (no inf or nan), whether or
  not a block's own check reads that field."""
  for path, value in _leaves(config, name):
    if is_number(value) and not math.isfinite(value):
      fail(path, value, 'a finite number (not inf or nan)')


def import_user_module(path: str, module: str, registers: str) -> None:
  """Imports a user's module named by config field `path` (it registers a
  network or an optimizer when imported). Anything it raises, a failed
  import or a refused registration, becomes one ConfigError naming the
  module, the exception and where it was raised."""
  if not module:
    return
  try:
    importlib.import_module(module)
  except Exception as e:  # pylint: disable=broad-except
    # Where in the user's code: the last frame outside wt_jax and importlib.
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    here += os.sep
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if not f.filename.startswith((here, '<frozen'))]
    where = (f' at {frames[-1].filename}:{frames[-1].lineno}'
             if frames and not isinstance(e, ImportError) else '')
    text = ' '.join(str(e).split()) or '(no message)'
    fail(path, module, f'an importable module that calls {registers} '
         f'(importing it raised {type(e).__name__}{where}: {text})')


def new_name(label: str, name: Any, valid: Callable[[str], bool],
             allowed: str, *, built_in, registered, replace: bool,
             built_in_message: str, registered_message: str,
             error: Type[Exception] = ConfigError,
             built_in_error: Type[Exception] = ValueError) -> None:
  """Checks `name` for a registry: a string with `valid(name)` (else
  `fail(label, name, allowed, error)`), not in `built_in`, and not in
  `registered` unless `replace`. The messages are format strings of
  `name`."""
  if not isinstance(name, str) or not valid(name):
    fail(label, name, allowed, error)
  if name in built_in:
    raise built_in_error(built_in_message.format(name=name))
  if name in registered and not replace:
    raise ValueError(registered_message.format(name=name))


class Fields:
  """Checks the fields of one config block (`name` is its path: 'autoslim')."""

  def __init__(self, block, name: str = '',
               error: Type[Exception] = ConfigError):
    self.block = block
    self.name = name
    self.error = error

  def path(self, field: str) -> str:
    return f'config.{self.name}.{field}' if self.name else f'config.{field}'

  def value(self, field: str) -> Any:
    try:
      return self.block[field]
    except (KeyError, AttributeError) as e:
      raise self.error(f'{self.path(field)} is missing') from e

  def fail(self, field: str, allowed: str, value: Any = _MISSING):
    fail(self.path(field), self.value(field) if value is _MISSING else value,
         allowed, self.error)

  def number(self, field: str, lo=None, hi=None, *, lo_open: bool = False,
             hi_open: bool = False, integer: bool = False,
             note: str = '') -> Any:
    """A number (an integer with `integer`) within the given bounds."""
    return number(self.path(field), self.value(field), lo, hi,
                  lo_open=lo_open, hi_open=hi_open, integer=integer,
                  note=note, error=self.error)

  def batch_size(self, field: str) -> int:
    """A batch size (`batch_size`: a positive integer)."""
    return batch_size(self.path(field), self.value(field), error=self.error)

  def training_length(self, epochs: str = 'epochs',
                      steps: str = 'num_steps') -> None:
    """`epochs` >= 0 and `num_steps` >= 0 (> 0 overrides), one of them > 0."""
    self.number(epochs, 0)
    self.number(steps, 0, integer=True, note='> 0 overrides epochs')
    if self.value(steps) == 0 and not self.value(epochs) > 0:
      where = f'{self.name}.{steps}' if self.name else steps
      self.fail(epochs, f'> 0 (or set {where} > 0)')

  def choice(self, field: str, allowed: Iterable[Any]) -> Any:
    allowed = tuple(allowed)
    value = self.value(field)
    if value not in allowed:
      self.fail(field, ', '.join(map(str, allowed)))
    return value

  def boolean(self, field: str) -> bool:
    value = self.value(field)
    if not isinstance(value, bool):
      self.fail(field, 'True or False')
    return value

  def string(self, field: str, allowed: str = 'a string') -> str:
    value = self.value(field)
    if not isinstance(value, str):
      self.fail(field, allowed)
    return value

  def integers(self, field: str, lo: int = 0, *, non_empty: bool = True,
               unique: bool = False) -> tuple[int, ...]:
    """A tuple of integers >= lo (optionally non-empty and without repeats)."""
    value = self.value(field)
    allowed = (f'{"a non-empty " if non_empty else "a "}tuple of '
               f'{"distinct " if unique else ""}integers >= {lo}')
    items = tuple(value) if isinstance(value, (tuple, list)) else None
    if items is None or (non_empty and not items) or not all(
        is_integer(v) and v >= lo for v in items):
      self.fail(field, allowed)
    if unique and len(set(items)) != len(items):
      self.fail(field, allowed)
    return items

  def known(self, allowed: Sequence[str],
            required: Optional[Sequence[str]] = None) -> None:
    """No fields beyond `allowed`; every field of `required` present."""
    keys = set(self.block.keys())
    unknown = sorted(keys - set(allowed))
    where = f'config.{self.name}' if self.name else 'config'
    if unknown:
      raise self.error(f'{where} has unknown fields {unknown}; allowed: '
                       f'{", ".join(allowed)}')
    missing = [f for f in (required or ()) if f not in keys]
    if missing:
      raise self.error(f'{where} is missing fields {missing}; see '
                       'wt_jax/defaults.py for every field and its default')
