"""Fingerprints: exactly the inputs a stage output was computed from.

A fingerprint is a JSON record of the config fields a step reads (dotted
paths and their values) and the SHA-256 of every upstream file it consumes,
each named by its path relative to the workdir ('widths/transferred.json')
or by the config field that points to it ('widths_file'): never by an
absolute path, so a workdir reached by a symlink or a relative path, moved
or copied, keeps its fingerprints.
The pipeline writes a step's record into its directory when the step starts
(so a checkpoint directory is tagged with its inputs from the first save)
and compares it on a re-run: equal records mean the output (or the
checkpoint to resume from) was made from the same inputs; otherwise the
step is recomputed, and `changes` names what differs.

When a step finishes, the pipeline writes its *manifest* beside the record
(`manifest`: the SHA-256 of every file the step made, by workdir-relative
name); a step is reused only while every file of its manifest is there with
that digest (`damaged` names those that are not).

Fields that cannot change a result are never part of a fingerprint
(`RESULT_FREE`: logging and checkpoint cadence, the stage and seed
selection, multi-host set-up, where the training split lives
(`data.placement`, `data.device_memory_fraction`: the device gathers the
pixels the host would make), and how steps are grouped into calls and seeds
into programs (`train.steps_per_call`, `train.batch_seeds`), which like the
device count change a result at most to float tolerance; each seed's
checkpoints are the same either way). `data.cache` is not one of them: a
folder read without it is streamed through tf.data, whose augmentation
draws differ from the in-memory path's.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping, Optional

from wt_jax.util import files

RESULT_FREE = frozenset({
    'train.log_every', 'train.checkpoint_every', 'train.keep_checkpoints',
    'train.eval_every', 'distributed', 'stages', 'seeds',
    'train.batch_seeds', 'train.steps_per_call', 'data.placement',
    'data.device_memory_fraction',
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


def record(fields: Mapping[str, Any], upstream: Mapping[str, str] = None,
           **extra: Any) -> dict[str, Any]:
  """The fingerprint of a step: its fields, the digests of its upstream
  files ({name: path}: named workdir-relative, or by their config field) and
  extras."""
  return {'fields': dict(fields), **extra,
          'upstream': {name: file_digest(path)
                       for name, path in (upstream or {}).items()}}


def upgrade(rec: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
  """A record written before upstream files were named workdir-relative
  (their keys were absolute paths of the workdir's `widths/` files), with
  those keys renamed, so that such a workdir is not recomputed."""
  if rec is None or not isinstance(rec.get('upstream'), Mapping):
    return rec
  upstream = {}
  for name, value in rec['upstream'].items():
    head, sep, tail = str(name).rpartition('/widths/')
    upstream['widths/' + tail if sep and head else name] = value
  return {**rec, 'upstream': upstream}


def manifest(paths: Mapping[str, str]) -> dict[str, Optional[str]]:
  """{name: SHA-256} of a finished step's files ({name: path})."""
  return {name: file_digest(path) for name, path in sorted(paths.items())}


def damaged(stored: Mapping[str, Optional[str]], paths: Mapping[str, str]
            ) -> list[tuple[str, str]]:
  """The files of a manifest that are gone or whose bytes changed, as
  ('missing' | 'changed', name); `paths` maps its names to paths."""
  out = []
  for name, digest_ in stored.items():
    now = file_digest(paths[name])
    if now != digest_:
      out.append(('missing' if now is None else 'changed', name))
  return out


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
