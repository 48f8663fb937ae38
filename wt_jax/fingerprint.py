"""Fingerprints: exactly the inputs a stage output was computed from.

A fingerprint is a JSON record of the config fields a step reads (dotted
paths and their values) and the SHA-256 of every upstream file it consumes.
The pipeline writes a step's record into its directory when the step starts
(so a checkpoint directory is tagged with its inputs from the first save)
and compares it on a re-run: equal records mean the output (or the
checkpoint to resume from) was made from the same inputs; otherwise the
step is recomputed, and `changes` names what differs.

Fields that cannot change a result are never part of a fingerprint
(`RESULT_FREE`: logging and checkpoint cadence, the in-memory cache, the
stage and seed selection, multi-host set-up, and whether seeds train in one
program, `train.batch_seeds`, which like the device count changes a result
only to float tolerance; each seed's checkpoints are the same either way).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping, Optional

from wt_jax import files

RESULT_FREE = frozenset({
    'train.log_every', 'train.checkpoint_every', 'train.keep_checkpoints',
    'train.eval_every', 'data.cache', 'distributed', 'stages', 'seeds',
    'train.batch_seeds',
})


def flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    path = f'{prefix}{key}'
    if isinstance(value, Mapping):
      out.update(flatten(value, path + '.'))
    else:
      out[path] = list(value) if isinstance(value, tuple) else value
  return out


def config_fields(config, prefixes: Iterable[str],
                  exclude: Iterable[str] = ()) -> dict[str, Any]:
  """The config's leaves under `prefixes` (dotted), minus RESULT_FREE and
  `exclude`, as {dotted path: value}."""
  flat = flatten(config.to_dict())
  prefixes = tuple(prefixes)
  skip = RESULT_FREE | set(exclude)
  return {k: v for k, v in sorted(flat.items())
          if k not in skip and any(k == p or k.startswith(p + '.')
                                   for p in prefixes)}


def file_digest(path: str) -> Optional[str]:
  """SHA-256 of a file's bytes (None if it does not exist)."""
  if not files.exists(path):
    return None
  return hashlib.sha256(files.read_bytes(path)).hexdigest()


def record(fields: Mapping[str, Any], upstream: Iterable[str] = (),
           **extra: Any) -> dict[str, Any]:
  """The fingerprint of a step: its fields, upstream digests and extras."""
  return {'fields': dict(fields), **extra,
          'upstream': {p: file_digest(p) for p in upstream}}


def digest(rec: Mapping[str, Any]) -> str:
  return hashlib.sha256(json.dumps(rec, sort_keys=True, default=str)
                        .encode()).hexdigest()[:16]


def _field_changes(old: Mapping[str, Any], new: Mapping[str, Any]
                   ) -> list[str]:
  """Changed field paths; a block present on one side only is one entry."""
  absent = '<absent>'
  keys = sorted(k for k in set(old) | set(new)
                if old.get(k, absent) != new.get(k, absent))
  blocks = {}
  for k in keys:
    blocks.setdefault(k.split('.')[0] if '.' in k else k, []).append(k)
  out = []
  for block, ks in blocks.items():
    in_old = any(k.startswith(block + '.') for k in old)
    in_new = any(k.startswith(block + '.') for k in new)
    if ks[0] != block and in_old != in_new:
      out.append(f'{block}: {"added" if in_new else "dropped"}')
      continue
    out += [f'{k}: {old.get(k, absent)!r} -> {new.get(k, absent)!r}'
            for k in ks]
  return out


def changes(old: Optional[Mapping[str, Any]], new: Mapping[str, Any]
            ) -> list[str]:
  """What differs between two records: field paths, 'upstream <file>', or
  the extra keys; ['(no fingerprint)'] when there is no old record."""
  if old is None:
    return ['(no fingerprint)']
  out = _field_changes(old.get('fields', {}), new.get('fields', {}))
  old_u, new_u = old.get('upstream', {}), new.get('upstream', {})
  for k in sorted(set(old_u) | set(new_u)):
    if old_u.get(k) != new_u.get(k):
      out.append(f'upstream {k}')
  for k in sorted((set(old) | set(new)) - {'fields', 'upstream'}):
    if old.get(k) != new.get(k):
      out.append(f'{k}: {old.get(k)!r} -> {new.get(k)!r}')
  return out
