"""Ctrl-C and SIGTERM as `KeyboardInterrupt`, held back during a save.

The CLI installs `handler` for SIGINT and SIGTERM (`install`): a signal
raises `KeyboardInterrupt` where the main thread is, which the pipeline turns
into exit code 130 and a one-line message. Python's default SIGINT handler
does the same, but it can land inside orbax while a checkpoint save is being
handed to its commit thread; the half-started save can then leave the
manager's `close()` (run on the way out) waiting forever. Code that must not
be cut in two runs under `deferred()`: a signal that arrives there is held and
raised as soon as the block ends, so a Ctrl-C costs at most one save's
hand-off.

A leaf module: it imports nothing from wt_jax.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Optional

_depth = 0  # how many deferred() blocks the main thread is in
_pending: Optional[int] = None  # a signal that arrived inside one


def handler(signum, frame) -> None:
  """Raises `KeyboardInterrupt`, or holds it inside a `deferred()` block."""
  del frame
  global _pending
  if _depth:
    _pending = signum
    return
  raise KeyboardInterrupt


def install() -> None:
  """`handler` for SIGINT and SIGTERM (main thread only, as Python requires)."""
  for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
  """Runs its block whole: an interrupt inside is raised when it ends."""
  global _depth, _pending
  if threading.current_thread() is not threading.main_thread():
    yield  # signals are only ever delivered to the main thread
    return
  _depth += 1
  try:
    yield
  finally:
    _depth -= 1
    if not _depth and _pending is not None:
      _pending = None
      raise KeyboardInterrupt
