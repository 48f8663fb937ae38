"""Every path a run writes under its workdir, in one place.

    <workdir>/
      .lock                         the running process (`Lock`)
      config.json                   the run's config (the last run's)
      widths/<name>.json            width vectors (`WIDTH_FILES`)
      optimize/                     the width optimizer on the projected problem
      optimize_direct/              the width optimizer on the original problem
        summary.json, history.json, train/ (its training, as below)
      transfer/                     the transfer step's home
      train/<arm>/seed_<s>/         final training of one arm and seed
        final.json
      timing.json                   where the last computing run's time went
      results.json, results.md      the report
      widths.png, overhead.png
      superseded/<step>-<time>/     a recomputed step's old outputs

    a training directory (train/<arm>/seed_<s>/, <optimizer dir>/train/):
      checkpoints/                  orbax checkpoints
        structure.json              the run they belong to
      metrics.jsonl                 one JSON record per line
      TensorBoard events

    a step's home (each directory above that a step writes):
      fingerprint.json, outputs.json  its inputs' record and its manifest

The pipeline writes these, the report and experiments/ read them; none of
them spells a name itself: `Workdir` gives the paths under the root, the
functions below those inside an optimizer's, a training's or a step's
directory (`train.paths` and `result` re-export the names they use).
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import tempfile
import time
from typing import Optional

from absl import logging

from wt_jax.errors import WorkdirLockedError
from wt_jax.util import files

# Where each width vector is born (the stage that writes it).
WIDTH_FILES = {
    'uniform': 'the original network at config.width_mult (pipeline.run)',
    'projected_uniform': 'the projected network (pipeline.run)',
    'projected_optimized': 'stage optimize',
    'transferred': 'stage transfer',
    'direct_optimized': 'stage optimize_direct',
    'direct': 'stage optimize_direct, FLOPs-matched',
}
ARMS = ('transferred', 'uniform', 'direct')  # trained arms, in stage order
# The report's files, by what they hold (`Workdir.report`).
REPORT_FILES = {'json': 'results.json', 'markdown': 'results.md',
                'widths_plot': 'widths.png', 'overhead_plot': 'overhead.png'}
LOCK_FILE = '.lock'

# In a width optimizer's directory (`Workdir.optimize`).
SUMMARY_FILE = 'summary.json'  # its result, the completion marker (`result`)
HISTORY_FILE = 'history.json'  # its path through width space
TRAIN_DIR = 'train'  # its training directory

# In a training directory.
METRICS_FILE = 'metrics.jsonl'
CHECKPOINTS_DIR = 'checkpoints'
STRUCTURE_FILE = 'structure.json'  # in CHECKPOINTS_DIR

# In a step's home: its fingerprint (written when it starts) and its
# manifest (written when it ends: the digest of every file it made).
RECORD_FILE = 'fingerprint.json'
MANIFEST_FILE = 'outputs.json'


def _known(name: str, known, what: str) -> str:
  if name not in known:
    raise KeyError(f'unknown {what} file {name!r}; known: {", ".join(known)}')
  return name


def summary(optimizer_dir: str) -> str:
  """A width optimizer's result file (its completion marker)."""
  return files.join(optimizer_dir, SUMMARY_FILE)


def history(optimizer_dir: str) -> str:
  """A width optimizer's path through width space."""
  return files.join(optimizer_dir, HISTORY_FILE)


def optimizer_train(optimizer_dir: str) -> str:
  """The training directory of a width optimizer (its checkpoints)."""
  return files.join(optimizer_dir, TRAIN_DIR)


def step_record(home: str) -> str:
  return files.join(home, RECORD_FILE)


def step_manifest(home: str) -> str:
  return files.join(home, MANIFEST_FILE)


@dataclasses.dataclass(frozen=True)
class Workdir:
  """The layout of one run's output directory (local or gs://...)."""
  root: str

  def path(self, *parts: str) -> str:
    return files.join(self.root, *parts)

  def name(self, path: str) -> str:
    """`path`'s name relative to the workdir ('widths/uniform.json')."""
    path = str(path)
    if '://' in self.root:
      return path[len(self.root.rstrip('/')):].lstrip('/')
    return os.path.relpath(path, self.root)

  @property
  def config(self) -> str:
    return self.path('config.json')

  def widths(self, name: str) -> str:
    return self.path('widths', f'{_known(name, WIDTH_FILES, "width")}.json')

  def optimize(self, direct: bool = False) -> str:
    """The width optimizer's directory (projected, or direct)."""
    return self.path('optimize_direct' if direct else 'optimize')

  @property
  def transfer(self) -> str:
    """The transfer step's home."""
    return self.path('transfer')

  def train(self, arm: str, seed: int) -> str:
    return self.path('train', arm, f'seed_{int(seed)}')

  def final(self, arm: str, seed: int) -> str:
    return files.join(self.train(arm, seed), 'final.json')

  @property
  def timing(self) -> str:
    """Where the last computing run's wall time went (`pipeline.run`)."""
    return self.path('timing.json')

  def report(self, kind: str) -> str:
    """One of the report's files: 'json', 'markdown', 'widths_plot' or
    'overhead_plot' (`REPORT_FILES`)."""
    return self.path(REPORT_FILES[_known(kind, REPORT_FILES, 'report')])

  def superseded(self, name: str) -> str:
    """Where a recomputed step's old outputs go (`reuse`)."""
    return self.path('superseded', name)


class Lock:
  """One run per workdir: `<workdir>/.lock` holds the owner's pid and host.

  `acquire` creates the file atomically, whole (written to a temporary file,
  then hard-linked to `.lock`, which fails if it exists), so a lock file is
  never seen empty. If it exists and names a process on this host that is
  gone, the lock is taken over (with a warning); an unreadable one (empty or
  not JSON: written by something else, or by a writer killed half-way) is
  taken over once it is `UNREADABLE_GRACE_S` old. Otherwise
  `WorkdirLockedError` names the holder, or says that the file is
  unreadable and what to do. Remote workdirs (gs://...) are not locked:
  there is no exclusive create there.
  """

  UNREADABLE_GRACE_S = 60

  def __init__(self, root: str):
    self.root = root
    self.path = files.join(root, LOCK_FILE)
    self.held = False

  def _holder(self) -> Optional[dict]:
    """The holder's record; None if the file is unreadable; {} if gone."""
    try:
      with open(self.path) as f:
        holder = json.load(f)
    except FileNotFoundError:
      return {}
    except (OSError, ValueError):
      return None
    return holder if isinstance(holder, dict) and 'pid' in holder else None

  def _age(self) -> float:
    try:
      return time.time() - os.path.getmtime(self.path)
    except OSError:
      return 0.0

  def _stale(self, holder: Optional[dict]) -> bool:
    if holder is None:
      return self._age() > self.UNREADABLE_GRACE_S
    if holder.get('host') != socket.gethostname():
      return False
    try:
      os.kill(int(holder['pid']), 0)
    except (KeyError, ValueError, TypeError):
      return self._age() > self.UNREADABLE_GRACE_S
    except ProcessLookupError:
      return True
    except PermissionError:
      return False
    return False

  def _create(self, me: dict) -> bool:
    """Creates the lock file whole; False if it exists. An OSError (disk
    full, ...) names the lock file."""
    try:
      return self._create_or_fail(me)
    except OSError as e:
      if e.filename == self.path or not e.errno:
        raise
      raise type(e)(e.errno, e.strerror, self.path) from e

  def _create_or_fail(self, me: dict) -> bool:
    fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f'{LOCK_FILE}-')
    try:
      with os.fdopen(fd, 'w') as f:
        json.dump(me, f)
      try:
        os.link(tmp, self.path)
        return True
      except FileExistsError:
        return False
      except OSError:  # no hard links here: an exclusive create instead
        try:
          fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
          return False
        with os.fdopen(fd, 'w') as f:
          json.dump(me, f)
        return True
    finally:
      os.unlink(tmp)

  def _locked_error(self, holder: Optional[dict]) -> WorkdirLockedError:
    if holder is None:
      return WorkdirLockedError(
          f'workdir {self.root}: its lock file {self.path} is unreadable '
          f'(empty or not JSON, {self._age():.0f} s old), so another run may '
          'be starting there right now; if no other run uses this workdir, '
          f'delete {self.path} and re-run (after '
          f'{self.UNREADABLE_GRACE_S} s an unreadable lock is taken over)')
    return WorkdirLockedError(
        f'workdir {self.root} is in use by pid {holder.get("pid")} on '
        f'{holder.get("host")} since {holder.get("since")} (lock file '
        f'{self.path}); wait for that run to end, or delete the lock '
        'file if that process is gone')

  def acquire(self) -> None:
    if '://' in self.root:
      return
    os.makedirs(self.root, exist_ok=True)
    me = {'pid': os.getpid(), 'host': socket.gethostname(),
          'since': time.strftime('%Y-%m-%d %H:%M:%S')}
    while not self._create(me):
      holder = self._holder()
      if holder == {}:  # released meanwhile
        continue
      if not self._stale(holder):
        raise self._locked_error(holder) from None
      logging.warning('Taking over the lock of a run that is gone: %s '
                      '(%s).', self.path, holder or 'unreadable')
      os.unlink(self.path)
    self.held = True

  def release(self) -> None:
    holder = self._holder() if self.held else None
    if holder and holder.get('pid') == os.getpid():
      os.unlink(self.path)
    self.held = False

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()
