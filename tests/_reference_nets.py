"""The built-in families as they were hand-written before issue 22: a test
oracle only.

Until issue 22 each built-in family existed twice: this hand-written layer
list (then `wt_jax/nets/architectures.py`) and the Flax modules. Now the library
has only the modules (`wt_jax.nets.families`) and traces them like any
registered network; this copy stays in the tests so that
`tests/test_families.py` can prove the trace gives exactly the description
the library used before (groups, uniform widths, layers, ties), for every
family at several widths and depths.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from wt_jax.errors import ArchError
from wt_jax.nets.graph import Layer, conv_out


@dataclasses.dataclass(frozen=True)
class Arch:
  """A network family member: everything but its widths."""
  name: str
  family: str  # 'resnet' | 'mobilenet_v2' | 'custom'
  block: str  # 'basic' | 'bottleneck' | 'inverted_residual'
  stem: str  # 'imagenet' (7x7/2 + max-pool; MBv2: 3x3/2) | 'cifar' (3x3/1)
  depth: tuple[int, ...]  # blocks per stage
  stage_widths: tuple[int, ...]  # base stream width per stage
  strides: tuple[int, ...]  # stride of each stage's first block
  stem_width: int
  expansion: tuple[int, ...] = ()  # MobileNetV2: expansion ratio per stage
  head_width: int = 0  # MobileNetV2: last 1x1 conv

  @property
  def num_stages(self) -> int:
    return len(self.depth)

  @property
  def inner_per_block(self) -> int:
    """Number of per-block groups in a block of stage s (ResNet)."""
    return {'basic': 1, 'bottleneck': 2}.get(self.block, 1)


_RESNET_IMAGENET = dict(family='resnet', stem_width=64,
                        strides=(1, 2, 2, 2))
_BASIC = dict(block='basic', stage_widths=(64, 128, 256, 512))
_BOTTLENECK = dict(block='bottleneck', stage_widths=(256, 512, 1024, 2048))
_CIFAR_RESNET = dict(family='resnet', block='basic', stem='cifar',
                     stem_width=16, stage_widths=(16, 32, 64),
                     strides=(1, 2, 2))
# (t, c, n, s) of Sandler et al. 2018, Table 2.
_MBV2_TABLE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
_MBV2 = dict(family='mobilenet_v2', block='inverted_residual', stem_width=32,
             head_width=1280, expansion=tuple(t for t, _, _, _ in _MBV2_TABLE),
             stage_widths=tuple(c for _, c, _, _ in _MBV2_TABLE),
             depth=tuple(n for _, _, n, _ in _MBV2_TABLE))

_REGISTRY: dict[str, dict] = {}
for _depth_name, _depth, _kind in (('18', (2, 2, 2, 2), _BASIC),
                                   ('34', (3, 4, 6, 3), _BASIC),
                                   ('50', (3, 4, 6, 3), _BOTTLENECK),
                                   ('101', (3, 4, 23, 3), _BOTTLENECK)):
  _REGISTRY['resnet' + _depth_name] = dict(
      _RESNET_IMAGENET, **_kind, depth=_depth, stem='imagenet')
  _REGISTRY['resnet' + _depth_name + '_cifar'] = dict(
      _RESNET_IMAGENET, **_kind, depth=_depth, stem='cifar')
for _n in (20, 32, 44, 56, 110):
  _REGISTRY[f'resnet{_n}_cifar'] = dict(_CIFAR_RESNET,
                                        depth=((_n - 2) // 6,) * 3)
_REGISTRY['mobilenet_v2'] = dict(_MBV2, stem='imagenet',
                                 strides=tuple(s for *_, s in _MBV2_TABLE))
# CIFAR variant: stem stride 1 and the second stage's stride 1 (32x32 input).
_REGISTRY['mobilenet_v2_cifar'] = dict(
    _MBV2, stem='cifar', strides=(1, 1, 2, 2, 1, 2, 1))
# Tiny members for tests and the CPU quickstart.
_REGISTRY['resnet_tiny'] = dict(family='resnet', block='basic', stem='cifar',
                                stem_width=8, stage_widths=(8, 16),
                                strides=(1, 2), depth=(2, 2))
_REGISTRY['resnet_bottleneck_tiny'] = dict(
    family='resnet', block='bottleneck', stem='cifar', stem_width=8,
    stage_widths=(16, 32), strides=(1, 2), depth=(2, 2))
_REGISTRY['mobilenet_v2_tiny'] = dict(
    family='mobilenet_v2', block='inverted_residual', stem='cifar',
    stem_width=8, head_width=32, expansion=(1, 4, 4), stage_widths=(8, 16, 24),
    depth=(1, 2, 2), strides=(1, 2, 2))

NAMES = tuple(_REGISTRY)  # the built-in architectures


def get_arch(name: str, depth: Optional[Sequence[int]] = None) -> Arch:
  """Returns the architecture `name`, optionally with other blocks per stage."""
  arch = Arch(name=name, **_REGISTRY[name])
  if depth:
    depth = tuple(depth)
    if (len(depth) != arch.num_stages or
        not all(isinstance(d, int) and d >= 1 for d in depth)):
      raise ArchError(
          f'depth={depth!r} for arch={name!r}: expected {arch.num_stages} '
          f'integers >= 1 (blocks per stage), e.g. {arch.depth}')
    arch = dataclasses.replace(arch, depth=depth)
  return arch



@dataclasses.dataclass(frozen=True)
class Group:
  """One channel group of a width vector."""
  name: str
  kind: str  # 'stem' | 'stream' | 'block' | 'head'
  stage: Optional[int] = None  # 1-based; None for stem and head
  block: Optional[int] = None  # 1-based; None unless kind == 'block'
  position: str = ''  # role inside the block: 'conv1', 'conv2', 'expand'


def block_positions(arch: Arch, stage: int) -> tuple[str, ...]:
  """The per-block group positions of a block of `stage` (1-based)."""
  if arch.family == 'resnet':
    return ('conv1', 'conv2')[:arch.inner_per_block]
  return ('expand',) if arch.expansion[stage - 1] != 1 else ()


def groups(arch: Arch) -> tuple[Group, ...]:
  """The channel groups of `arch`, in network order."""
  out = [Group('stem', 'stem')]
  for s, n in enumerate(arch.depth, start=1):
    if arch.family == 'resnet':
      out.append(Group(f'stage{s}', 'stream', s))
    for b in range(1, n + 1):
      for pos in block_positions(arch, s):
        out.append(Group(f'stage{s}/block{b}/{pos}', 'block', s, b, pos))
    if arch.family == 'mobilenet_v2':
      out.append(Group(f'stage{s}', 'stream', s))
  if arch.family == 'mobilenet_v2':
    out.append(Group('head', 'head'))
  return tuple(out)


def make_divisible(value: float, divisor: int = 8,
                   min_value: Optional[int] = None) -> int:
  """Rounds to a multiple of `divisor`, never below 90% of `value`.

  The MobileNetV2 width-multiplier rule (and torchvision's), used for every
  family's uniform widths.
  """
  min_value = divisor if min_value is None else min_value
  new = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if new < 0.9 * value:
    new += divisor
  return int(new)


def uniform_values(arch: Arch, width_mult: float = 1.0,
                   divisor: int = 8) -> tuple[int, ...]:
  """Uniform widths of `arch` at `width_mult`, in `groups(arch)` order."""
  if not width_mult > 0:
    raise ArchError(f'width_mult={width_mult!r}: must be > 0')
  rnd = lambda c: make_divisible(c * width_mult, divisor)
  vals = {'stem': rnd(arch.stem_width)}
  if arch.family == 'mobilenet_v2':
    vals['head'] = make_divisible(arch.head_width * max(1.0, width_mult),
                                  divisor)
  prev = vals['stem']
  for s, n in enumerate(arch.depth, start=1):
    stream = rnd(arch.stage_widths[s - 1])
    vals[f'stage{s}'] = stream
    for b in range(1, n + 1):
      if arch.family == 'resnet':
        inner = (stream if arch.block == 'basic' else
                 rnd(arch.stage_widths[s - 1] // 4))
        for pos in block_positions(arch, s):
          vals[f'stage{s}/block{b}/{pos}'] = inner
      elif arch.expansion[s - 1] != 1:
        block_in = prev if b == 1 else stream
        # torchvision: hidden_dim = round(inp * expand_ratio) of rounded inp.
        vals[f'stage{s}/block{b}/expand'] = int(
            round(block_in * arch.expansion[s - 1]))
    prev = stream
  return tuple(vals[g.name] for g in groups(arch))


def shortcut_is_projection(arch: Arch, stride: int, in_width: int,
                           out_width: int) -> bool:
  """ResNet: a 1x1 projection shortcut iff the shape changes."""
  return stride != 1 or in_width != out_width


@dataclasses.dataclass
class _Layers:
  """The layer list being built, and the spatial size it has reached."""
  w: dict  # group -> width
  size: int
  out: list = dataclasses.field(default_factory=list)

  def add(self, name, kind, k, stride, src, dst, path, bn, *, cin=None,
          cout=None):
    """A layer from group `src` to `dst` (None: constant `cin` / `cout`)."""
    new = conv_out(self.size, stride)
    self.out.append(Layer(
        name, kind, k, stride, self.w[src] if cin is None else cin,
        self.w[dst] if cout is None else cout, self.size, new, src, dst,
        tuple(path), None if bn is None else tuple(bn), bias=kind == 'fc'))
    self.size = new


def _resnet_block(b: _Layers, arch: Arch, s: int, blk: int, block_in: str):
  stream, pre, p = f'stage{s}', f'stage{s}/block{blk}', (f'stage{s}',
                                                          f'block{blk}')
  stride = arch.strides[s - 1] if blk == 1 else 1
  in_size = b.size
  inner = [f'{pre}/{pos}' for pos in block_positions(arch, s)]
  if arch.block == 'basic':
    chain = [(3, stride, inner[0]), (3, 1, stream)]
  else:  # torchvision v1.5: the stride sits on the 3x3 conv
    chain = [(1, 1, inner[0]), (3, stride, inner[1]), (1, 1, stream)]
  src = block_in
  for i, (k, st, dst) in enumerate(chain, start=1):
    b.add(f'{pre}/conv{i}', 'conv', k, st, src, dst, p + (f'conv{i}',),
          p + (f'bn{i}',))
    src = dst
  if shortcut_is_projection(arch, stride, b.w[block_in], b.w[stream]):
    end, b.size = b.size, in_size
    b.add(f'{pre}/shortcut', 'conv', 1, stride, block_in, stream,
          p + ('shortcut_conv',), p + ('shortcut_bn',))
    assert b.size == end


def _inverted_residual(b: _Layers, arch: Arch, s: int, blk: int,
                       block_in: str):
  stream, pre, p = f'stage{s}', f'stage{s}/block{blk}', (f'stage{s}',
                                                          f'block{blk}')
  hidden = block_in
  if arch.expansion[s - 1] != 1:
    hidden = f'{pre}/expand'
    b.add(f'{pre}/expand', 'conv', 1, 1, block_in, hidden,
          p + ('expand_conv',), p + ('expand_bn',))
  b.add(f'{pre}/depthwise', 'depthwise', 3,
        arch.strides[s - 1] if blk == 1 else 1, hidden, hidden,
        p + ('dw_conv',), p + ('dw_bn',))
  b.add(f'{pre}/project', 'conv', 1, 1, hidden, stream,
        p + ('project_conv',), p + ('project_bn',))


def layers(arch: Arch, values: Sequence[int], resolution: int,
           num_classes: int, in_channels: int = 3) -> tuple[Layer, ...]:
  """The layer graph of `arch` with widths `values` (in `groups` order)."""
  b = _Layers(dict(zip((g.name for g in groups(arch)),
                       (int(v) for v in values))), resolution)
  stem_k, stem_s = ((7, 2) if arch.family == 'resnet' else (3, 2)
                    ) if arch.stem == 'imagenet' else (3, 1)
  b.add('stem/conv', 'conv', stem_k, stem_s, None, 'stem', ('stem', 'conv'),
        ('stem', 'bn'), cin=in_channels)
  if arch.family == 'resnet' and arch.stem == 'imagenet':
    b.size = conv_out(b.size, 2)  # 3x3/2 max-pool
  block = _resnet_block if arch.family == 'resnet' else _inverted_residual
  prev = 'stem'
  for s, n in enumerate(arch.depth, start=1):
    for blk in range(1, n + 1):
      block(b, arch, s, blk, prev if blk == 1 else f'stage{s}')
    prev = f'stage{s}'
  if arch.family == 'mobilenet_v2':
    b.add('head/conv', 'conv', 1, 1, prev, 'head', ('head', 'conv'),
          ('head', 'bn'))
    prev = 'head'
  b.size = 1  # global average pool
  b.add('fc', 'fc', 1, 1, prev, None, ('fc',), None, cout=num_classes)
  return tuple(b.out)


def identity_ties(arch: Arch, values: Sequence[int]) -> tuple[tuple[str, str],
                                                              ...]:
  """Pairs of distinct groups summed by an identity shortcut.

  Only ResNet's first block of a stage can add two different groups (the
  previous stream, or the stem, into this stage's stream) without a
  projection; every other residual add sums a group with itself. A
  registered network adds only a group to itself (`tracing`).
  """
  if arch.family != 'resnet':
    return ()
  w = dict(zip((g.name for g in groups(arch)), values))
  ties = []
  prev = 'stem'
  for s in range(1, arch.num_stages + 1):
    if not shortcut_is_projection(arch, arch.strides[s - 1], w[prev],
                                  w[f'stage{s}']):
      ties.append((prev, f'stage{s}'))
    prev = f'stage{s}'
  return tuple(ties)


def default_resolution(arch: Arch) -> int:
  return 224 if arch.stem == 'imagenet' else 32
