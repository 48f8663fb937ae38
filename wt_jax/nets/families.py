"""The built-in families, ResNet and MobileNetV2: Flax modules, registered.

A family is a frozen dataclass: its table (blocks per stage, base widths,
strides, stem) and three methods, `group_names(depth)`, `uniform(depth,
width_mult, divisor)` and `module(widths, num_classes, depth, dtype)`. Every
built-in name (`NAMES`) is registered with `custom_archs` exactly as a
user's network is (`register_arch`), so its layer graph, channel groups,
identity-shortcut ties and masks come from a trace of its module
(`tracing`), never from a second, hand-written description. What a family
adds to a user's registration: its uniform-width rule (MobileNetV2's
expansion widths follow the rounded block input, its last conv never
shrinks) and its layer names (`stage2/block1/shortcut`, not `..._conv`).

Groups:
* ResNet: `stem`; one residual stream per stage, `stageS` (outputs of every
  block's last conv and the projection shortcut); the inner conv outputs of
  each block, `stageS/blockB/conv1` (Bottleneck also `.../conv2`).
* MobileNetV2: `stem` (first conv); each block's expansion conv,
  `stageS/blockB/expand`, with its depthwise conv tied to it (blocks with
  expansion ratio 1 have no expansion conv: their depthwise conv is tied to
  the block's input group); each stage's projected output stream `stageS`;
  and `head`, the last 1x1 conv (1280 at multiplier 1).

Shortcuts: a ResNet block uses a 1x1 projection shortcut iff its stride is
not 1 or its input width differs from its stream width (the torchvision
rule, applied to the actual widths). So ResNet-18's first stage has identity
shortcuts at uniform widths, and `stem` and `stage1` are then tied (the
trace finds the add). A MobileNetV2 block has a residual add iff it is not
the first of its stage. The CIFAR ResNets (20, 32, 44, 56, 110) use
projection shortcuts (He et al.'s option B) where the shape changes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax.numpy as jnp

from wt_jax.nets import custom_archs
from wt_jax.nets.custom_archs import make_divisible

# torchvision's init: He normal on fan-out for convs, BN scale 1, bias 0.
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# Every BatchNorm's running-average momentum (BN recalibration reads a
# batch's statistics back from it: `train.recalibration`).
BN_MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class ResNetFamily:
  """ResNet (BasicBlock or Bottleneck v1.5), ImageNet or CIFAR stem."""
  block: str  # 'basic' | 'bottleneck'
  stem: str  # 'imagenet' (7x7/2 + max-pool) | 'cifar' (3x3/1)
  depth: tuple[int, ...]  # blocks per stage
  stage_widths: tuple[int, ...]  # base stream width per stage
  strides: tuple[int, ...]  # stride of each stage's first block
  stem_width: int
  # Parameter-path leaves renamed in layer names.
  names = {'shortcut_conv': 'shortcut'}

  @property
  def resolution(self) -> int:
    return 224 if self.stem == 'imagenet' else 32

  def positions(self, stage: int) -> tuple[str, ...]:
    return ('conv1', 'conv2')[:1 if self.block == 'basic' else 2]

  def group_names(self, depth) -> tuple[str, ...]:
    out = ['stem']
    for s, n in enumerate(depth, start=1):
      out.append(f'stage{s}')
      out += [f'stage{s}/block{b}/{pos}' for b in range(1, n + 1)
              for pos in self.positions(s)]
    return tuple(out)

  def uniform(self, depth, width_mult: float, divisor: int
              ) -> tuple[int, ...]:
    rnd = lambda c: make_divisible(c * width_mult, divisor)
    vals = {'stem': rnd(self.stem_width)}
    for s, n in enumerate(depth, start=1):
      base = self.stage_widths[s - 1]
      vals[f'stage{s}'] = rnd(base)
      inner = rnd(base) if self.block == 'basic' else rnd(base // 4)
      for b in range(1, n + 1):
        for pos in self.positions(s):
          vals[f'stage{s}/block{b}/{pos}'] = inner
    return tuple(vals[g] for g in self.group_names(depth))

  def act(self, x):
    return nn.relu(x)

  def block_module(self):
    return _BasicBlock if self.block == 'basic' else _Bottleneck

  def module(self, widths, num_classes, depth, dtype=jnp.float32):
    return ResNet(widths=widths, family=self, depth=tuple(depth),
                  num_classes=num_classes, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class MobileNetV2Family:
  """MobileNetV2 (Sandler et al. 2018); ReLU6, ImageNet or CIFAR strides."""
  stem: str  # 'imagenet' (3x3/2) | 'cifar' (3x3/1)
  depth: tuple[int, ...]
  stage_widths: tuple[int, ...]
  strides: tuple[int, ...]
  stem_width: int
  expansion: tuple[int, ...]  # expansion ratio per stage
  head_width: int  # the last 1x1 conv
  names = {'expand_conv': 'expand', 'dw_conv': 'depthwise',
           'project_conv': 'project'}

  @property
  def resolution(self) -> int:
    return 224 if self.stem == 'imagenet' else 32

  def positions(self, stage: int) -> tuple[str, ...]:
    return ('expand',) if self.expansion[stage - 1] != 1 else ()

  def group_names(self, depth) -> tuple[str, ...]:
    out = ['stem']
    for s, n in enumerate(depth, start=1):
      out += [f'stage{s}/block{b}/{pos}' for b in range(1, n + 1)
              for pos in self.positions(s)]
      out.append(f'stage{s}')
    return tuple(out + ['head'])

  def uniform(self, depth, width_mult: float, divisor: int
              ) -> tuple[int, ...]:
    rnd = lambda c: make_divisible(c * width_mult, divisor)
    vals = {'stem': rnd(self.stem_width),
            'head': make_divisible(self.head_width * max(1.0, width_mult),
                                   divisor)}
    prev = vals['stem']
    for s, n in enumerate(depth, start=1):
      stream = vals[f'stage{s}'] = rnd(self.stage_widths[s - 1])
      for b in range(1, n + 1):
        if self.expansion[s - 1] != 1:
          block_in = prev if b == 1 else stream
          # torchvision: hidden_dim = round(inp * expand_ratio), inp rounded.
          vals[f'stage{s}/block{b}/expand'] = int(
              round(block_in * self.expansion[s - 1]))
      prev = stream
    return tuple(vals[g] for g in self.group_names(depth))

  def act(self, x):
    return nn.relu6(x)

  def block_module(self):
    return _InvertedResidual

  def module(self, widths, num_classes, depth, dtype=jnp.float32):
    return MobileNetV2(widths=widths, family=self, depth=tuple(depth),
                       num_classes=num_classes, dtype=dtype)


class _Net(nn.Module):
  """What every module of a family shares: its widths and table."""
  widths: Mapping[str, int]
  family: Any
  depth: tuple[int, ...]
  num_classes: int = 1000
  dtype: Any = jnp.float32

  def child(self, cls, name: str, **kwargs):
    return cls(widths=self.widths, family=self.family, depth=self.depth,
               num_classes=self.num_classes, dtype=self.dtype, name=name,
               **kwargs)

  def conv_bn(self, x, group, conv_name, bn_name, *, kernel, stride, train,
              depthwise=False, act=True):
    p = kernel // 2
    x = nn.Conv(self.widths[group], (kernel, kernel), (stride, stride),
                padding=((p, p), (p, p)), use_bias=False,
                feature_group_count=x.shape[-1] if depthwise else 1,
                kernel_init=conv_init, dtype=self.dtype, name=conv_name)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                     epsilon=1e-5, dtype=self.dtype, name=bn_name)(x)
    return self.family.act(x) if act else x

  def classify(self, x):
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)
    return jnp.asarray(x, jnp.float32)

  def stages(self, x, train, stage_cls):
    prev = 'stem'
    for s in range(1, len(self.depth) + 1):
      x = self.child(stage_cls, f'stage{s}', stage=s, in_group=prev)(x, train)
      prev = f'stage{s}'
    return x


class _Stem(_Net):
  stride: int = 1
  kernel: int = 3
  max_pool: bool = False

  @nn.compact
  def __call__(self, x, train):
    x = self.conv_bn(x, 'stem', 'conv', 'bn', kernel=self.kernel,
                     stride=self.stride, train=train)
    if self.max_pool:
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    return x


class _Stage(_Net):
  """The blocks of one stage."""
  stage: int = 1
  in_group: str = 'stem'

  @nn.compact
  def __call__(self, x, train):
    for b in range(1, self.depth[self.stage - 1] + 1):
      x = self.child(self.family.block_module(), f'block{b}',
                     stage=self.stage, block=b,
                     in_group=self.in_group if b == 1 else
                     f'stage{self.stage}')(x, train)
    return x


class _Block(_Net):
  stage: int = 1
  block: int = 1
  in_group: str = 'stem'

  @property
  def stride(self) -> int:
    return self.family.strides[self.stage - 1] if self.block == 1 else 1

  def group(self, pos: str) -> str:
    return f'stage{self.stage}/block{self.block}/{pos}'


class ResNet(_Net):
  """ResNet (BasicBlock or Bottleneck v1.5) with an ImageNet or CIFAR stem."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    imagenet = self.family.stem == 'imagenet'
    x = jnp.asarray(x, self.dtype)
    x = self.child(_Stem, 'stem', kernel=7 if imagenet else 3,
                   stride=2 if imagenet else 1, max_pool=imagenet)(x, train)
    return self.classify(self.stages(x, train, _Stage))


class _BasicBlock(_Block):

  def chain(self):
    """(group, kernel, stride) of each conv, in order: the last conv writes
    the stream, without activation."""
    return ((self.group('conv1'), 3, self.stride),
            (f'stage{self.stage}', 3, 1))

  @nn.compact
  def __call__(self, x, train):
    y, convs = x, self.chain()
    for i, (group, kernel, stride) in enumerate(convs, start=1):
      y = self.conv_bn(y, group, f'conv{i}', f'bn{i}', kernel=kernel,
                       stride=stride, train=train, act=i < len(convs))
    stream = f'stage{self.stage}'
    if (self.stride != 1 or
        self.widths[self.in_group] != self.widths[stream]):
      x = self.conv_bn(x, stream, 'shortcut_conv', 'shortcut_bn', kernel=1,
                       stride=self.stride, train=train, act=False)
    return nn.relu(x + y)


class _Bottleneck(_BasicBlock):
  """torchvision v1.5: the stride sits on the 3x3 conv."""

  def chain(self):
    return ((self.group('conv1'), 1, 1), (self.group('conv2'), 3, self.stride),
            (f'stage{self.stage}', 1, 1))


class MobileNetV2(_Net):
  """MobileNetV2 (Sandler et al. 2018); ReLU6, ImageNet or CIFAR strides."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = jnp.asarray(x, self.dtype)
    x = self.child(_Stem, 'stem', stride=2 if self.family.stem == 'imagenet'
                   else 1)(x, train)
    x = self.stages(x, train, _Stage)
    x = self.child(_Head, 'head')(x, train)
    return self.classify(x)


class _Head(_Net):

  @nn.compact
  def __call__(self, x, train):
    return self.conv_bn(x, 'head', 'conv', 'bn', kernel=1, stride=1,
                        train=train)


class _InvertedResidual(_Block):

  @nn.compact
  def __call__(self, x, train):
    hidden, y = self.in_group, x
    if self.family.expansion[self.stage - 1] != 1:
      hidden = self.group('expand')
      y = self.conv_bn(y, hidden, 'expand_conv', 'expand_bn', kernel=1,
                       stride=1, train=train)
    y = self.conv_bn(y, hidden, 'dw_conv', 'dw_bn', kernel=3,
                     stride=self.stride, train=train, depthwise=True)
    y = self.conv_bn(y, f'stage{self.stage}', 'project_conv', 'project_bn',
                     kernel=1, stride=1, train=train, act=False)
    return x + y if self.block > 1 else y


_RESNET_IMAGENET = dict(stem_width=64, strides=(1, 2, 2, 2))
_BASIC = dict(block='basic', stage_widths=(64, 128, 256, 512))
_BOTTLENECK = dict(block='bottleneck', stage_widths=(256, 512, 1024, 2048))
_CIFAR_RESNET = dict(block='basic', stem='cifar', stem_width=16,
                     stage_widths=(16, 32, 64), strides=(1, 2, 2))
# (t, c, n, s) of Sandler et al. 2018, Table 2.
_MBV2_TABLE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
_MBV2 = dict(stem_width=32, head_width=1280,
             expansion=tuple(t for t, _, _, _ in _MBV2_TABLE),
             stage_widths=tuple(c for _, c, _, _ in _MBV2_TABLE),
             depth=tuple(n for _, _, n, _ in _MBV2_TABLE))


def _table() -> dict[str, Any]:
  """Every built-in name and its family member."""
  out: dict[str, Any] = {}
  for depth_name, depth, kind in (('18', (2, 2, 2, 2), _BASIC),
                                  ('34', (3, 4, 6, 3), _BASIC),
                                  ('50', (3, 4, 6, 3), _BOTTLENECK),
                                  ('101', (3, 4, 23, 3), _BOTTLENECK)):
    for suffix, stem in (('', 'imagenet'), ('_cifar', 'cifar')):
      out[f'resnet{depth_name}{suffix}'] = ResNetFamily(
          **_RESNET_IMAGENET, **kind, depth=depth, stem=stem)
  for n in (20, 32, 44, 56, 110):
    out[f'resnet{n}_cifar'] = ResNetFamily(**_CIFAR_RESNET,
                                           depth=((n - 2) // 6,) * 3)
  out['mobilenet_v2'] = MobileNetV2Family(
      **_MBV2, stem='imagenet', strides=tuple(s for *_, s in _MBV2_TABLE))
  # CIFAR variant: stem stride 1 and the second stage's stride 1 (32x32).
  out['mobilenet_v2_cifar'] = MobileNetV2Family(
      **_MBV2, stem='cifar', strides=(1, 1, 2, 2, 1, 2, 1))
  # Tiny members for tests and the CPU quickstart.
  out['resnet_tiny'] = ResNetFamily(
      block='basic', stem='cifar', stem_width=8, stage_widths=(8, 16),
      strides=(1, 2), depth=(2, 2))
  out['resnet_bottleneck_tiny'] = ResNetFamily(
      block='bottleneck', stem='cifar', stem_width=8, stage_widths=(16, 32),
      strides=(1, 2), depth=(2, 2))
  out['mobilenet_v2_tiny'] = MobileNetV2Family(
      stem='cifar', stem_width=8, head_width=32, expansion=(1, 4, 4),
      stage_widths=(8, 16, 24), depth=(1, 2, 2), strides=(1, 2, 2))
  return out


TABLE = _table()
NAMES = tuple(TABLE)  # the built-in architectures


def _layer_namer(family):
  def name(path: tuple[str, ...]) -> str:
    return '/'.join(path[:-1] + (family.names.get(path[-1], path[-1]),))
  return name


def _register(name: str, family) -> None:
  def factory(widths, num_classes, depth, dtype: Optional[Any] = None):
    return family.module(widths, num_classes, depth,
                         jnp.float32 if dtype is None else dtype)
  custom_archs.add(custom_archs.Network(
      name, factory, tuple(zip(family.group_names(family.depth),
                               family.uniform(family.depth, 1.0, 8))),
      family.depth, family.resolution, takes_dtype=True,
      uniform_rule=family.uniform, names_rule=family.group_names,
      layer_name=_layer_namer(family), family=family), builtin=True)


for _name, _family in TABLE.items():
  _register(_name, _family)
