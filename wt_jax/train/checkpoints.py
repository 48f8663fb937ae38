"""Checkpoints in `workdir/checkpoints`: structure check, restore, save.

An orbax `CheckpointManager` holds the whole train state plus a small JSON
`progress` item (`Progress`: examples seen, wall time, the last logged train
metrics, whether a callback stopped training). A re-run with the same
workdir resumes from the latest step bit-identically, together with the
data order (`batches`), the per-step rng (`fold_in(key, step)`) and the
running metric sums, which live in the train state.

Before any restore, `structure.json` (arch, depth, width vector,
num_classes and the shape of every state leaf, written when a fresh run
starts) is compared with this run; a different width vector or architecture
raises `CheckpointMismatchError` naming the difference. If the JSON is
missing or corrupt, the shapes in orbax's metadata are compared instead.
A latest checkpoint that does not restore (a torn save) is skipped with
one warning for the newest one that does.

A save or restore that fails for the machine's reason (disk full, I/O
error, read-only disk; orbax and TensorStore report these as a ValueError
carrying the OS error code) raises `EnvironmentFailure` (exit code 4)
naming the checkpoint directory and the step; the checkpoints saved before
it stay intact (orbax writes each one to a temporary directory and renames
it when complete). The leftovers of a failed read or write inside orbax
(callbacks of its futures landing on an event loop it already closed) are
not printed (`_ignore_orbax_leftovers`, installed with the first
`Checkpoints`).

Orbax writes checkpoints from all processes itself; `structure.json` is
written by process 0.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import time
from typing import Any, Iterator, Mapping, Optional

from absl import logging
import jax
import orbax.checkpoint as ocp

from wt_jax.errors import CheckpointMismatchError
from wt_jax.errors import EnvironmentFailure
from wt_jax.nets.widths import Widths
from wt_jax.train import paths
from wt_jax.util import files
from wt_jax.util import interrupts


@dataclasses.dataclass
class Progress:
  """The JSON item saved beside the state (and what the loop counts)."""
  wall_time_s: float = 0.0  # training loop time of the earlier runs
  examples_seen: int = 0
  last_train: dict = dataclasses.field(default_factory=dict)
  stopped_early: bool = False  # a callback asked to stop

  @classmethod
  def from_json(cls, saved: Mapping[str, Any]) -> 'Progress':
    return cls(wall_time_s=saved['wall_time_s'],
               examples_seen=int(saved['examples_seen']),
               last_train=dict(saved.get('last_train', {})),
               stopped_early=bool(saved.get('stopped_early', False)))

  def to_json(self, run_seconds: float) -> dict:
    """The item to save, `run_seconds` of this run added to the wall time."""
    return {'wall_time_s': self.wall_time_s + run_seconds,
            'examples_seen': self.examples_seen,
            'last_train': self.last_train,
            'stopped_early': self.stopped_early}


def _path_str(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(
      k, 'idx', k)))) for k in path)


def state_structure(widths: Widths, num_classes: int, state_shapes) -> dict:
  """JSON description of a run's checkpoints: widths + every leaf's shape."""
  leaves = jax.tree_util.tree_leaves_with_path(state_shapes)
  return {'arch': widths.arch, 'depth': list(widths.depth),
          'widths': widths.as_dict(), 'num_classes': int(num_classes),
          'shapes': {_path_str(p): [list(x.shape), str(x.dtype)]
                     for p, x in leaves}}


def check_structure(stored: Mapping[str, Any], expected: Mapping[str, Any],
                    where: str) -> None:
  """Raises CheckpointMismatchError naming how `stored` differs."""
  if (stored.get('arch'), list(stored.get('depth', []))) != (
      expected['arch'], list(expected['depth'])):
    raise CheckpointMismatchError(
        f'checkpoints in {where} are for arch {stored.get("arch")!r} depth '
        f'{stored.get("depth")}, but this run is arch {expected["arch"]!r} '
        f'depth {expected["depth"]}; use another workdir or delete it')
  if stored.get('widths') != expected['widths']:
    diff = [f'{g}: {stored["widths"].get(g)} (checkpoint) vs {w} (this run)'
            for g, w in expected['widths'].items()
            if stored['widths'].get(g) != w]
    raise CheckpointMismatchError(
        f'checkpoints in {where} are for a different width vector of '
        f'{expected["arch"]}: {"; ".join(diff)}; use another workdir or '
        'delete it')
  if stored.get('num_classes') != expected['num_classes']:
    raise CheckpointMismatchError(
        f'checkpoints in {where} have num_classes={stored.get("num_classes")}, '
        f'this run {expected["num_classes"]}')
  check_shapes(stored.get('shapes', {}), expected['shapes'], where)


def check_shapes(stored: Mapping[str, Any], expected: Mapping[str, Any],
                 where: str) -> None:
  """Raises CheckpointMismatchError listing the leaves whose shapes differ."""
  diff = []
  for k in sorted(set(stored) | set(expected)):
    a, b = stored.get(k), expected.get(k)
    if a is not None and b is not None and list(a[0]) == list(b[0]):
      continue
    diff.append(f'{k}: {a and a[0]} (checkpoint) vs {b and b[0]} (this run)')
  if diff:
    raise CheckpointMismatchError(
        f'checkpoints in {where} do not match this run\'s train state '
        f'({len(diff)} leaves differ): {"; ".join(diff[:6])}'
        f'{" ..." if len(diff) > 6 else ""}')


def _orbax_shapes(manager: ocp.CheckpointManager, step: int) -> dict:
  """Leaf shapes of a stored state from orbax's metadata (no restore)."""
  meta = manager.item_metadata(step)['state']
  tree = getattr(meta, 'tree', meta)
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(
      tree, is_leaf=lambda x: hasattr(x, 'shape')):
    if hasattr(leaf, 'shape'):
      out[_path_str(path)] = [list(leaf.shape),
                              str(getattr(leaf, 'dtype', ''))]
  return out


# TensorStore's error text carries the OS error: "... No space left on
# device [os_error_code='28']".
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


def _os_error_code(error: BaseException) -> Optional[int]:
  """The OS error code behind `error` or the exceptions it chains, if any."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno:
      return int(error.errno)
    match = _OS_ERROR_CODE.search(str(error))
    if match:
      return int(match.group(1))
    error = error.__cause__ or error.__context__
  return None


def _is_orbax_leftover(unraisable) -> bool:
  """An unraisable exception left by an interrupted orbax read or write."""
  value, obj = unraisable.exc_value, unraisable.object
  if isinstance(value, RuntimeError) and str(value) == 'Event loop is closed':
    return True
  code = getattr(obj, 'cr_code', None)
  return code is not None and f'{os.sep}orbax{os.sep}' in code.co_filename


def _ignore_orbax_leftovers() -> None:
  """From now on, orbax's leftovers of a failed read or write are not
  printed (every other unraisable exception still is)."""
  previous = sys.unraisablehook
  if getattr(previous, 'wt_jax_filter', False):
    return

  def hook(unraisable):
    if not _is_orbax_leftover(unraisable):
      previous(unraisable)

  hook.wt_jax_filter = True
  sys.unraisablehook = hook


class Checkpoints:
  """The orbax manager of `workdir/checkpoints` and its `structure.json`."""

  def __init__(self, workdir: str, keep: int):
    _ignore_orbax_leftovers()
    self.directory = paths.join(workdir, paths.CHECKPOINTS_DIR)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max(1, int(keep)),
                                             create=True),
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'progress': ocp.JsonCheckpointHandler()})
    self.close_seconds = 0.0
    self.failed = False
    self.pending: Optional[int] = None  # the step of the save in flight

  @contextlib.contextmanager
  def _storage(self, action: str) -> Iterator[None]:
    """Turns a failure of the machine inside orbax into EnvironmentFailure."""
    try:
      yield
    except EnvironmentFailure:
      raise
    except Exception as e:  # pylint: disable=broad-except
      code = _os_error_code(e)
      if code is None:
        raise
      self.failed = True
      raise EnvironmentFailure(code, f'{os.strerror(code)} ({action})',
                               self.directory) from e

  def _check(self, latest: int, structure: Mapping[str, Any]) -> None:
    path = paths.join(self.directory, paths.STRUCTURE_FILE)
    stored = None
    if files.exists(path):
      try:
        stored = files.read_json(path)
      except ValueError as e:
        logging.warning('Corrupt %s (%s): checking the checkpoint shapes '
                        'from orbax metadata instead.', path, e)
    if stored is not None:
      check_structure(stored, structure, self.directory)
    else:
      check_shapes(_orbax_shapes(self.manager, latest), structure['shapes'],
                   self.directory)

  def _restore_intact(self, target) -> tuple[Optional[Any], Progress]:
    """The newest checkpoint that restores; a broken newer one (a torn or
    half-written save) is skipped with one warning naming both steps."""
    steps = sorted(self.manager.all_steps(), reverse=True)
    for i, step in enumerate(steps):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target),
            progress=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        later = steps[i + 1] if i + 1 < len(steps) else None
        why = str(e).split(' See full TensorStore details')[0]
        logging.warning(
            'Checkpoint step %d in %s is corrupt (%s: %s); %s.', step,
            self.directory, type(e).__name__,
            ' '.join(why.split())[:200], f'falling back to step {later}'
            if later is not None else
            'no intact checkpoint is left: starting over')
        continue
      logging.info('Resumed from %s at step %d.', self.directory, step)
      return restored.state, Progress.from_json(restored.progress)
    return None, Progress()

  def restore(self, target, structure: Mapping[str, Any]
              ) -> tuple[Optional[Any], Progress]:
    """(state, progress) of the newest intact checkpoint; (None, Progress())
    and `structure.json` written when there is none. The structure is
    checked before anything is restored."""
    latest = self.manager.latest_step()
    if latest is not None:
      try:
        self._check(latest, structure)
      except CheckpointMismatchError:
        self.manager.close()
        raise
      state, progress = self._restore_intact(target)
      if state is not None:
        return state, progress
    if jax.process_index() == 0:
      files.write_json(paths.join(self.directory, paths.STRUCTURE_FILE),
                       structure)
    return None, Progress()

  def save(self, step: int, state, progress: Progress,
           run_seconds: float) -> None:
    # One save in flight at a time: orbax 0.12 can lose a checkpoint's array
    # metadata when a save starts while the previous one is still committing
    # ("No ArrayMetadata found for process_index=0", seen with saves on
    # consecutive steps). Training still overlaps each save. A Ctrl-C waits
    # for the hand-off to orbax's commit thread (see `interrupts`).
    with interrupts.deferred():
      self._wait()  # the save before this one commits here
      with self._storage(f'saving the checkpoint of step {step}'):
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            progress=ocp.args.JsonSave(progress.to_json(run_seconds))))
      self.pending = step

  def _wait(self) -> None:
    with self._storage(f'saving the checkpoint of step {self.pending}'):
      self.manager.wait_until_finished()
    self.pending = None

  def wait(self) -> None:
    """Blocks until the pending save is committed (timed as checkpointing)."""
    t0 = time.perf_counter()
    self._wait()
    self.close_seconds += time.perf_counter() - t0

  def close(self) -> None:
    """Waits for the pending save, then closes the manager. After a failed
    save the manager is closed without raising that failure again."""
    t0 = time.perf_counter()
    with interrupts.deferred():
      try:
        self._wait()
      finally:
        try:
          self.manager.close()
        except Exception:  # pylint: disable=broad-except
          if not self.failed:
            raise
    self.close_seconds += time.perf_counter() - t0

  def __enter__(self) -> 'Checkpoints':
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
      return
    try:  # the error on its way out is the one to report
      self.close()
    except Exception:  # pylint: disable=broad-except
      logging.debug('Closing %s after an error failed too.', self.directory)


def for_workdir(workdir: Optional[str], keep: int) -> Optional[Checkpoints]:
  """The `Checkpoints` of `workdir`; None without a workdir."""
  return Checkpoints(workdir, keep) if workdir else None
