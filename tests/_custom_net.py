"""User-defined networks for tests/test_custom_arch.py (and the README's).

Importing this module registers them, as a user's module named by
`config.arch_module` / `--arch_module` would:
* 'tiny_res': a small residual CNN with a depthwise conv and a projection
  shortcut (groups stem, expand, mid, out);
* 'staged_res': a two-stage ResNet whose factory takes `depth` and whose
  groups read stageS/blockB/conv1 (depth projection works on it).
"""
from typing import Mapping

import flax.linen as nn

import wt_jax

TINY_BASE = {'stem': 16, 'expand': 32, 'mid': 24, 'out': 32}
STAGED_BASE = {'stem': 8, 'stage1': 8, 'stage1/block1/conv1': 8,
               'stage1/block2/conv1': 8, 'stage2': 16,
               'stage2/block1/conv1': 16}


def conv_bn(x, features, kernel, train, name, stride=1, depthwise=False):
  x = nn.Conv(features, (kernel, kernel), stride, use_bias=False,
              feature_group_count=x.shape[-1] if depthwise else 1,
              name=name + '_conv')(x)
  return nn.BatchNorm(use_running_average=not train, name=name + '_bn')(x)


class TinyRes(nn.Module):
  widths: Mapping[str, int]
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    w = self.widths
    x = nn.relu(conv_bn(x, w['stem'], 3, train, 'stem'))
    # An inverted residual on the stem stream: 1x1, depthwise 3x3, 1x1.
    y = nn.relu(conv_bn(x, w['expand'], 1, train, 'expand'))
    y = nn.relu(conv_bn(y, w['expand'], 3, train, 'dw', depthwise=True))
    x = nn.relu(x + conv_bn(y, w['stem'], 1, train, 'project'))
    # A strided basic block with a 1x1 projection shortcut.
    y = nn.relu(conv_bn(x, w['mid'], 3, train, 'conv1', stride=2))
    y = conv_bn(y, w['out'], 3, train, 'conv2')
    x = nn.relu(y + conv_bn(x, w['out'], 1, train, 'shortcut', stride=2))
    return nn.Dense(self.num_classes, name='fc')(x.mean(axis=(1, 2)))


class StagedRes(nn.Module):
  widths: Mapping[str, int]
  num_classes: int
  depth: tuple = (2, 1)

  @nn.compact
  def __call__(self, x, train: bool = False):
    w = self.widths
    x = nn.relu(conv_bn(x, w['stem'], 3, train, 'stem'))
    for s, blocks in enumerate(self.depth, start=1):
      stream = w[f'stage{s}']
      for b in range(1, blocks + 1):
        pre = f'stage{s}/block{b}'
        stride = 2 if s > 1 and b == 1 else 1
        y = nn.relu(conv_bn(x, w[pre + '/conv1'], 3, train, pre + '/conv1',
                            stride))
        y = conv_bn(y, stream, 3, train, pre + '/conv2')
        if b == 1:  # always a projection: the structure is width-free
          x = conv_bn(x, stream, 1, train, pre + '/shortcut', stride)
        x = nn.relu(x + y)
    return nn.Dense(self.num_classes, name='fc')(x.mean(axis=(1, 2)))


wt_jax.register_arch('tiny_res', TinyRes, TINY_BASE, resolution=8,
                     replace=True)
wt_jax.register_arch(
    'staged_res', lambda widths, num_classes, depth: StagedRes(
        widths, num_classes, depth), STAGED_BASE, depth=(2, 1), resolution=8,
    replace=True)
