"""The README's Layout section is the package: its table, read by this test.

Each row of the table names a layer (a number), and the modules and
packages of `wt_jax/` in it. Checked: every top-level entry of `wt_jax/` is
in exactly one row and every row's names exist; at most 8 top-level
modules; every `wt_jax` import points to a lower layer or stays inside its
own package; no module has an import statement of TensorFlow, TFDS or clu
(`data.tf_support` imports the first two when a path needs them; the test
that blocks them is tests/test_without_tf.py); the width optimizers never
import the registry, and AutoSlim and DMCP never import each other; no
module is over 400 lines and no function over 80.
"""
import ast
import os
import re

import pytest

from _tiny import REPO

PKG = os.path.join(REPO, 'wt_jax')


def _layout_rows():
  """[(layer, [name, ...])] from the README's Layout table."""
  text = open(os.path.join(REPO, 'README.md'), encoding='utf-8').read()
  section = text.split('\n## Layout\n', 1)[1].split('\n## ', 1)[0]
  rows = []
  for line in section.splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if len(cells) >= 3 and cells[0].isdigit():
      rows.append((int(cells[0]), re.findall(r'`([\w/]+)`', cells[2])))
  return rows


def _units() -> dict[str, int]:
  """Top-level unit ('data', 'report', ...) -> its layer."""
  out = {}
  for layer, names in _layout_rows():
    for name in names:
      unit = name.rstrip('/')
      assert unit not in out, f'{unit} is in two rows of the Layout table'
      out[unit] = layer
  return out


def _modules():
  """(dotted name, path) of every module of wt_jax."""
  for root, _, files in os.walk(PKG):
    for f in sorted(files):
      if f.endswith('.py'):
        path = os.path.join(root, f)
        rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
        yield rel.removesuffix('.__init__'), path


def _is_module(dotted: str) -> bool:
  base = os.path.join(REPO, *dotted.split('.'))
  return os.path.isfile(base + '.py') or os.path.isdir(base)


def _imports(path: str):
  """Every module imported at module level or anywhere in `path`."""
  tree = ast.parse(open(path, encoding='utf-8').read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        yield a.name
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      for a in node.names:
        full = f'{node.module}.{a.name}'
        yield full if _is_module(full) else node.module


def _unit(dotted: str) -> str:
  parts = dotted.split('.')
  return parts[1] if len(parts) > 1 else '__init__'


def test_table_lists_every_entry_of_the_package():
  units = _units()
  entries = {e[:-3] if e.endswith('.py') else e for e in os.listdir(PKG)
             if (e.endswith('.py') and e != '__init__.py') or
             os.path.isfile(os.path.join(PKG, e, '__init__.py'))}
  assert entries == set(units)
  top_modules = [e for e in os.listdir(PKG) if e.endswith('.py')]
  assert len(top_modules) <= 8, top_modules


def test_imports_point_down_the_layers():
  units = _units()
  wrong = []
  for name, path in _modules():
    here = _unit(name)
    for imported in _imports(path):
      if not imported.startswith('wt_jax.'):
        continue
      there = _unit(imported)
      if there == here or here == '__init__':
        continue
      if units[there] >= units[here]:
        wrong.append(f'{name} (layer {units[here]}) imports {imported} '
                     f'(layer {units[there]})')
  assert not wrong, '\n'.join(wrong)


@pytest.mark.parametrize('library', ['tensorflow', 'tensorflow_datasets',
                                     'clu'])
def test_optional_libraries_have_no_import_statement(library):
  """TensorFlow and TFDS are reached only through `data.tf_support`'s
  functions, at run time, by the paths that use them; clu not at all."""
  users = [name for name, path in _modules()
           if any(i == library or i.startswith(library + '.')
                  for i in _imports(path))]
  assert not users, users


def test_optimizers_do_not_import_the_registry_or_each_other():
  for name, path in _modules():
    imported = set(_imports(path))
    if name.startswith('wt_jax.optimizers.') and name != (
        'wt_jax.optimizers.registry'):
      assert 'wt_jax.optimizers.registry' not in imported, name
    for a, b in (('autoslim', 'dmcp'), ('dmcp', 'autoslim')):
      if name.startswith(f'wt_jax.optimizers.{a}'):
        assert not any(i.startswith(f'wt_jax.optimizers.{b}')
                       for i in imported), (name, b)


def test_no_module_over_400_lines_no_function_over_80():
  long = []
  for name, path in _modules():
    text = open(path, encoding='utf-8').read()
    if text.count('\n') > 400:
      long.append(f'{name}: {text.count(chr(10))} lines')
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        n = node.end_lineno - node.lineno + 1
        if n > 80:
          long.append(f'{name}.{node.name}: {n} lines')
  assert not long, long
