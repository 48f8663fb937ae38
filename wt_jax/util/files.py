"""Every file wt_jax reads or writes outside orbax: one path layer.

Local paths use the os; remote ones (`gs://...`, any scheme `etils.epath`
knows) go through `etils.epath`, as orbax's own files do. Writes are
atomic: a file is absent, old or complete, never half (locally a temporary
file in the same directory renamed over the target, `os.replace`; an object
upload is itself atomic).
"""
from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from typing import Any

from etils import epath


def _tensorflow_importable() -> bool:
  try:
    return importlib.util.find_spec('tensorflow') is not None
  except (ImportError, ValueError):  # blocked, or a broken install
    return False


# etils.epath (ours and orbax's) asks `find_spec('tensorflow')` on its first
# path operation, which raises where TF is blocked on sys.meta_path; its own
# switch says "no TF" without asking (a user's setting is kept).
if 'EPATH_USE_TF' not in os.environ and not _tensorflow_importable():
  os.environ['EPATH_USE_TF'] = 'false'


def _is_remote(path: str) -> bool:
  return '://' in str(path)


def join(root: str, *parts: str) -> str:
  """Joins a local or remote (gs://...) path."""
  root = str(root)
  if _is_remote(root):
    return '/'.join([root.rstrip('/'), *parts])
  return os.path.join(root, *parts)


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically. An OSError (disk full, ...) names
  `path` itself, not the temporary file."""
  path = str(path)
  if _is_remote(path):
    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)  # no-op on object stores
    target.write_bytes(data)
    return
  try:
    _write_local(path, data)
  except OSError as e:
    if e.filename == path or not e.errno:
      raise
    raise type(e)(e.errno, e.strerror, path) from e


def _write_local(path: str, data: bytes) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-' +
                             os.path.basename(path))
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; use the umask
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode('utf-8'))


def write_json(path: str, obj: Any) -> None:
  write_text(path, json.dumps(obj, indent=2, sort_keys=False) + '\n')


def read_json(path: str) -> Any:
  path = str(path)
  if _is_remote(path):
    return json.loads(epath.Path(path).read_text())
  with open(path) as f:
    return json.load(f)


def exists(path: str) -> bool:
  path = str(path)
  if _is_remote(path):
    return epath.Path(path).exists()
  return os.path.exists(path)


def read_text(path: str) -> str:
  path = str(path)
  if _is_remote(path):
    return epath.Path(path).read_text()
  with open(path) as f:
    return f.read()


def read_bytes(path: str) -> bytes:
  path = str(path)
  if _is_remote(path):
    return epath.Path(path).read_bytes()
  with open(path, 'rb') as f:
    return f.read()


def list_files(directory: str) -> list[str]:
  """Names of the regular files directly in `directory` ([] if it is absent)."""
  directory = str(directory)
  if _is_remote(directory):
    path = epath.Path(directory)
    return sorted(c.name for c in path.iterdir() if c.is_file()) if (
        path.exists()) else []
  try:
    return sorted(e.name for e in os.scandir(directory) if e.is_file())
  except (FileNotFoundError, NotADirectoryError):
    return []


def _copy_tree(src: epath.Path, dst: epath.Path) -> None:
  if src.is_dir():
    dst.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
      _copy_tree(child, dst / child.name)
  else:
    src.copy(dst, overwrite=True)


def move(src: str, dst: str) -> None:
  """Moves a file or directory tree to `dst` (its parent is created).

  Object stores (gs://...) have no directory rename: a remote tree is
  copied, then removed.
  """
  if _is_remote(src) or _is_remote(dst):
    source, target = epath.Path(src), epath.Path(dst)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
      _copy_tree(source, target)
      source.rmtree()
    else:
      source.rename(target)
    return
  os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
  os.replace(src, dst)
