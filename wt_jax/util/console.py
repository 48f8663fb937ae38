"""What a user sees by default: stage headers, one-line summaries, progress.

Library INFO logs (orbax, absl, the scalars `train.records` logs) are off
unless `--verbosity=1` (`main.py`); this module prints the few lines a run
shows, on process 0 only:

* `header('Stage optimize')`, `line('  optimize: 1 computed (9.2 s)')`;
* `Progress(total, initial, desc)`: a tqdm bar with step, loss, img/s and
  ETA when stdout is a terminal, otherwise about four plain lines per loop
  (logs and CI stay readable).
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Mapping, Optional

import jax
import tqdm


@contextlib.contextmanager
def quiet_native_stderr():
  """Hides what is written to file descriptor 2 inside the block.

  TensorFlow's C++ start-up lines ("All log messages before
  absl::InitializeLog() ...", "oneDNN custom operations are on ...") ignore
  TF_CPP_MIN_LOG_LEVEL; the CLI imports the library inside this block, unless
  TF_CPP_MIN_LOG_LEVEL is set to 0. A Python exception raised inside still
  prints normally (the descriptor is restored first).
  """
  if os.environ.get('TF_CPP_MIN_LOG_LEVEL', '0') in ('', '0'):
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  os.close(devnull)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def _main() -> bool:
  return jax.process_index() == 0


def header(text: str) -> None:
  if _main():
    print(text, flush=True)


def line(text: str) -> None:
  if _main():
    print(text, flush=True)


def _eta(seconds: float) -> str:
  seconds = int(max(0, seconds))
  h, rem = divmod(seconds, 3600)
  return f'{h}:{rem // 60:02d}:{rem % 60:02d}'


class Progress:
  """A training loop's progress: a bar on a terminal, else plain lines."""

  def __init__(self, total: int, initial: int = 0, desc: str = '',
               lines: int = 4, stream=None):
    self.total, self.step, self.desc = int(total), int(initial), desc
    # Without a terminal: about `lines` lines per loop, and the last step.
    self.every = max(1, (self.total - self.step) // max(1, lines))
    self.next_line = self.step + self.every
    self.stream = stream or sys.stdout
    self.enabled = _main()
    self.bar: Optional[tqdm.tqdm] = None
    self.t0, self.start = time.perf_counter(), int(initial)
    if self.enabled and self.stream.isatty():
      self.bar = tqdm.tqdm(total=self.total, initial=self.step, desc=desc,
                           file=self.stream, dynamic_ncols=True,
                           leave=False)

  def update(self, step: int, values: Mapping[str, float]) -> None:
    """Called at log steps with the interval's means (loss, img/s, ...)."""
    if not self.enabled:
      return
    shown = {k: f'{v:.4g}' for k, v in values.items()}
    if self.bar is not None:
      self.bar.update(step - self.step)
      self.bar.set_postfix(shown, refresh=True)
    elif step >= self.next_line or step == self.total:
      self.next_line = step + self.every
      per_step = (time.perf_counter() - self.t0) / max(step - self.start, 1)
      text = '  '.join(f'{k} {v}' for k, v in shown.items())
      print(f'  {self.desc}step {step}/{self.total}  {text}  ETA '
            f'{_eta(per_step * (self.total - step))}', file=self.stream,
            flush=True)
    self.step = step

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
      self.bar = None
