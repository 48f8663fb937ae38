"""The command line before absl parses it: the config file and its overrides.

`main.parse_flags` calls these, so that a bad config file or override is
one line naming the file or field, with exit code 2, not a traceback:

* `last_value_wins(argv)`: a `--config.FIELD` given twice keeps its last
  value, for every field (ml_collections would otherwise append the values
  of a tuple field: `--config.seeds=0,1 --config.seeds=2,` -> (0, 1, 2));
* `config_file_problem(argv)`: the `--config` file exists, is a Python file
  that compiles, defines `get_config()`, and that call returns a config;
* `unknown_field(argv, config)`: the first `--config.A.B` override whose
  path the config lacks, with the near names of its block.

A leaf module: it imports nothing from wt_jax, and nothing heavy.
"""
from __future__ import annotations

import difflib
import importlib.machinery
import importlib.util
import os
import re
from typing import Any, Optional, Sequence

# --config.a.b=v, -config.a.b v, --noconfig.flag (absl's boolean negation).
_OVERRIDE = re.compile(r'^-{1,2}(?:no)?(config\.[^=]+)(=.*)?$')


def _config_arg(argv: Sequence[str]) -> Optional[str]:
  """The value of --config=PATH (or --config PATH), the last one given."""
  value = None
  for i, arg in enumerate(argv):
    if re.match(r'^-{1,2}config=', arg):
      value = arg.split('=', 1)[1]
    elif re.match(r'^-{1,2}config$', arg) and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def last_value_wins(argv: Sequence[str]) -> list[str]:
  """`argv` with every `--config.FIELD` but its last occurrence removed.

  A field written `--config.FIELD VALUE` (two words) counts with its value:
  the word after it is its value unless it starts with '--'.
  """
  argv = list(argv)
  items = []  # (field or None, words)
  i = 0
  while i < len(argv):
    m = _OVERRIDE.match(argv[i]) if i else None
    if m and m.group(2) is None and i + 1 < len(argv) and not argv[
        i + 1].startswith('--'):
      items.append((m.group(1), argv[i:i + 2]))
      i += 2
      continue
    items.append((m.group(1) if m else None, argv[i:i + 1]))
    i += 1
  last = {field: n for n, (field, _) in enumerate(items) if field}
  return [w for n, (field, words) in enumerate(items)
          if field is None or last[field] == n for w in words]


def _load_module(path: str):
  loader = importlib.machinery.SourceFileLoader('_wt_jax_checked_config',
                                                path)
  spec = importlib.util.spec_from_loader(loader.name, loader)
  module = importlib.util.module_from_spec(spec)
  loader.exec_module(module)
  return module


def config_file_problem(argv: Sequence[str]) -> Optional[str]:
  """What is wrong with the --config file, in one line; None if it loads.

  The file is executed and `get_config` called here (config files are pure
  and cheap), so that any error it raises names the file.
  """
  value = _config_arg(argv)
  if value is None:
    return None  # absl says that the required flag is missing
  path, *arg = value.split(':', 1)  # ml_collections: 'file.py:argument'
  where = f'--config={value}'
  if not os.path.exists(path):
    return f'{where}: the config file {path} does not exist'
  if not os.path.isfile(path):
    return f'{where}: {path} is not a file; allowed: a Python config file'
  try:
    with open(path, 'rb') as f:
      source = f.read()
  except OSError as e:
    return f'{where}: cannot read {path}: {e.strerror}'
  try:
    compile(source, path, 'exec')
  except (SyntaxError, ValueError) as e:
    line = f' at line {e.lineno}' if getattr(e, 'lineno', None) else ''
    what = 'a syntax error' if isinstance(e, SyntaxError) else 'unreadable'
    return (f'{where}: {path} is not a valid Python config file: '
            f'{what}{line} ({getattr(e, "msg", e)}); allowed: a Python '
            'file defining get_config()')
  try:
    module = _load_module(path)
  except Exception as e:  # pylint: disable=broad-except
    return (f'{where}: running {path} raised {type(e).__name__}: '
            f'{_one_line(e)}')
  if not callable(getattr(module, 'get_config', None)):
    kind = '' if path.endswith('.py') else (
        ' (a workdir\'s config.json records a run; it is not a config file)')
    return (f'{where}: {path} defines no get_config() function{kind}; '
            'allowed: a Python file whose get_config() returns the config '
            '(see wt_jax/defaults.py)')
  try:
    config = module.get_config(*arg)
  except Exception as e:  # pylint: disable=broad-except
    return (f'{where}: get_config() of {path} raised {type(e).__name__}: '
            f'{_one_line(e)}')
  if not hasattr(config, 'to_dict'):
    return (f'{where}: get_config() of {path} returned {type(config).__name__}'
            '; allowed: an ml_collections.ConfigDict (start from '
            'wt_jax.defaults.get_config())')
  return None


def _one_line(error: BaseException) -> str:
  return ' '.join(str(error).split()) or repr(error)


def _block_keys(node: Any) -> Optional[list[str]]:
  try:
    return sorted(node.keys())
  except AttributeError:
    return None


def unknown_field(argv: Sequence[str], config) -> Optional[str]:
  """The first override naming a field `config` lacks, with near names."""
  for arg in argv[1:]:
    m = _OVERRIDE.match(arg)
    if not m:
      continue
    parts = m.group(1).split('.')[1:]
    node, path = config, 'config'
    for part in parts:
      keys = _block_keys(node)
      if keys is None:
        break
      if part not in keys:
        near = difflib.get_close_matches(part, keys, n=3, cutoff=0.6)
        hint = (f'did you mean {" or ".join(f"{path}.{n}" for n in near)}? '
                if near else '')
        return (f'{arg.split("=")[0]}: {path} has no field {part!r}; '
                f'{hint}{path} has: {", ".join(keys)}')
      node, path = node[part], f'{path}.{part}'
  return None


def load_config(argv: Sequence[str]):
  """The config the --config file gives (None if there is no such flag)."""
  value = _config_arg(argv)
  if value is None:
    return None
  path, *arg = value.split(':', 1)
  return _load_module(path).get_config(*arg)
