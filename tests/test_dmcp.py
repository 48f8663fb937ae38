"""DMCP: sub-groups, the chain's closed forms (expected channels, expected
MACs, masks, sampling), the FLOPs loss, the train step (8 devices == 1,
warm-up), validation, costs, a run on digits that resumes after a kill, and
the quickstart chain."""
import itertools
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wt_jax import data
from wt_jax import defaults
from wt_jax import errors
from wt_jax import train
from wt_jax.nets import cost
from wt_jax.nets import models
from wt_jax.nets import widths as W
from wt_jax.optimizers import dmcp
from wt_jax.optimizers import registry
from wt_jax.optimizers import result as result_lib
from wt_jax.transfer.problem import Problem
from wt_jax.util import files

from _tiny import REPO
from _tiny import tiny_config

RES, CLASSES = 8, 10
# resnet_tiny with one block per stage: stem + stage1 (tied by an identity
# shortcut), stage1's inner conv, stage2 (projection), stage2's inner conv.
SHALLOW = W.Widths('resnet_tiny', (1, 1), (8, 8, 8, 16, 16))
# Two sub-groups per unit: half the channels always kept, one alpha.
HALVES = dict(group_fraction=0.5, min_fraction=0.5, min_width=1)


def _logit(p):
  return float(np.log(p / (1.0 - p)))


# --------------------------------------------------------------------------
# Sub-groups and the chain's closed forms.
# --------------------------------------------------------------------------


def test_sub_groups_follow_the_reference():
  # The reference (10% steps, 10% minimum): 9 groups of int(0.1 C).
  assert dmcp.sub_groups(64, 0.1, 0.1, 4) == (10, 6, 9)
  assert dmcp.sub_groups(512, 0.1, 0.1, 4) == (53, 51, 9)
  assert dmcp.sub_groups(32, 0.1, 0.1, 4) == (5, 3, 9)
  # Narrow units: groups of 1 channel, at least min_width kept.
  assert dmcp.sub_groups(8, 0.1, 0.1, 4) == (4, 1, 4)
  assert dmcp.sub_groups(4, 0.1, 0.1, 4) == (4, 1, 0)  # not pruned
  assert dmcp.sub_groups(16, 0.5, 0.5, 1) == (8, 8, 1)


def test_expected_channels_and_macs_closed_form():
  chain = dmcp.make_chain(SHALLOW, RES, CLASSES, **HALVES)
  assert chain.space.units == (('stem', 'stage1'), ('stage1/block1/conv1',),
                               ('stage2',), ('stage2/block1/conv1',))
  assert chain.num_groups == (1, 1, 1, 1)
  probs = (0.25, 0.5, 0.75, 0.9)
  alpha = jnp.asarray([[_logit(p)] for p in probs], jnp.float32)
  # E[c] = kept half + the other half x its keep probability.
  e_stem, e_c1 = 4 + 4 * 0.25, 4 + 4 * 0.5
  e_s2, e_s2c1 = 8 + 8 * 0.75, 8 + 8 * 0.9
  np.testing.assert_allclose(chain.expected_channels(alpha),
                             [e_stem, e_c1, e_s2, e_s2c1], rtol=1e-6)
  # By hand, layer by layer (kernel^2 x output side^2 x E[in] x E[out]):
  # stem 3x3 on 8x8 from 3 image channels, stage1 conv1 and conv2 3x3 on
  # 8x8, stage2 (stride 2, 4x4 out) conv1 3x3, conv2 3x3, shortcut 1x1, fc.
  expected = (9 * 64 * 3 * e_stem + 9 * 64 * e_stem * e_c1 +
              9 * 64 * e_c1 * e_stem + 9 * 16 * e_stem * e_s2c1 +
              9 * 16 * e_s2c1 * e_s2 + 16 * e_stem * e_s2 + e_s2 * CLASSES)
  np.testing.assert_allclose(chain.expected_macs(alpha), expected,
                             rtol=1e-6)
  np.testing.assert_allclose(chain.expected_macs(np.asarray(alpha), np),
                             expected, rtol=1e-6)
  # Marginal masks: 1 on the kept half, the keep probability on the rest.
  masks = chain.marginal_masks(alpha)
  np.testing.assert_allclose(masks['stage1'], [1] * 4 + [0.25] * 4,
                             rtol=1e-6)
  np.testing.assert_allclose(masks['stage2/block1/conv1'],
                             [1] * 8 + [0.9] * 8, rtol=1e-6)
  # The result rule: round(E[c] - 1e-4) per unit.
  assert chain.widths_of(alpha).values == (5, 5, 6, 14, 15)


def test_marginals_are_cumulative_products():
  chain = dmcp.make_chain(W.Widths('resnet_tiny', (1, 1), (8, 8, 8, 8, 8)),
                          RES, CLASSES, group_fraction=0.25,
                          min_fraction=0.25, min_width=1)
  assert chain.num_groups[0] == 3 and chain.group_size[0] == 2
  q = (0.9, 0.5, 0.2)
  alpha = np.zeros(chain.alpha_shape)
  alpha[0] = [_logit(x) for x in q]
  m = np.asarray(chain.marginals(jnp.asarray(alpha, jnp.float32)))
  np.testing.assert_allclose(m[0], [0.9, 0.45, 0.09], rtol=1e-5)
  e = np.asarray(chain.expected_channels(jnp.asarray(alpha, jnp.float32)))
  np.testing.assert_allclose(e[0], 2 + 2 * (0.9 + 0.45 + 0.09), rtol=1e-5)


@pytest.mark.parametrize('arch, values', [
    ('resnet_tiny', (8, 8, 8, 8, 16, 16, 16)),
    ('mobilenet_v2_tiny', (8, 8, 32, 64, 16, 64, 96, 24, 32)),
])
def test_expected_macs_equal_cost_macs_at_0_1_probabilities(arch, values):
  w = W.uniform(arch).replace(values)
  chain = dmcp.make_chain(w, RES, CLASSES, group_fraction=0.25,
                          min_fraction=0.25, min_width=1)
  rng = np.random.default_rng(0)
  for _ in range(6):
    # A transition of +-100: keep probabilities of exactly 1 or 0.
    alpha = np.where(rng.random(chain.alpha_shape) < 0.6, 100.0, -100.0)
    sub = chain.widths_of(alpha)
    assert chain.space.keeps_shortcuts(chain.space.levels_of(sub))
    got = float(chain.expected_macs(jnp.asarray(alpha, jnp.float32)))
    assert got == pytest.approx(cost.macs(sub, RES, CLASSES), rel=1e-6)
    # At 0/1 the marginal masks keep the first k channels.
    counts = np.asarray(sub.values)
    chex.assert_trees_all_close(
        chain.marginal_masks(jnp.asarray(alpha, jnp.float32)),
        chain.space.masks(counts))


def test_chain_samples_have_the_expected_channels():
  w = W.Widths('resnet_tiny', (1, 1), (8, 8, 8, 16, 16))
  chain = dmcp.make_chain(w, RES, CLASSES, group_fraction=0.25,
                          min_fraction=0.25, min_width=1)
  alpha = jnp.asarray(np.random.default_rng(1).normal(
      0.5, 1.5, chain.alpha_shape), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(0), 20_000)
  levels = jax.jit(jax.vmap(lambda k: chain.sample_levels(alpha, k)))(keys)
  table = chain.space.grid_table()
  kept = np.asarray(table[np.arange(chain.num_units)[None], levels])
  np.testing.assert_allclose(kept.mean(0), chain.expected_channels(alpha),
                             rtol=0.02)


def test_flops_loss_is_two_sided_with_a_dead_band():
  t = 0.5
  for e, want in ((0.2, np.log(0.3)), (0.48, 0.0), (0.499, 0.0),
                  (0.7, np.log(0.7 - 0.475))):
    assert float(dmcp.flops_loss(jnp.float32(e), t)) == pytest.approx(
        want, abs=1e-6)
  grad = jax.grad(lambda e: dmcp.flops_loss(e, t))
  assert float(grad(jnp.float32(0.2))) < 0  # below: pushes the MACs up
  assert float(grad(jnp.float32(0.7))) > 0  # above: pushes them down
  assert float(grad(jnp.float32(0.48))) == 0


# --------------------------------------------------------------------------
# The train step: 8 devices == 1, the warm-up, one compile.
# --------------------------------------------------------------------------


def _batches(n, size, seed=0):
  rng = np.random.default_rng(seed)
  return [{'image': rng.normal(0.5, 1.5, (size, RES, RES, 3)).astype(
      np.float32), 'label': rng.integers(0, CLASSES, size).astype(np.int32),
           'mask': np.ones(size, np.float32)} for _ in range(n)]


def _dmcp_steps(mesh, batches, chain, warmup, skip_by_cond=None):
  tc = defaults.get_config().train
  tc.update(batch_size=16, base_lr=0.8, warmup_epochs=0.0,
            label_smoothing=0.1)
  total = len(batches)
  loss_fn = dmcp.make_dmcp_loss(chain, warmup_steps=warmup, uniform_decay=0.0,
                                target_fraction=0.3, flops_loss_weight=0.1,
                                skip_by_cond=skip_by_cond)
  step = train.TrainStep(
      models.build_model(chain.widths, CLASSES), tc, mesh, seed=0,
      image_shape=(RES, RES, 3), total_steps=total, steps_per_epoch=total,
      loss_fn=loss_fn,
      extra_params=dmcp.arch_params(chain, 0.5, 0.1, warmup, total, tc))
  state = step.init()
  alphas = []
  for batch in batches:
    state = step(state, train.global_batch(mesh, batch))
    alphas.append(np.asarray(train.to_host(state.params['dmcp']['alpha'])))
  assert step.jitted._cache_size() == 1  # one compile for both phases
  return train.to_host(state), alphas


@pytest.mark.slow
def test_dmcp_step_8_devices_equals_1_device_and_warms_up():
  assert jax.device_count() == 8
  chain = dmcp.make_chain(SHALLOW.replace((4, 4, 4, 8, 8)), RES, CLASSES,
                          **HALVES)
  batches = _batches(3, 16)
  one, alphas = _dmcp_steps(train.make_mesh(jax.devices()[:1]), batches,
                            chain, warmup=1)
  eight, _ = _dmcp_steps(train.make_mesh(), batches, chain, warmup=1)
  chex.assert_trees_all_close(eight, one, rtol=2e-5, atol=2e-6)
  # On CPU the warm-up runs the architecture pass and zeroes it; a lax.cond
  # (the default elsewhere) skips it: the same steps.
  assert not dmcp.skips_by_cond()
  cond, _ = _dmcp_steps(train.make_mesh(jax.devices()[:1]), batches, chain,
                        warmup=1, skip_by_cond=True)
  chex.assert_trees_all_close(cond, one, rtol=2e-5, atol=2e-6)
  # Warm-up: the first step leaves the alphas at their init; then they move.
  np.testing.assert_array_equal(alphas[0], np.zeros(chain.alpha_shape))
  assert np.abs(alphas[2] - alphas[1]).min() > 0
  sums = one.sums
  assert float(sums['arch_step']) == 2 and float(sums['count']) == 3
  assert float(sums['arch_loss']) > 0 and float(sums['flops_loss']) != 0
  # Expected MACs at init: E[c] = 3/4 of every unit's width, so between
  # (3/4)^2 and 3/4 of the MACs; above the target (0.3): pushed down.
  start = cost.macs(chain.widths, RES, CLASSES)
  at_init = float(chain.expected_macs(chain.init_alpha())) / start
  assert 0.5625 < at_init < 0.75
  assert float(sums['expected_macs']) / 3 < at_init


# --------------------------------------------------------------------------
# Config validation and the registry.
# --------------------------------------------------------------------------


def _config():
  c = tiny_config(optimizer='dmcp')
  c.train.batch_size = 32
  c.train.log_every = 2
  c.train.checkpoint_every = 4
  c.dmcp.update(num_steps=8, export_every=2, calib_batches=1,
                target_fraction=0.6, uniform_decay=1.0, **HALVES)
  return c


@pytest.mark.parametrize('field, value', [
    ('group_fraction', 1.0), ('group_fraction', 0.0), ('min_fraction', 1.0),
    ('min_width', 0), ('num_random', -1), ('uniform_decay', 1.5),
    ('warmup_fraction', 1.0), ('arch_lr', 0.0), ('arch_min_lr', 0.9),
    ('flops_loss_weight', -0.1), ('target_fraction', 0.0),
    ('target_fraction', 1.5), ('export_every', 0), ('calib_batches', -1),
    ('epochs', 0.0),
])
def test_config_validation_names_the_field(field, value):
  bad = _config()
  bad.dmcp[field] = value
  if field == 'epochs':
    bad.dmcp.num_steps = 0
  with pytest.raises(errors.ConfigError, match=f'config.dmcp.{field}='):
    registry.validate(bad)


def test_config_validation_val_split_and_unknown_fields():
  registry.validate(_config())
  bad = _config()
  bad.data.val_fraction = 0.0
  with pytest.raises(errors.ConfigError, match='val_fraction.*dmcp'):
    dmcp.validate(bad)
  bad = _config()
  with bad.dmcp.unlocked():
    bad.dmcp.extra = 1
  with pytest.raises(errors.ConfigError, match='unknown fields'):
    dmcp.validate(bad)
  assert registry.lr_field(_config()) == 'config.train.base_lr'
  c = _config()
  c.dmcp.lr = 0.2
  assert registry.lr_field(c) == 'config.dmcp.lr'


# --------------------------------------------------------------------------
# Costs.
# --------------------------------------------------------------------------


def _grid_macs(chain):
  """(full, smallest, mean over the uniform grid) by enumeration."""
  combos = list(itertools.product(*[range(len(g))
                                    for g in chain.space.grids]))
  macs = [cost.macs(chain.space.widths_at(c), RES, CLASSES) for c in combos]
  full = cost.macs(chain.widths, RES, CLASSES)
  smallest = cost.macs(chain.widths.replace([
      chain.min_channels[u] for u in chain.space.group_unit]), RES, CLASSES)
  return full, smallest, float(np.mean(macs))


def test_train_costs_closed_form():
  chain = dmcp.make_chain(SHALLOW, RES, CLASSES, **HALVES)
  full, smallest, uniform = _grid_macs(chain)
  a, b = 50_000.0, 60_000.0
  history = [{'step': 2, 'expected_macs': a}, {'step': 4, 'expected_macs': b}]
  # decay 0: the warm-up step (t = 0) is uniform, then all from the chain;
  # updates t = 0, 1 are charged at the export of step 2, t = 2, 3 at 4.
  got = dmcp.train_costs(chain, history, steps=4, batch_size=10,
                         warmup_steps=1, num_random=2, uniform_decay=0.0)
  weight = 3 * 10 * (4 * (full + smallest) + 2 * (uniform + a + 2 * b))
  assert got['weight_train_macs'] == pytest.approx(weight, rel=1e-9)
  assert got['arch_train_macs'] == 2 * full * 3 * 10
  assert got['arch_steps'] == 3
  assert got['train_macs'] == got['weight_train_macs'] + got[
      'arch_train_macs']
  assert got['train_macs_executed'] == (3 * full * 4 * 4 + 2 * full * 3) * 10
  # Without the cond (CPU) the warm-up step runs the architecture pass too.
  cpu = dmcp.train_costs(chain, history, steps=4, batch_size=10,
                         warmup_steps=1, num_random=2, uniform_decay=0.0,
                         skip_by_cond=False)
  assert cpu['train_macs_executed'] == (3 * full * 4 * 4 + 2 * full * 4) * 10
  assert cpu['train_macs'] == got['train_macs']


# --------------------------------------------------------------------------
# A run on digits: the result, the cost, and resume after a kill.
# --------------------------------------------------------------------------


def _problem(c, w):
  info = data.dataset_info(c.data)
  return Problem(w, c.data, info.resolution, info.num_classes,
                 info.num_examples['train'])


@pytest.mark.slow
def test_optimize_on_digits_resumes_after_kill(tmp_path, monkeypatch):
  c = _config()
  problem = _problem(c, SHALLOW)
  splits = []
  make_dataset = data.make_dataset

  def recording(data_config, split, **kwargs):
    splits.append(split)
    return make_dataset(data_config, split, **kwargs)

  monkeypatch.setattr(data, 'make_dataset', recording)
  straight = dmcp.optimize(c, problem, str(tmp_path / 'a'))
  assert 'val' in splits and 'test' not in splits  # decisions on val only
  d = straight.details
  chain = dmcp.make_chain(SHALLOW, RES, CLASSES, **HALVES)
  assert straight.widths == chain.widths_of(np.asarray(
      [u['alphas'] for u in d['units']]))
  assert straight.widths.same_structure(SHALLOW)
  assert d['learned_macs'] == cost.macs(straight.widths, RES, CLASSES)
  assert d['train_steps'] == 8 and d['warmup_steps'] == 4
  assert straight.examples == 8 * 32
  assert 0.0 <= d['val_top1_recalibrated'] <= 1.0
  assert 'deciding_eval_s' in d['time_parts'] and 'first_step_s' in d[
      'time_parts']
  # The cost: 3 x (full + smallest + 2 x E[uniform]) per example (decay 1:
  # every random draw uniform), plus 2 x full per architecture example.
  full, smallest, uniform = _grid_macs(chain)
  assert straight.train_macs == pytest.approx(
      3 * (full + smallest + 2 * uniform) * 8 * 32 + 2 * full * 4 * 32,
      rel=1e-9)
  hist = files.read_json(str(tmp_path / 'a' / result_lib.HISTORY))
  assert [h['step'] for h in hist] == [2, 4, 6, 8]
  assert hist[0]['expected_fraction'] == hist[1]['expected_fraction']
  assert hist[3]['expected_fraction'] != hist[1]['expected_fraction']

  # Killed during step 6 (after the checkpoint of step 4), then re-run.
  original = train.TrainStep.__call__
  calls = []

  def dying(self, state, batch):
    calls.append(1)
    if len(calls) == 6:
      raise RuntimeError('killed')
    return original(self, state, batch)

  monkeypatch.setattr(train.TrainStep, '__call__', dying)
  with pytest.raises(RuntimeError, match='killed'):
    dmcp.optimize(c, problem, str(tmp_path / 'b'))
  monkeypatch.setattr(train.TrainStep, '__call__', original)
  killed = files.read_json(str(tmp_path / 'b' / result_lib.HISTORY))
  assert [h['step'] for h in killed] == [2, 4]
  resumed = dmcp.optimize(c, problem, str(tmp_path / 'b'))
  assert resumed.widths == straight.widths
  assert resumed.train_macs == straight.train_macs
  assert resumed.examples == straight.examples
  assert resumed.details['units'] == d['units']
  assert resumed.details['val_top1_recalibrated'] == d[
      'val_top1_recalibrated']
  assert files.read_json(str(tmp_path / 'b' / result_lib.HISTORY)) == hist


# --------------------------------------------------------------------------
# The quickstart chain with --config.optimizer=dmcp.
# --------------------------------------------------------------------------


# Extended: test_optimize_on_digits_resumes_after_kill runs DMCP's optimize,
# test_pipeline.py the chain around a registered optimizer.
@pytest.mark.extended
def test_quickstart_dmcp_runs_the_whole_chain(tmp_path):
  cmd = [sys.executable, '-m', 'wt_jax.main',
         '--config=configs/quickstart.py', f'--workdir={tmp_path}',
         '--config.arch=resnet_tiny', '--config.data.resolution=0',
         '--config.train.num_steps=30', '--config.train.checkpoint_every=2',
         '--config.train.log_every=2', '--config.seeds=0,',
         '--config.projection.resolution=6', '--config.transfer.divisor=2',
         '--config.transfer.min_width=2', '--config.optimizer=dmcp',
         '--config.dmcp.num_steps=6', '--config.dmcp.export_every=3',
         '--config.dmcp.calib_batches=1', '--config.dmcp.min_width=2']
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                       timeout=600, check=False,
                       env=dict(os.environ, PYTHONPATH=REPO))
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads((tmp_path / 'results.json').read_text())
  assert res['optimizer'] == 'dmcp'
  assert set(res['arms']) == {'uniform', 'transferred'}
  details = res['overhead']['projected_details']
  assert details['optimizer'] == 'dmcp' and details['train_steps'] == 6
  assert res['overhead']['projected_cost'] > 0
  assert '| transferred |' in out.stdout
