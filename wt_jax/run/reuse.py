"""Reuse, resume or recompute: what a step's files in the workdir say.

A step (`stages.Step`) is made from exactly its inputs when its fingerprint
(`<home>/fingerprint.json`, written when it starts) equals the current one,
and finished when its manifest (`<home>/outputs.json`, written when it ends:
the digest of every file it made) is there. `decide` reads both:

* 'reuse': same inputs, every file of the manifest there and unchanged;
* 'resume': same inputs, not finished (training resumes from its last
  intact checkpoint);
* 'recompute': other inputs, or a file it made missing, changed or corrupt
  (`begin` moves the old outputs to `workdir/superseded/<step>-<time>/`);
* 'new': nothing of it there.

`begin` acts on that decision and says it in one line; `write_manifest`
ends a computed step; `check_upstream` refuses, before any work, a
selected stage whose input no selected stage makes and the workdir does
not hold; `fresh_outputs` is what the report may show.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from absl import logging

from wt_jax.run.stages import Run
from wt_jax.run.stages import STAGES
from wt_jax.run.stages import Step
from wt_jax.util import console
from wt_jax.util import files
from wt_jax.util import fingerprint
from wt_jax.util import validation
from wt_jax.util import workdir as workdir_lib


def _read_json(path: str, what: str) -> Optional[dict]:
  try:
    return files.read_json(path)
  except FileNotFoundError:
    return None
  except ValueError:
    logging.warning('Corrupt %s %s: ignoring it.', what, path)
    return None


def _read_record(step: Step) -> Optional[dict]:
  return fingerprint.upgrade(_read_json(step.record_path, 'fingerprint'))


def _corrupt(step: Step) -> list[str]:
  """Output files that exist but do not parse."""
  bad = []
  for path in step.outputs:
    if path.endswith('.json') and files.exists(path):
      try:
        files.read_json(path)
      except ValueError:
        bad.append(path)
  return bad


def _made_files(r: Run, step: Step) -> dict[str, str]:
  """{workdir-relative name: path} of what a finished step made: its
  outputs and every file directly in its home but its fingerprint, its
  manifest and TensorBoard's event files (not its subdirectories, which
  hold checkpoints)."""
  paths = {r.workdir.name(p): p for p in step.outputs}
  for name in files.list_files(step.home):
    if name in (workdir_lib.RECORD_FILE, workdir_lib.MANIFEST_FILE) or (
        name.startswith(('events.out.tfevents.', '.tmp-'))):
      continue
    path = files.join(step.home, name)
    paths[r.workdir.name(path)] = path
  return paths


def write_manifest(r: Run, step: Step) -> None:
  if r.is_main:
    files.write_json(step.manifest_path,
                     fingerprint.manifest(_made_files(r, step)))


def _damage(r: Run, step: Step) -> list[str]:
  """Why a step made from the same inputs cannot be reused as it is: files
  of its manifest that are missing, corrupt (an output that does not
  parse) or changed; without a manifest (a step that has not finished, or
  made before manifests), output files that do not parse."""
  corrupt = [r.workdir.name(p) for p in _corrupt(step)]
  stored = _read_json(step.manifest_path, 'manifest')
  if stored is None:
    return [f'corrupt {name}' for name in corrupt]
  paths = {name: r.workdir.path(*name.split('/')) for name in stored}
  return [f'{"corrupt" if name in corrupt else state} {name}'
          for state, name in fingerprint.damaged(stored, paths)]


def decide(r: Run, step: Step) -> tuple[str, list[str]]:
  """What to do with one step, and why: 'reuse' (same inputs, every file
  it made there and intact), 'resume' (same inputs, not finished), 'new'
  (nothing of it there) or 'recompute' (other inputs, or a file it made is
  missing, changed or corrupt)."""
  stored = _read_record(step)
  if stored != step.inputs:
    if stored is None and not files.exists(step.home) and not any(
        files.exists(p) for p in step.owned):
      return 'new', []
    return 'recompute', fingerprint.changes(stored, step.inputs)
  damage = _damage(r, step)
  if damage:
    return 'recompute', damage
  if all(files.exists(p) for p in step.outputs):
    return 'reuse', []
  return 'resume', []


def is_fresh(r: Run, step: Step) -> bool:
  """Outputs present and intact, made from exactly these inputs."""
  return decide(r, step)[0] == 'reuse'


def _supersede(r: Run, step: Step) -> Optional[str]:
  """Moves a step's old outputs to workdir/superseded/<step>-<time>/."""
  paths = [p for p in (step.home,) + step.owned if files.exists(p)]
  if not paths or not r.is_main:
    return None
  dest = r.workdir.superseded(step.key.replace('/', '-') + '-' +
                              time.strftime('%Y%m%d-%H%M%S'))
  for p in paths:
    files.move(p, files.join(dest, r.workdir.name(p)))
  return dest


def begin(r: Run, step: Step) -> bool:
  """Decides whether one step is reused, resumed or recomputed, and says
  which in one line (moving superseded outputs away); True: compute it."""
  action, why = decide(r, step)
  if action == 'reuse':
    if not files.exists(step.manifest_path):  # finished before manifests
      write_manifest(r, step)
    console.line(f'  {step.key}: reused (made from the same inputs)')
    return False
  if action == 'resume' and files.exists(step.home):
    console.line(f'  {step.key}: resuming')
  if action == 'recompute':
    dest = _supersede(r, step)
    console.line(f'  {step.key}: recomputing ({"; ".join(why)})'
                 + (f'; old outputs moved to {dest}' if dest else ''))
  if r.is_main:
    files.write_json(step.record_path, step.inputs)
  return True


def _unmade(r: Run, name: str) -> Optional[tuple[Step, str, list[str]]]:
  """The first step of stage `name` that is not made from this config's
  inputs: (step, 'new' | 'resume' | 'recompute', why); None if all are."""
  for step in STAGES[name].steps(r):
    action, why = decide(r, step)
    if action != 'reuse':
      return step, action, why
  return None


def check_upstream(r: Run) -> None:
  """Every selected stage's upstream stage (`Stage.needs`) is selected too,
  or its outputs are there, made from this config's inputs; else exit 2,
  before any work, naming the stages to add."""
  selected = tuple(r.config.stages)
  for name in selected:
    need = STAGES[name].needs
    if need is None or need in selected:
      continue
    unmade = _unmade(r, need)
    if unmade is None:
      continue
    step, action, why = unmade
    state = ('made from other inputs (' + '; '.join(why) + ')'
             if action == 'recompute' and why != ['(no fingerprint)']
             else 'not made yet')
    add = [need]  # and the stages above it that are not made either
    while (up := STAGES[add[-1]].needs) and up not in selected and _unmade(
        r, up):
      add.append(up)
    stages = ','.join(s for s in STAGES if s in selected or s in add)
    validation.fail(
        'config.stages', ','.join(selected),
        f'stages whose inputs exist: stage {name} reads what stage {need} '
        f'makes ({", ".join(r.workdir.name(p) for p in step.outputs)}), '
        f'which is {state}; add {" and ".join(reversed(add))} '
        f'(--config.stages={stages})')


def fresh_outputs(r: Run) -> Callable[[str], bool]:
  """A predicate over output paths: made from this run's inputs?"""
  fresh = set()
  for name, stage in STAGES.items():
    try:
      steps = stage.steps(r)
    except (OSError, ValueError):  # an upstream file this run lacks
      continue
    for step in steps:
      if is_fresh(r, step):
        fresh.update(step.outputs + (step.home,))
  return lambda path: path in fresh
