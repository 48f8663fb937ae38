"""Networks with concatenation and grouped convolutions (tests and README).

Importing this module registers them, as a user's module named by
`config.arch_module` / `--arch_module` would:
* 'dense_tiny': a DenseNet-style CNN. Each dense layer is BN-ReLU-conv 3x3
  on the concatenation of everything before it in its stage, adding
  `widths['stageS/blockB/growth']` channels; each stage ends in a
  BN-ReLU-conv 1x1 transition to `widths['stageS']` channels. The factory
  takes `depth` (dense layers per stage), so depth projection works.
* 'inception_tiny': an Inception-style module (three branches, one through
  a grouped 3x3 conv with 4 groups, concatenated) and a ResNeXt-style block
  (1x1, grouped 3x3 with cardinality 8, 1x1, identity shortcut).
"""
from typing import Mapping

import flax.linen as nn
import jax.numpy as jnp

import wt_jax

DENSE_BASE = {'stem': 16,
              'stage1/block1/growth': 8, 'stage1/block2/growth': 8,
              'stage1': 16,
              'stage2/block1/growth': 8, 'stage2/block2/growth': 8,
              'stage2': 24}
INCEPTION_BASE = {'stem': 16, 'branch1': 8, 'branch2_reduce': 8,
                  'branch2': 16, 'branch3': 8, 'mix': 32,
                  'next_reduce': 16, 'next_inner': 16}
BRANCH2_GROUPS, NEXT_GROUPS = 4, 8


def bn(x, train, name):
  return nn.BatchNorm(use_running_average=not train, name=name)(x)


class DenseTiny(nn.Module):
  widths: Mapping[str, int]
  num_classes: int
  depth: tuple = (2, 2)

  @nn.compact
  def __call__(self, x, train: bool = False):
    w = self.widths
    x = nn.Conv(w['stem'], (3, 3), use_bias=False, name='stem')(x)
    for s, layers in enumerate(self.depth, start=1):
      for b in range(1, layers + 1):
        pre = f'stage{s}/block{b}'
        y = nn.relu(bn(x, train, pre + '/bn'))
        y = nn.Conv(w[pre + '/growth'], (3, 3), use_bias=False,
                    name=pre + '/conv')(y)
        x = jnp.concatenate([x, y], axis=-1)
      y = nn.relu(bn(x, train, f'stage{s}/transition_bn'))
      x = nn.Conv(w[f'stage{s}'], (1, 1), use_bias=False,
                  name=f'stage{s}/transition')(y)
      if s < len(self.depth):
        x = nn.avg_pool(x, (2, 2), (2, 2))
    x = nn.relu(bn(x, train, 'final_bn'))
    return nn.Dense(self.num_classes, name='fc')(x.mean(axis=(1, 2)))


def conv_bn(x, features, kernel, train, name, stride=1, groups=1):
  x = nn.Conv(features, (kernel, kernel), stride, use_bias=False,
              feature_group_count=groups, name=name + '_conv')(x)
  return bn(x, train, name + '_bn')


class InceptionTiny(nn.Module):
  widths: Mapping[str, int]
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    w = self.widths
    x = nn.relu(conv_bn(x, w['stem'], 3, train, 'stem'))
    a = nn.relu(conv_bn(x, w['branch1'], 1, train, 'branch1'))
    b = nn.relu(conv_bn(x, w['branch2_reduce'], 1, train, 'branch2_reduce'))
    b = nn.relu(conv_bn(b, w['branch2'], 3, train, 'branch2',
                        groups=BRANCH2_GROUPS))
    c = nn.relu(conv_bn(x, w['branch3'], 3, train, 'branch3'))
    x = jnp.concatenate([a, b, c], axis=-1)
    x = nn.relu(conv_bn(x, w['mix'], 1, train, 'mix', stride=2))
    y = nn.relu(conv_bn(x, w['next_reduce'], 1, train, 'next_reduce'))
    y = nn.relu(conv_bn(y, w['next_inner'], 3, train, 'next_inner',
                        groups=NEXT_GROUPS))
    x = nn.relu(x + conv_bn(y, w['mix'], 1, train, 'next_expand'))
    return nn.Dense(self.num_classes, name='fc')(x.mean(axis=(1, 2)))


wt_jax.register_arch(
    'dense_tiny', lambda widths, num_classes, depth: DenseTiny(
        widths, num_classes, depth), DENSE_BASE, depth=(2, 2), resolution=8,
    replace=True)
wt_jax.register_arch('inception_tiny', InceptionTiny, INCEPTION_BASE,
                     resolution=8, replace=True)
