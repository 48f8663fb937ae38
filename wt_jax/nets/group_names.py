"""Group names and what they say: a group's role, and the groups at a depth.

A network's group names give each group its role for extrapolation
(`role` -> `Group`): `stageS` is a stage's stream, `stageS/...` a stage-level
group, `stageS/blockB/...` a per-block group; 'stem' and 'head' are
themselves; any other name is a group of its own ('other'). `restack` lists
a registered network's groups at another depth: each stage's blocks
repeated or dropped, a new block at the widths of the stage's last
registered block.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Optional

STAGE = re.compile(r'^stage(\d+)(?:/(.+))?$')
BLOCK = re.compile(r'^stage(\d+)/block(\d+)/(.+)$')


@dataclasses.dataclass(frozen=True)
class Group:
  """One channel group of a width vector."""
  name: str
  kind: str  # 'stem' | 'stream' | 'block' | 'head' | 'other'
  stage: Optional[int] = None  # 1-based; None for stem and head
  block: Optional[int] = None  # 1-based; None unless kind == 'block'
  position: str = ''  # role inside the block: 'conv1', 'conv2', 'expand'


def role(name: str) -> Group:
  """The role of a group, read off its name (see the module doc)."""
  block = BLOCK.match(name)
  if block:
    return Group(name, 'block', int(block[1]), int(block[2]), block[3])
  stage = STAGE.match(name)
  if stage:
    return Group(name, 'stream', int(stage[1]), None, stage[2] or '')
  if name in ('stem', 'head'):
    return Group(name, name)
  return Group(name, 'other', position=name)


def restack(base, registered: tuple[int, ...], depth: tuple[int, ...]):
  """The registered groups with each stage's blocks repeated or dropped."""
  blocks: dict[int, dict[int, list]] = {}
  for name, width in base:
    m = BLOCK.match(name)
    if m:
      blocks.setdefault(int(m[1]), {}).setdefault(int(m[2]), []).append(
          (m[3], width))
  out, done = [], set()
  for name, width in base:
    m = BLOCK.match(name)
    if not m:
      out.append((name, width))
      continue
    s = int(m[1])
    if s in done:
      continue
    done.add(s)
    last = registered[s - 1]
    for b in range(1, depth[s - 1] + 1):
      for pos, w in blocks[s].get(min(b, last), ()):
        out.append((f'stage{s}/block{b}/{pos}', w))
  return tuple(out)
