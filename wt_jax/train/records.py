"""What a run reports: metrics.jsonl, TensorBoard scalars, progress lines.

* `Records(workdir, resume_step)`: `workdir/metrics.jsonl` (one JSON record
  per line: kind 'train' | 'eval' | 'callback' | 'final', step, values) and
  TensorBoard scalars (`summaries`: tensorboard's own event writer, no
  TensorFlow or clu needed) in `workdir` itself. Only process 0 writes
  files; `workdir=None` writes none.
* `parameter_table`: the parameters' names, shapes, dtypes and sizes.
* `Clock`: the training loop's wall time without evaluations, img/s between
  log steps and the ETA.
* `log_start`, `log_train`, `log_final`: the progress lines (absl logging,
  process 0).
"""
from __future__ import annotations

import collections
import contextlib
import json
import time
from typing import Any, Mapping, Optional

from absl import logging
import jax
import numpy as np

from wt_jax.nets.widths import Widths
from wt_jax.train import paths
from wt_jax.train import summaries
from wt_jax.util import files


class Records:
  """metrics.jsonl and TensorBoard scalars (process 0); scalars logged.

  Scalar values are also logged at INFO level (`[step] name=value, ...`) on
  every process, as clu's default writer did.

  Local files are appended to; remote ones (gs://...), which cannot be
  appended to, are rewritten whole (atomically) at each record. A resumed
  run first drops the records after the step it resumed from.
  """

  def __init__(self, workdir: Optional[str], resume_step: int):
    self.primary = jax.process_index() == 0
    self.path = (paths.join(workdir, paths.METRICS_FILE)
                 if workdir and self.primary else None)
    self.remote = bool(self.path) and '://' in self.path
    self.lines = []
    self.writer = summaries.open_writer(
        workdir if self.primary else None)  # None: no TensorBoard here
    if self.writer is not None:  # TensorBoard drops later steps too
      self.writer.write_start(resume_step + 1)
    if self.path and files.exists(self.path):
      self._truncate(resume_step)

  def _truncate(self, step):
    """Keeps records up to the checkpoint resumed from (drops a killed run's
    later records and the final record), dropping torn lines."""
    for line in files.read_text(self.path).splitlines():
      try:
        rec = json.loads(line)
      except ValueError:
        continue
      if rec.get('step', 0) <= step and rec.get('kind') != 'final':
        self.lines.append(json.dumps(rec))
    files.write_text(self.path, ''.join(k + '\n' for k in self.lines))

  def write(self, kind: str, step: int, values: Mapping[str, Any],
            prefix: str = ''):
    """One record; `prefix`: its values named `<prefix>_<name>`."""
    if prefix:
      values = {f'{prefix}_{k}': v for k, v in values.items()}
    scalars = {k: v for k, v in values.items()
               if isinstance(v, (int, float, np.number)) and
               not isinstance(v, bool)}
    if scalars:
      logging.info('[%d] %s', step, ', '.join(
          f'{k}={v:.6g}' if isinstance(v, float) else f'{k}={v}'
          for k, v in sorted(scalars.items())))
      if self.writer is not None:
        self.writer.write_scalars(step, scalars)
    if self.path:
      line = json.dumps({'kind': kind, 'step': int(step), **jsonable(values)})
      if self.remote:
        self.lines.append(line)
        files.write_text(self.path, ''.join(k + '\n' for k in self.lines))
      else:
        with open(self.path, 'a') as f:
          f.write(line + '\n')

  def close(self):
    if self.writer is not None:
      self.writer.close()  # flushes


def jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
  """Scalars (numpy, jax) as Python numbers; what json cannot hold as repr."""
  out = {}
  for k, v in values.items():
    if isinstance(v, (np.generic, jax.Array)) and np.ndim(v) == 0:
      v = np.asarray(v).item()
    try:
      json.dumps(v)
    except TypeError:
      v = repr(v)
    out[k] = v
  return out


class Clock:
  """Wall time of this run's training loop, evaluations excluded."""

  def __init__(self, start_step: int, batch_size: int):
    self.start = time.perf_counter()
    self.start_step = start_step
    self.batch_size = batch_size
    self.paused_s = 0.0
    self.stopped = None
    self.lap_t, self.lap_step = self.start, start_step
    self.parts = collections.defaultdict(float)  # seconds by part

  @contextlib.contextmanager
  def part(self, name: str, when: bool = True, pause: bool = False):
    """Times the block as `parts[name]` (if `when`); with `pause` it does
    not count as training (evaluations)."""
    t0 = time.perf_counter()
    try:
      yield
    finally:
      seconds = time.perf_counter() - t0
      if when:
        self.parts[name] += seconds
      if pause:
        self.paused_s += seconds

  def paused(self):
    return self.part('eval', pause=True)

  def time_parts(self, setup_s: float) -> dict[str, float]:
    """Where this run's time went: set-up, the first step (compilation),
    the other steps, evaluations and checkpoint writes (seconds)."""
    parts = dict(self.parts)
    first = parts.pop('first_step', 0.0)
    ckpt = parts.pop('checkpoint', 0.0)
    return {'setup_s': setup_s, 'first_step_s': first,
            'steps_s': max(0.0, self.loop_seconds() - first - ckpt),
            'eval_s': parts.pop('eval', 0.0), 'checkpoint_s': ckpt, **{
                f'{k}_s': v for k, v in parts.items()}}

  def loop_seconds(self, now: Optional[float] = None) -> float:
    """Seconds since the start, pauses excluded (up to `stop()` if called)."""
    if now is None:
      now = time.perf_counter() if self.stopped is None else self.stopped
    return now - self.start - self.paused_s

  def stop(self) -> None:
    """The end of the training loop: `loop_seconds()` stays as it is now."""
    self.stopped = time.perf_counter()

  def lap(self, step: int) -> tuple[float, float]:
    """(img/s since the lap started, loop seconds per step so far)."""
    now = time.perf_counter()
    img_s = (step - self.lap_step) * self.batch_size / (now - self.lap_t)
    return img_s, self.loop_seconds(now) / max(step - self.start_step, 1)

  def start_lap(self, step: int) -> None:
    self.lap_t, self.lap_step = time.perf_counter(), step


def eta(seconds: float) -> str:
  seconds = int(max(0, seconds))
  h, rem = divmod(seconds, 3600)
  return f'{h}:{rem // 60:02d}:{rem % 60:02d}'


def log_start(widths: Widths, plan, num_devices: int, params) -> None:
  """The run's first line: widths, steps (of `plan`), devices, parameters."""
  if jax.process_index() == 0:
    logging.info('%s widths %s: %d steps of %d examples (%d steps per '
                 'epoch), %d devices in %d processes.\n%s', widths.arch,
                 widths.as_dict(), plan.total_steps, plan.batch_size,
                 plan.steps_per_epoch, num_devices, jax.process_count(),
                 parameter_table(params))


def parameter_table(params) -> str:
  """A table of the leaves of `params` (arrays or `jax.ShapeDtypeStruct`s):
  name ('/'-joined path), shape, dtype, size; then the total count and
  bytes."""
  rows, count, nbytes = [], 0, 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    shape = tuple(np.shape(leaf))
    dtype = np.dtype(leaf.dtype if hasattr(leaf, 'dtype') else
                     np.result_type(leaf))
    size = int(np.prod(shape, dtype=np.int64))
    count, nbytes = count + size, nbytes + size * dtype.itemsize
    rows.append(('/'.join(_key_name(k) for k in path), str(shape),
                 str(dtype), f'{size:,}'))
  head = ('Name', 'Shape', 'Dtype', 'Size')
  widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
  rule = '+' + '+'.join('-' * (w + 2) for w in widths) + '+'
  line = lambda r: '| ' + ' | '.join(c.ljust(w) for c, w in zip(r, widths)
                                     ) + ' |'
  return '\n'.join([rule, line(head), rule, *map(line, rows), rule,
                    f'Total: {count:,} -- {nbytes:,} bytes'])


def _key_name(key) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def log_train(step: int, total_steps: int, loss: float, lr: float,
              img_s: float, per_step_s: float) -> None:
  if jax.process_index() == 0:
    logging.info('step %d/%d  loss %.4f  lr %.4g  %.0f img/s  ETA %s', step,
                 total_steps, loss, lr, img_s,
                 eta(per_step_s * (total_steps - step)))


def log_final(final: Mapping[str, Any]) -> None:
  if jax.process_index() == 0:
    logging.info('Final (%s, step %d): top1 %.4f  top5 %.4f  eval_loss %.4f  '
                 'train_loss %.4f  %.1f s', final['eval_split'],
                 final['steps'], final['top1'], final['top5'],
                 final['eval_loss'], final.get('train_loss', float('nan')),
                 final['wall_time_s'])
