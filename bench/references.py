"""The reference networks: the flax examples/imagenet ResNet and a PyTorch twin.

Both have wt_jax's ResNet shape at a width vector (CIFAR stem, BasicBlocks,
1x1 projection shortcuts where the shape changes), so their train steps do
the same work as wt_jax's (`contenders.build_ref`, `contenders.build_torch`).
Each imports its framework itself: a worker loads only the one it measures.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable

# Classes of the synthetic task; bench/accelerator_check.sh sets 1000.
NUM_CLASSES = int(os.environ.get('WT_BENCH_CLASSES', 10))


def flax_resnet(widths, dtype, padding='SAME'):
  """The flax examples/imagenet ResNet at `widths` (its 7x7/2 + max-pool stem
  for ImageNet-stem archs, a 3x3/1 one for the CIFAR ones).

  padding: nn.Conv's padding; 'SAME' as in the example (stride-2 3x3 convs
  then pad (0, 1)), or 'symmetric' for ((k//2, k//2),) * 2 as wt_jax's models.
  """
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  ModuleDef = Any

  class ResNetBlock(nn.Module):
    filters: int
    inner: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable
    strides: tuple = (1, 1)

    @nn.compact
    def __call__(self, x):
      residual = x
      y = self.conv(self.inner, (3, 3), self.strides)(x)
      y = self.norm()(y)
      y = self.act(y)
      y = self.conv(self.filters, (3, 3))(y)
      y = self.norm(scale_init=nn.initializers.zeros_init())(y)
      if residual.shape != y.shape:
        residual = self.conv(self.filters, (1, 1), self.strides,
                             name='conv_proj')(residual)
        residual = self.norm(name='norm_proj')(residual)
      return self.act(residual + y)

  spec = widths.spec.net.family
  w = widths.as_dict()

  class ResNet(nn.Module):
    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = True):
      def conv(features, kernel, strides=(1, 1), **kw):
        pad = ('SAME' if padding == 'SAME' else
               tuple((k // 2, k // 2) for k in kernel))
        return nn.Conv(features, kernel, strides, padding=pad,
                       use_bias=False, dtype=self.dtype, **kw)
      norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                               momentum=0.9, epsilon=1e-5, dtype=self.dtype)
      if spec.stem == 'imagenet':  # the example's stem
        x = conv(w['stem'], (7, 7), (2, 2), name='conv_init')(x)
        x = nn.relu(norm(name='bn_init')(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
      else:  # CIFAR stem
        x = nn.relu(norm(name='bn_init')(conv(w['stem'], (3, 3),
                                              name='conv_init')(x)))
      for i, block_size in enumerate(widths.depth):
        for j in range(block_size):
          s = spec.strides[i] if j == 0 else 1
          x = ResNetBlock(w[f'stage{i + 1}'],
                          w[f'stage{i + 1}/block{j + 1}/conv1'],
                          strides=(s, s), conv=conv, norm=norm,
                          act=nn.relu)(x)
      x = jnp.mean(x, axis=(1, 2))
      x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
      x = jnp.asarray(x, self.dtype)
      return x

  return ResNet(num_classes=NUM_CLASSES, dtype=dtype)


def torch_resnet(widths):
  """The same ResNet in PyTorch (BatchNorm momentum 0.1 = flax's 0.9)."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  class Block(nn.Module):

    def __init__(self, cin, inner, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, inner, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(inner, momentum=0.1, eps=1e-5)
      self.conv2 = nn.Conv2d(inner, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5)
      self.shortcut = None
      if stride != 1 or cin != cout:
        self.shortcut = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      s = x if self.shortcut is None else self.shortcut(x)
      return torch.relu(s + y)

  class Net(nn.Module):

    def __init__(self):
      super().__init__()
      spec, w = widths.spec.net.family, widths.as_dict()
      self.stem = nn.Sequential(nn.Conv2d(3, w['stem'], 3, 1, 1, bias=False),
                                nn.BatchNorm2d(w['stem']), nn.ReLU())
      blocks, cin = [], w['stem']
      for i, n in enumerate(widths.depth):
        for j in range(n):
          stride = spec.strides[i] if j == 0 else 1
          cout = w[f'stage{i + 1}']
          blocks.append(Block(cin, w[f'stage{i + 1}/block{j + 1}/conv1'],
                              cout, stride))
          cin = cout
      self.blocks = nn.Sequential(*blocks)
      self.fc = nn.Linear(cin, NUM_CLASSES)

    def forward(self, x):
      x = self.blocks(self.stem(x))
      return self.fc(x.mean((2, 3)))

  return Net()
