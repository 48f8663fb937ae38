"""A package face whose names are imported on first use.

A package `__init__` lists its public names and the modules that define
them, then takes its `__getattr__` and `__dir__` from `face`:

    _EXPORTS = {'make_dataset': 'wt_jax.data.pipeline', ...}
    __all__ = sorted(_EXPORTS)
    __getattr__, __dir__ = lazy.face(__name__, _EXPORTS, globals())

`package.name` then imports its module once (and caches the value in the
package); `package.module` imports a module of the package. Importing one
module of the package therefore never imports the others (nor what they
import: TensorFlow, the train loop, ...).
"""
import importlib
from typing import Callable, Mapping


def face(package: str, exports: Mapping[str, str],
         namespace: dict) -> tuple[Callable, Callable]:
  """(`__getattr__`, `__dir__`) of `package` (`namespace`: its globals())."""

  def getattr_(name: str):
    if name in exports:
      value = getattr(importlib.import_module(exports[name]), name)
    else:  # a module of the package, `data.sources`
      try:
        value = importlib.import_module(f'{package}.{name}')
      except ModuleNotFoundError as e:
        if e.name != f'{package}.{name}':
          raise
        raise AttributeError(
            f'module {package!r} has no attribute {name!r}') from None
    namespace[name] = value
    return value

  def dir_():
    return sorted(set(namespace) | set(exports))

  return getattr_, dir_
