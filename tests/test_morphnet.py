"""MorphNet regularizer: closed-form cost and term, ties, gradients."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wt_jax.nets import architectures
from wt_jax.nets import cost as cost_lib
from wt_jax.nets import models
from wt_jax.nets import widths as W
from wt_jax.optimizers import morphnet


def _params(widths, resolution=8, num_classes=10):
  model = models.build_model(widths, num_classes)
  return model.init(jax.random.PRNGKey(0),
                    jnp.zeros((1, resolution, resolution, 3)))['params']


def _set(params, path, values):
  params = jax.tree_util.tree_map(lambda x: x, params)  # copy
  node = functools.reduce(lambda t, k: t[k], path, params)
  node['scale'] = jnp.asarray(values, jnp.float32)
  return params


def _tiny():
  """resnet_tiny with one block per stage, width 8, 4x4 input, 10 classes."""
  w = W.Widths('resnet_tiny', (1, 1), (8,) * 5)
  p = _params(w, 4)
  p = _set(p, ('stem', 'bn'), [1, 1, 1, 1, 0, 0, 0, 0])
  p = _set(p, ('stage1', 'block1', 'bn2'), [0, 0, 0, 0, .5, 0, 0, 0])
  p = _set(p, ('stage1', 'block1', 'bn1'), [2, .005, 0, 0, 0, 0, 0, 0])
  p = _set(p, ('stage2', 'block1', 'bn1'), [1] * 8)
  p = _set(p, ('stage2', 'block1', 'bn2'), [-1, 1, 0, 0, 0, 0, 0, 0])
  p = _set(p, ('stage2', 'block1', 'shortcut_bn'), [0, 0, 1, 0, 0, 0, 0, 0])
  return w, p, morphnet.make_structure(w, 4, 10)


def test_units_merge_identity_ties():
  w, _, s = _tiny()
  assert s.units == (('stem', 'stage1'), ('stage1/block1/conv1',),
                     ('stage2',), ('stage2/block1/conv1',))
  assert s.members[0] == ((('stem', 'bn'), 0),
                          (('stage1', 'block1', 'bn2'), 0))


def test_closed_form_cost_and_term():
  """Hand-worked: units stem+stage1 (alive 5: channel 4 is dead in the stem
  but alive in the block, so it stays; sum 4.5), s1b1 (alive 1, sum 2.005;
  0.005 is below the threshold), s2b1 (8, 8), stage2 (3, 3)."""
  _, p, s = _tiny()
  assert morphnet.alive_counts(p, s) == {
      'stem': 5, 'stage1': 5, 'stage1/block1/conv1': 1, 'stage2': 3,
      'stage2/block1/conv1': 8}
  # coeffs: stem/s1 convs 9*4*4=144, s2 convs 9*2*2=36, shortcut 4, fc 1.
  expected_cost = (144 * 3 * 5 + 144 * 5 * 1 + 144 * 1 * 5 + 36 * 5 * 8 +
                   36 * 8 * 3 + 4 * 5 * 3 + 1 * 3 * 10)
  assert float(morphnet.alive_macs(p, s)) == expected_cost
  # The same figure by another route: the analytic MACs of the network
  # pruned to the alive counts (stem = stage1 = 5 keeps the identity add).
  pruned = W.Widths('resnet_tiny', (1, 1), (5, 5, 1, 3, 8))
  assert cost_lib.macs(pruned, 4, 10) == expected_cost
  expected_term = (144 * (3 * 4.5) + 2 * 144 * (5 * 2.005 + 1 * 4.5) +
                   36 * (5 * 8 + 8 * 4.5) + 36 * (8 * 3 + 3 * 8) +
                   4 * (5 * 3 + 3 * 4.5) + 1 * (10 * 3))
  np.testing.assert_allclose(float(morphnet.regularization_term(p, s)),
                             expected_term, rtol=1e-6)


def test_threshold_changes_alive():
  _, p, s = _tiny()
  assert morphnet.alive_counts(p, s, threshold=1e-3)['stage1/block1/conv1'] == 2
  assert morphnet.alive_counts(p, s, threshold=0.6)['stem'] == 4


def test_gradient_only_on_gammas_with_coeff_weights():
  _, p, s = _tiny()
  g = jax.grad(morphnet.regularization_term)(p, s)
  for path, leaf in jax.tree_util.tree_flatten_with_path(g)[0]:
    keys = [k.key for k in path]
    if keys[-1] != 'scale':
      assert not np.any(np.asarray(leaf)), keys  # kernels, BN biases, FC
  # s1b1 conv1 output unit: d term / d gamma = 144*a_in(5) + 144*a_out(5).
  np.testing.assert_allclose(g['stage1']['block1']['bn1']['scale'][:2],
                             [1440, 1440])
  # stem+stage1 unit: 144*3 + 144*1 + 144*1 + 36*8 + 4*3 = 1020, to the argmax
  # member only: the stem for channels 0-3, the block's bn2 for channel 4.
  np.testing.assert_allclose(g['stem']['bn']['scale'][:5], [1020] * 4 + [0])
  np.testing.assert_allclose(g['stage1']['block1']['bn2']['scale'][:5],
                             [0] * 4 + [1020])
  # stage2 unit: negative gamma gets a negative gradient (|gamma|).
  # d/d gamma = 36*a_in(8) + 4*a_in(5) + 1*10 = 318
  np.testing.assert_allclose(g['stage2']['block1']['bn2']['scale'][:2],
                             [-318, 318])
  np.testing.assert_allclose(
      g['stage2']['block1']['shortcut_bn']['scale'][2], 318)


def test_depthwise_tie():
  w = W.uniform('mobilenet_v2_tiny')
  p = _params(w, 8)
  s = morphnet.make_structure(w, 8, 10)
  unit = s.members[s.unit_of('stage2/block1/expand')]
  assert unit == ((('stage2', 'block1', 'expand_bn'), 0),
                  (('stage2', 'block1', 'dw_bn'), 0))
  ones = jax.tree_util.tree_map(jnp.ones_like, p)
  full = float(morphnet.alive_macs(ones, s))
  assert full == cost_lib.macs(w, 8, 10)
  # Channel 0 dead in the expansion BN only: still alive (OR).
  p1 = _set(ones, ('stage2', 'block1', 'expand_bn'),
            [0] + [1] * (w['stage2/block1/expand'] - 1))
  assert float(morphnet.alive_macs(p1, s)) == full
  # Dead in both: one channel fewer in expand, depthwise and project convs.
  p2 = _set(p1, ('stage2', 'block1', 'dw_bn'),
            [0] + [1] * (w['stage2/block1/expand'] - 1))
  layers = {l.name: l for l in cost_lib.count(w, 8, 10).layers}
  e, d, pr = (layers['stage2/block1/' + n]
              for n in ('expand', 'depthwise', 'project'))
  saved = (e.coeff * e.in_channels + d.coeff + pr.coeff * pr.out_channels)
  assert float(morphnet.alive_macs(p2, s)) == full - saved
  # Depthwise term = coeff * (sum|g_in| + sum|g_out|), both the same unit.
  # With equal gammas, max() splits the gradient between the two members.
  g = jax.grad(morphnet.regularization_term)(ones, s)['stage2']['block1']
  np.testing.assert_allclose(
      g['expand_bn']['scale'][0] + g['dw_bn']['scale'][0],
      e.coeff * e.in_channels + 2 * d.coeff + pr.coeff * pr.out_channels)


@pytest.mark.parametrize('arch', architectures.NAMES)
def test_all_alive_cost_equals_analytic_macs(arch):
  w = W.uniform(arch, 0.25)
  model = models.build_model(w, 10)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 32, 32, 3)))['params']
  ones = jax.tree_util.tree_map(lambda x: jnp.ones(x.shape, x.dtype), shapes)
  s = morphnet.make_structure(w, 32, 10)
  assert float(morphnet.alive_macs(ones, s)) == pytest.approx(
      cost_lib.macs(w, 32, 10), rel=1e-6)
  assert morphnet.learned_widths(ones, s, 1e-2, 8) == w


def test_learned_widths_keep_minimum_and_ties():
  w, p, s = _tiny()
  out = morphnet.learned_widths(p, s, 1e-2, min_width=2)
  assert out.as_dict() == {'stem': 5, 'stage1': 5, 'stage1/block1/conv1': 2,
                           'stage2': 3, 'stage2/block1/conv1': 8}
  chex.assert_equal(architectures.identity_ties(out.spec, out.values),
                    (('stem', 'stage1'),))


@pytest.mark.slow
def test_regularized_step_8_devices_equals_1_device():
  """The MorphNet term inside the jitted, sharded step: 8 devices == 1."""
  from wt_jax import defaults  # pylint: disable=g-import-not-at-top
  from wt_jax import train  # pylint: disable=g-import-not-at-top
  w = W.uniform('resnet_tiny')
  model = models.build_model(w, 10)
  s = morphnet.make_structure(w, 8, 10)
  extra = morphnet.make_extra_loss(s, 1.0 / cost_lib.macs(w, 8, 10))
  tc = defaults.get_config().train
  tc.update(batch_size=16, base_lr=0.4, warmup_epochs=0.0)
  rng = np.random.default_rng(0)
  batches = [{'image': rng.normal(size=(16, 8, 8, 3)).astype(np.float32),
              'label': rng.integers(0, 10, 16).astype(np.int32),
              'mask': np.ones(16, np.float32)} for _ in range(2)]

  def run(mesh, extra=extra):
    step = train.TrainStep(model, tc, mesh, seed=0, image_shape=(8, 8, 3),
                           total_steps=10, steps_per_epoch=5, extra_loss=extra)
    state = step.init()
    for b in batches:
      state = step(state, train.global_batch(mesh, b))
    return train.to_host(state)

  one = run(train.make_mesh(jax.devices()[:1]))
  eight = run(train.make_mesh())
  chex.assert_trees_all_close(eight, one, rtol=2e-5, atol=2e-6)
  assert float(eight.sums['extra_loss']) > 0
  # The term pushes the gammas down compared with the plain step.
  plain = run(train.make_mesh(jax.devices()[:1]), extra=None)
  total = lambda st: float(sum(jnp.abs(g).sum() for g in morphnet.unit_gammas(
      st.params, s)))
  assert total(one) < total(plain)
