"""Greedy slimming: from the full width down to a MACs target, step by step.

From the full width, `greedy_slim` repeatedly evaluates every candidate that
removes one grid step from one unit (`candidates`), keeps the one with the
best top-1 accuracy on the held-out 'val' split (ties: lower val loss, then
fewer MACs), and stops once its MACs (`cost.macs`) reach the target
(`target_of`). Every accepted step is a record of the history (`history.json`,
written atomically by the caller's `save`); a re-run replays the history and
goes on from its last step.

A candidate whose widths would turn a projection shortcut into an identity
shortcut (a ResNet stream slimmed to exactly the width of the stream before
it, at stride 1) is skipped: the masked network keeps the projection, the
narrower network of `models` would not, so its accuracy would not be that
network's. The unit's next grid level is offered instead.

The val batches candidates are scored on are a fixed, seeded sample of the
whole split (`sample_batches`), so that every class is represented.
"""
from __future__ import annotations

import itertools
import time
from typing import Any, Callable, Mapping, Optional

from absl import logging
import numpy as np

from wt_jax import data
from wt_jax.optimizers.slim_space import SlimSpace

Evaluate = Callable[[list], Mapping[str, Any]]


def candidates(space: SlimSpace, levels) -> list[tuple[int, np.ndarray]]:
  """(unit, levels) of every one-step slimming of `levels`.

  A unit's next grid level that would change the shortcut types is skipped
  (the level after it is offered).
  """
  out = []
  levels = np.asarray(levels, np.int32)
  for u in range(space.num_units):
    for j in range(int(levels[u]) + 1, len(space.grids[u])):
      cand = levels.copy()
      cand[u] = j
      if space.keeps_shortcuts(cand):
        out.append((u, cand))
        break
  return out


def _record(space: SlimSpace, step: int, levels, top1: float, loss: float,
            removed, n_cands: int, eval_macs: int, seconds: float) -> dict:
  """One history record (see `greedy_slim`)."""
  full_macs = int(space.macs(space.widths.array()))
  macs = int(space.macs(space.counts(levels)))
  return dict(step=int(step), macs=macs, macs_fraction=macs / full_macs,
              val_top1=float(top1), val_loss=float(loss),
              widths=space.widths_at(levels).as_dict(),
              levels=[int(x) for x in levels], removed=list(removed),
              candidates=int(n_cands), eval_macs=int(eval_macs),
              eval_seconds=float(seconds))


def _start(space: SlimSpace, evaluate: Evaluate, settings: dict,
           eval_examples: int) -> dict:
  """Record 0: the full network, with the run's settings and units."""
  t0 = time.perf_counter()
  res = evaluate([space.full_levels])
  full_macs = int(space.macs(space.widths.array()))
  rec = _record(space, 0, space.full_levels, res['top1'][0], res['loss'][0],
                [], 1, full_macs * eval_examples, time.perf_counter() - t0)
  rec['settings'] = settings
  rec['units'] = [list(u) for u in space.units]
  return rec


def _replay(space: SlimSpace, history: list, settings: dict,
            target_macs: int) -> list:
  """A stored history, checked against this run and cut at the target."""
  first = history[0]
  if (first.get('widths') != space.widths.as_dict() or
      first.get('settings') != settings):
    raise ValueError(
        'history.json belongs to another slimming run (full widths '
        f'{first.get("widths")}, settings {first.get("settings")}; this '
        f'run: {space.widths.as_dict()}, {settings}); use another workdir '
        'or delete it')
  for i, rec in enumerate(history):
    if rec['macs'] <= target_macs:
      return history[:i + 1]
  return history


def _step(space: SlimSpace, evaluate: Evaluate, history: list,
          eval_examples: int) -> Optional[dict]:
  """The next record: the best one-step slimming (None: all at minimum)."""
  cands = candidates(space, history[-1]['levels'])
  if not cands:
    return None
  t0 = time.perf_counter()
  res = evaluate([c for _, c in cands])
  macs = [int(space.macs(space.counts(c))) for _, c in cands]
  best = max(range(len(cands)), key=lambda i: (
      res['top1'][i], -res['loss'][i], -macs[i], -i))
  unit, levels = cands[best]
  rec = _record(space, len(history), levels, res['top1'][best],
                res['loss'][best], space.units[unit], len(cands),
                sum(macs) * eval_examples, time.perf_counter() - t0)
  logging.info('AutoSlim step %d: slimmed %s -> %d MACs (%.3f of full), '
               'val top1 %.4f (%d candidates).', rec['step'],
               space.unit_label(unit), rec['macs'], rec['macs_fraction'],
               rec['val_top1'], len(cands))
  return rec


def greedy_slim(space: SlimSpace, evaluate: Evaluate, target_macs: int, *,
                history: Optional[list] = None,
                settings: Optional[dict] = None,
                eval_examples: int = 0,
                save: Optional[Callable[[list], None]] = None) -> list:
  """Greedy slimming down to `target_macs`; returns the history.

  `evaluate(list of level vectors) -> {'top1': [n], 'loss': [n]}`.
  `history`: records of an earlier run (same `space` and `settings`) to go
  on from; records past the first one at or below the target are dropped.
  Each record: step, macs, macs_fraction, val_top1, val_loss, widths,
  levels, removed (the groups slimmed at this step), candidates (evaluated
  at this step), eval_macs (candidate MACs x `eval_examples`, summed),
  eval_seconds. Record 0 is the full network. `save(history)` is called
  after each record.
  """
  settings = dict(settings or {})
  if history:
    history = _replay(space, list(history), settings, target_macs)
  else:
    history = [_start(space, evaluate, settings, eval_examples)]
    if save:
      save(history)
  while history[-1]['macs'] > target_macs:
    rec = _step(space, evaluate, history, eval_examples)
    if rec is None:
      logging.info('AutoSlim: every unit is at its minimum width; MACs %d > '
                   'target %d.', history[-1]['macs'], target_macs)
      break
    history.append(rec)
    if save:
      save(history)
  return history


def target_of(config, full_macs: int) -> int:
  """The MACs target of `config.autoslim`: target_macs, or target_fraction x
  the full network's MACs when that is 0."""
  ac = config.autoslim
  if int(ac.target_macs) > 0:
    return int(ac.target_macs)
  return int(np.floor(float(ac.target_fraction) * full_macs))


def take_batches(ds, n: int) -> list:
  """The first `n` numpy batches of `ds` (all of them if n = 0)."""
  it = data.as_numpy(ds)
  return list(itertools.islice(it, n)) if n > 0 else list(it)


def sample_batches(ds, n: int, seed: int = 0) -> list:
  """`n` batches of a random, fixed subset of an eval stream (all if n = 0).

  Eval splits come in index order, which is class order for `folder:` data,
  so the first batches would hold one or two classes. This streams the split
  once and keeps a seeded uniform sample of its real rows (masks preserved,
  padding rows last), so candidates are scored on every class.
  """
  batches = take_batches(ds, 0)
  if n <= 0 or n >= len(batches):
    return batches
  rows = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  real = np.flatnonzero(rows['mask'] > 0)
  size = len(batches[0]['mask'])
  keep = np.sort(np.random.default_rng(seed).permutation(real)[:n * size])
  pad = n * size - len(keep)
  keep = np.concatenate([keep, np.flatnonzero(rows['mask'] == 0)[:pad]])
  return [{k: v[keep[i * size:(i + 1) * size]] for k, v in rows.items()}
          for i in range(n)]
