"""Width vectors: structure, rounding, multipliers, validation, JSON."""
import json

import numpy as np
import pytest

from wt_jax.nets import architectures
from wt_jax.nets import widths as W


def test_resnet18_groups_in_network_order():
  w = W.uniform('resnet18')
  assert w.names[:4] == ('stem', 'stage1', 'stage1/block1/conv1',
                         'stage1/block2/conv1')
  assert len(w) == 1 + 4 * (1 + 2)
  g = {x.name: x for x in w.groups}
  assert (g['stage3/block2/conv1'].stage, g['stage3/block2/conv1'].block) == (
      3, 2)
  assert g['stage3'].kind == 'stream' and g['stage3'].block is None
  assert g['stem'].stage is None


def test_bottleneck_has_two_inner_groups_per_block():
  w = W.uniform('resnet50')
  assert w['stage1/block3/conv1'] == 64 and w['stage1/block3/conv2'] == 64
  assert w['stage1'] == 256 and w['stage4'] == 2048
  assert len(w) == 1 + 4 + 2 * (3 + 4 + 6 + 3)


def test_mobilenet_v2_groups_and_uniform_widths():
  w = W.uniform('mobilenet_v2')
  # Stage 1 has expansion 1: no expansion group, the depthwise is tied to stem.
  assert 'stage1/block1/expand' not in w.names
  assert w['stage2/block1/expand'] == 16 * 6
  assert w['stage2/block2/expand'] == 24 * 6
  assert w['head'] == 1280 and w['stem'] == 32 and w['stage7'] == 320
  assert len(w) == 1 + 7 + (17 - 1) + 1


def test_mobilenet_v2_width_mult_semantics():
  w = W.uniform('mobilenet_v2', 0.35)
  # torchvision mobilenet_v2(width_mult=0.35): 16-channel stem, head 1280.
  assert w['stem'] == 16 and w['head'] == 1280
  assert w['stage1'] == 8  # make_divisible(16 * .35 = 5.6) = 8
  assert W.uniform('mobilenet_v2', 1.4)['head'] == 1792
  for v in (5.6, 11.2, 22.4, 33.6, 100.0):
    r = architectures.make_divisible(v)
    assert r % 8 == 0 and r >= 0.9 * v


def test_depth_override_changes_structure():
  w = W.uniform('resnet18', depth=(1, 1, 1, 1))
  assert w.depth == (1, 1, 1, 1) and len(w) == 1 + 4 * 2
  with pytest.raises(architectures.ArchError, match='expected 4 integers'):
    W.uniform('resnet18', depth=(1, 1))


def test_multipliers_round_trip():
  base = W.uniform('resnet20_cifar')
  w = W.uniform('resnet20_cifar', 2.0)
  m = W.multipliers(w, base)
  np.testing.assert_allclose(m, 2.0)
  assert W.from_multipliers(base, m) == w


def test_round_widths_divisor_and_minimum():
  np.testing.assert_array_equal(
      W.round_widths([0.1, 3.9, 4.0, 11.9, 12.0, 100.0], divisor=8,
                     min_width=8), [8, 8, 8, 8, 16, 104])
  np.testing.assert_array_equal(W.round_widths([1.2, 2.5], 1, 1), [1, 3])
  np.testing.assert_array_equal(W.round_widths([3.0], 4, 16), [16])


@pytest.mark.parametrize('values, match', [
    ((16,) * 12, 'has 12 entries; expected 13'),
    ((16,) * 14, 'has 14 entries; expected 13'),
    ((0,) + (16,) * 12, "group 'stem' is 0"),
    ((16, -8) + (16,) * 11, "group 'stage1' is -8"),
    ((16, 16, 12.5) + (16,) * 10, "'stage1/block1/conv1' is 12.5, not an int"),
    ((16, 16, '8') + (16,) * 10, "'stage1/block1/conv1' is '8'"),
    ((16, 16, True) + (16,) * 10, "'stage1/block1/conv1' is True"),
    ((16, 16, float('nan')) + (16,) * 10, 'nan'),
])
def test_invalid_width_vectors(values, match):
  with pytest.raises(W.WidthError, match=match):
    W.Widths('resnet20_cifar', (3, 3, 3), values)


def test_integral_floats_are_accepted():
  w = W.Widths('resnet_tiny', (2, 2), (8.0,) * 7)
  assert w.values == (8,) * 7 and all(type(v) is int for v in w.values)


def test_json_round_trip_and_format(tmp_path):
  w = W.uniform('mobilenet_v2_cifar', 0.5)
  path = tmp_path / 'w.json'
  W.save(str(path), w, note='x')
  obj = json.loads(path.read_text())
  assert obj['arch'] == 'mobilenet_v2_cifar' and obj['note'] == 'x'
  assert obj['widths']['stem'] == w['stem']
  assert list(obj['widths']) == list(w.names)
  assert W.load(str(path)) == w
  assert not [p for p in tmp_path.iterdir() if p.name.startswith('.tmp')]


def test_json_errors_name_the_problem(tmp_path):
  w = W.uniform('resnet20_cifar')
  obj = W.to_json(w)
  with pytest.raises(W.WidthError, match="arch is 'resnet20_cifar', but "
                     "'resnet56_cifar' is expected"):
    W.from_json(obj, expect_arch='resnet56_cifar')
  bad = dict(obj, widths={**obj['widths'], 'stage9': 4})
  del bad['widths']['stem']
  with pytest.raises(W.WidthError, match=r"unknown \['stage9'\], missing "
                     r"\['stem'\]"):
    W.from_json(bad)
  bad = dict(obj, widths=dict(obj['widths'], stem=0))
  with pytest.raises(W.WidthError, match="group 'stem' is 0"):
    W.from_json(bad)
  with pytest.raises(W.WidthError, match='does not exist'):
    W.load(str(tmp_path / 'nope.json'))
  (tmp_path / 'bad.json').write_text('{not json')
  with pytest.raises(W.WidthError, match='not valid JSON'):
    W.load(str(tmp_path / 'bad.json'))


def test_identity_ties_follow_actual_widths():
  spec = architectures.get_arch('resnet18')
  w = W.uniform('resnet18')
  assert architectures.identity_ties(spec, w.values) == (('stem', 'stage1'),)
  wider = w.replace([72 if n == 'stage1' else v
                     for n, v in w.as_dict().items()])
  assert architectures.identity_ties(spec, wider.values) == ()
  assert architectures.identity_ties(architectures.get_arch('resnet50'),
                                     W.uniform('resnet50').values) == ()


def test_atomic_writes_respect_the_umask(tmp_path):
  import os  # pylint: disable=g-import-not-at-top
  from wt_jax.util import files  # pylint: disable=g-import-not-at-top
  old = os.umask(0o022)
  try:
    files.write_text(str(tmp_path / 'a.txt'), 'x')
  finally:
    os.umask(old)
  assert (tmp_path / 'a.txt').stat().st_mode & 0o777 == 0o644
  assert (tmp_path / 'a.txt').read_text() == 'x'
