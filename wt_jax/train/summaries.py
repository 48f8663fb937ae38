"""TensorBoard scalars without TensorFlow or clu: tensorboard's own writer.

`open_writer(logdir)` returns a `ScalarWriter` that appends scalar events
to an `events.out.tfevents.*` file directly in `logdir`, through the
`tensorboard` package's `EventFileWriter` (a background thread writes:
`write_scalars` only queues, `close` flushes; `write_start` marks a
resumed run's start, from which TensorBoard drops earlier runs' events), or
None (no summaries):

* `logdir` None (no workdir, or not process 0);
* the `tensorboard` package cannot be imported: one log line per process;
* a remote `logdir` (gs://...) without TensorFlow: tensorboard's file layer
  is TensorFlow's `tf.io.gfile` when TensorFlow is installed and its own
  stub otherwise, which can only append to local files; one log line per
  process (metrics.jsonl is written there all the same).

A summary write that fails (disk full, ...) logs one line and stops that
writer's summaries; training goes on.
"""
from __future__ import annotations

import functools
import time
from typing import Any, Mapping, Optional

from absl import logging

_said = set()


def _say_once(key: str, msg: str, *args) -> None:
  if key not in _said:
    _said.add(key)
    logging.warning(msg, *args)


@functools.cache
def _tensorboard():
  """(event_file_writer, event_pb2, summary_pb2), or None without
  tensorboard (said once)."""
  try:
    # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.summary.writer import event_file_writer
  except Exception as e:  # pylint: disable=broad-except
    _say_once('no tensorboard', 'TensorBoard summaries are off: the '
              'tensorboard package cannot be imported (%s: %s); '
              'metrics.jsonl is written all the same.', type(e).__name__, e)
    return None
  return event_file_writer, event_pb2, summary_pb2


def _writes_remote_files() -> bool:
  """Whether tensorboard's file layer is TensorFlow's (which knows gs://),
  not its local-only stub."""
  try:
    from tensorboard.compat import tf  # pylint: disable=g-import-not-at-top
    return not tf.io.gfile.__name__.startswith('tensorboard.')
  except Exception:  # pylint: disable=broad-except
    return False


class ScalarWriter:
  """Scalar summaries into one new event file directly in `logdir`."""

  def __init__(self, logdir: str, flush_secs: float = 120):
    self.logdir = logdir
    self._mods = _tensorboard()
    self._writer = self._mods[0].EventFileWriter(
        logdir, max_queue_size=1000, flush_secs=flush_secs)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Queues one event: `scalars` (numbers) at `step`, as float32."""
    _, event_pb2, summary_pb2 = self._mods
    self._add(event_pb2.Event(step=int(step), summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=k, simple_value=float(v))
               for k, v in scalars.items()])))

  def write_start(self, step: int) -> None:
    """Marks a (re)start at `step`: TensorBoard drops the events of earlier
    runs in `logdir` from `step` on (a SessionLog START event)."""
    event_pb2 = self._mods[1]
    self._add(event_pb2.Event(step=int(step), session_log=event_pb2.SessionLog(
        status=event_pb2.SessionLog.START)))

  def _add(self, event) -> None:
    if self._writer is None:
      return
    event.wall_time = time.time()
    try:
      self._writer.add_event(event)
    except Exception as e:  # pylint: disable=broad-except
      self._stop(e)

  def flush(self) -> None:
    if self._writer is not None:
      try:
        self._writer.flush()
      except Exception as e:  # pylint: disable=broad-except
        self._stop(e)

  def close(self) -> None:
    """Writes what is queued and closes the file."""
    writer, self._writer = self._writer, None
    if writer is not None:
      try:
        writer.close()
      except Exception as e:  # pylint: disable=broad-except
        self._stop(e)

  def _stop(self, e: Exception) -> None:
    logging.warning('TensorBoard summaries in %s stopped: %s: %s',
                    self.logdir, type(e).__name__, e)
    writer, self._writer = self._writer, None
    if writer is not None:
      try:
        writer.close()
      except Exception:  # pylint: disable=broad-except
        pass


def open_writer(logdir: Optional[str]) -> Optional[ScalarWriter]:
  """A `ScalarWriter` into `logdir`, or None (see the module doc)."""
  if not logdir or _tensorboard() is None:
    return None
  if '://' not in str(logdir):
    return ScalarWriter(str(logdir))
  if not _writes_remote_files():
    _say_once('remote', 'TensorBoard summaries are off for remote workdirs '
              'such as %s: tensorboard writes them only through TensorFlow, '
              'which is not installed; metrics.jsonl is written all the '
              'same.', logdir)
    return None
  try:
    return ScalarWriter(str(logdir))
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('TensorBoard summaries are off for %s: %s: %s', logdir,
                    type(e).__name__, e)
    return None
