"""The built-in Flax modules as they were before issue 22: a test oracle only.

`tests/test_families.py` checks that the modules of `wt_jax.nets.families`, wrapped
by `wt_jax.nets.models.Net` (masks applied by intercepting layers), compute
exactly what these did (masks applied inside each conv-BN), with the same
parameters, with and without masks.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax.numpy as jnp

import _reference_nets

# torchvision's init: He normal on fan-out for convs, BN scale 1, bias 0.
conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
Masks = Optional[Mapping[str, Any]]
# Every BatchNorm's running-average momentum (BN recalibration reads a
# batch's statistics back from it: `train.recalibration`).
BN_MOMENTUM = 0.9


class _Net(nn.Module):
  """Shared conv-BN helper for the two families."""
  widths: Any
  num_classes: int = 1000
  dtype: Any = jnp.float32

  def conv_bn(self, x, group, conv_name, bn_name, *, kernel, stride, train,
              masks, depthwise=False, act=True, features=None):
    features = self.widths[group] if features is None else features
    p = kernel // 2
    x = nn.Conv(features, (kernel, kernel), (stride, stride),
                padding=((p, p), (p, p)), use_bias=False,
                feature_group_count=x.shape[-1] if depthwise else 1,
                kernel_init=conv_init, dtype=self.dtype, name=conv_name)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                     epsilon=1e-5, dtype=self.dtype, name=bn_name)(x)
    x = mask(x, group, masks)
    return self.act(x) if act else x

  def act(self, x):
    if self.widths.spec.family == 'mobilenet_v2':
      return nn.relu6(x)
    return nn.relu(x)

  def classify(self, x):
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x)
    return jnp.asarray(x, jnp.float32)


def mask(x, group, masks: Masks):
  if masks is None or group not in masks:
    return x
  return x * jnp.asarray(masks[group], x.dtype)


class ResNet(_Net):
  """ResNet (BasicBlock or Bottleneck v1.5) with an ImageNet or CIFAR stem."""

  @nn.compact
  def __call__(self, x, train: bool = False, masks: Masks = None):
    spec = self.widths.spec
    x = jnp.asarray(x, self.dtype)
    stem_k, stem_s = (7, 2) if spec.stem == 'imagenet' else (3, 1)
    x = _Stem(widths=self.widths, kernel=stem_k, stride=stem_s,
              max_pool=spec.stem == 'imagenet', dtype=self.dtype,
              name='stem')(x, train, masks)
    prev = 'stem'
    for s, n in enumerate(spec.depth, start=1):
      x = _ResNetStage(widths=self.widths, stage=s, in_group=prev,
                       dtype=self.dtype, name=f'stage{s}')(x, train, masks)
      prev = f'stage{s}'
    return self.classify(x)


class _Stem(_Net):
  kernel: int = 3
  stride: int = 1
  max_pool: bool = False

  @nn.compact
  def __call__(self, x, train, masks):
    x = self.conv_bn(x, 'stem', 'conv', 'bn', kernel=self.kernel,
                     stride=self.stride, train=train, masks=masks)
    if self.max_pool:
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    return x


class _Stage(_Net):
  """The blocks of one stage; `block_module` says which block."""
  stage: int = 1
  in_group: str = 'stem'

  def block_module(self):
    raise NotImplementedError

  @nn.compact
  def __call__(self, x, train, masks):
    spec = self.widths.spec
    stream = f'stage{self.stage}'
    block = self.block_module()
    for b in range(1, spec.depth[self.stage - 1] + 1):
      x = block(widths=self.widths, stage=self.stage, block=b,
                in_group=self.in_group if b == 1 else stream,
                dtype=self.dtype, name=f'block{b}')(x, train, masks)
    return x


class _ResNetStage(_Stage):

  def block_module(self):
    return _BasicBlock if self.widths.spec.block == 'basic' else _Bottleneck


class _ResBlock(_Net):
  stage: int = 1
  block: int = 1
  in_group: str = 'stem'

  def residual(self, x, y, train, masks):
    stride = self.stride
    stream = f'stage{self.stage}'
    if _reference_nets.shortcut_is_projection(
        self.widths.spec, stride, self.widths[self.in_group],
        self.widths[stream]):
      x = self.conv_bn(x, stream, 'shortcut_conv', 'shortcut_bn', kernel=1,
                       stride=stride, train=train, masks=masks, act=False)
    return nn.relu(x + y)

  @property
  def stride(self):
    return self.widths.spec.strides[self.stage - 1] if self.block == 1 else 1

  def group(self, pos):
    return f'stage{self.stage}/block{self.block}/{pos}'


class _BasicBlock(_ResBlock):

  def chain(self):
    """(group, kernel, stride) of each conv, in order (the `architectures`
    layer order: the last conv writes the stream, without activation)."""
    return ((self.group('conv1'), 3, self.stride),
            (f'stage{self.stage}', 3, 1))

  @nn.compact
  def __call__(self, x, train, masks):
    y, convs = x, self.chain()
    for i, (group, kernel, stride) in enumerate(convs, start=1):
      y = self.conv_bn(y, group, f'conv{i}', f'bn{i}', kernel=kernel,
                       stride=stride, train=train, masks=masks,
                       act=i < len(convs))
    return self.residual(x, y, train, masks)


class _Bottleneck(_BasicBlock):
  """torchvision v1.5: the stride sits on the 3x3 conv."""

  def chain(self):
    return ((self.group('conv1'), 1, 1), (self.group('conv2'), 3, self.stride),
            (f'stage{self.stage}', 1, 1))


class MobileNetV2(_Net):
  """MobileNetV2 (Sandler et al. 2018); ReLU6, ImageNet or CIFAR strides."""

  @nn.compact
  def __call__(self, x, train: bool = False, masks: Masks = None):
    spec = self.widths.spec
    x = jnp.asarray(x, self.dtype)
    x = _MBStem(widths=self.widths,
                stride=2 if spec.stem == 'imagenet' else 1,
                dtype=self.dtype, name='stem')(x, train, masks)
    prev = 'stem'
    for s, n in enumerate(spec.depth, start=1):
      x = _MBStage(widths=self.widths, stage=s, in_group=prev,
                   dtype=self.dtype, name=f'stage{s}')(x, train, masks)
      prev = f'stage{s}'
    x = _MBHead(widths=self.widths, dtype=self.dtype, name='head')(x, train, masks)
    return self.classify(x)


class _MBStem(_Net):
  kernel: int = 3
  stride: int = 2

  @nn.compact
  def __call__(self, x, train, masks):
    return self.conv_bn(x, 'stem', 'conv', 'bn', kernel=self.kernel,
                        stride=self.stride, train=train, masks=masks)


class _MBHead(_Net):

  @nn.compact
  def __call__(self, x, train, masks):
    return self.conv_bn(x, 'head', 'conv', 'bn', kernel=1, stride=1,
                        train=train, masks=masks)


class _MBStage(_Stage):

  def block_module(self):
    return _InvertedResidual


class _InvertedResidual(_Net):
  stage: int = 1
  block: int = 1
  in_group: str = 'stem'

  @nn.compact
  def __call__(self, x, train, masks):
    spec = self.widths.spec
    stride = spec.strides[self.stage - 1] if self.block == 1 else 1
    hidden = self.in_group
    y = x
    if spec.expansion[self.stage - 1] != 1:
      hidden = f'stage{self.stage}/block{self.block}/expand'
      y = self.conv_bn(y, hidden, 'expand_conv', 'expand_bn', kernel=1,
                       stride=1, train=train, masks=masks)
    y = self.conv_bn(y, hidden, 'dw_conv', 'dw_bn', kernel=3, stride=stride,
                     train=train, masks=masks, depthwise=True)
    y = self.conv_bn(y, f'stage{self.stage}', 'project_conv', 'project_bn',
                     kernel=1, stride=1, train=train, masks=masks, act=False)
    return x + y if self.block > 1 else y


def build_model(widths, num_classes, dtype=jnp.float32):
  spec = _reference_nets.get_arch(widths.arch, widths.depth)
  module = ResNet if spec.family == 'resnet' else MobileNetV2
  return module(widths=_Spec(widths, spec), num_classes=num_classes,
                dtype=dtype)


class _Spec:
  """The width vector with the hand-written `spec` (hashable, indexable)."""

  def __init__(self, widths, spec):
    self.w, self.spec = widths, spec

  def __getitem__(self, name):
    return self.w[name]

  def __hash__(self):
    return hash(self.w)

  def __eq__(self, other):
    return isinstance(other, _Spec) and other.w == self.w
