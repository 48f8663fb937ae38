"""AutoSlim: masked == narrow nets, sandwich step sharding, vmapped candidate
evaluation, greedy slimming (target, structure, history, resume), costs."""
import itertools
import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from wt_jax import data
from wt_jax import defaults
from wt_jax import errors
from wt_jax import train
from wt_jax.nets import architectures
from wt_jax.nets import cost
from wt_jax.nets import models
from wt_jax.nets import widths as W
from wt_jax.optimizers import autoslim
from wt_jax.optimizers import result as result_lib
from wt_jax.transfer.problem import Problem
from wt_jax.util import files

RES, CLASSES = 8, 10
TINY = (4, 4, 4, 4, 8, 8, 8)  # resnet_tiny: stem, stage1, 2 inner, stage2, 2
# resnet_tiny with one block per stage (faster to compile): stem, stage1
# (tied by an identity shortcut), its inner group, stage2 (projection), its
# inner group.
SHALLOW = W.Widths('resnet_tiny', (1, 1), (8, 8, 8, 16, 16))


def _variables(widths, seed=0):
  """The model, random params and random BN statistics (every channel
  matters). Drawn with numpy on the shapes of `jax.eval_shape(model.init)`:
  XLA:CPU takes seconds to compile an init."""
  model = models.build_model(widths, CLASSES)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, RES, RES, 3)))
  rng = np.random.default_rng(seed)

  def draw(path, x):
    name = path[-1].key
    if name == 'var':
      v = rng.uniform(0.5, 2.0, x.shape)
    elif name == 'scale':
      v = rng.uniform(0.5, 1.5, x.shape)
    elif name in ('mean', 'bias'):
      v = rng.normal(0.0, 0.3, x.shape)
    else:  # kernels: He normal on fan-in
      v = rng.normal(0.0, np.sqrt(2.0 / np.prod(x.shape[:-1])), x.shape)
    return jnp.asarray(v, x.dtype)

  return model, jax.tree_util.tree_map_with_path(draw, shapes)


def _slice_like(tree, shapes):
  """The first k entries along every axis: the narrower net's weights."""
  return jax.tree.map(lambda x, s: x[tuple(slice(0, d) for d in s.shape)],
                      tree, shapes)


def _jit_apply(model):
  """Jitted apply (eager Flax is slow on CPU); train mode returns stats."""

  def apply(variables, x, train_mode, masks):
    if train_mode:
      return model.apply(variables, x, train=True, masks=masks,
                         mutable=['batch_stats'])
    return model.apply(variables, x, train=False, masks=masks)

  return jax.jit(apply, static_argnums=(2,))


def _images(n, seed=0):
  return np.random.default_rng(seed).normal(
      0.5, 1.5, (n, RES, RES, 3)).astype(np.float32)


def _batches(n, size, seed=0):
  rng = np.random.default_rng(seed)
  return [{'image': rng.normal(0.5, 1.5, (size, RES, RES, 3)).astype(
      np.float32), 'label': rng.integers(0, CLASSES, size).astype(np.int32),
           'mask': np.ones(size, np.float32)} for _ in range(n)]


# --------------------------------------------------------------------------
# A masked sub-network computes exactly the narrower network.
# --------------------------------------------------------------------------

NARROW = {
    # stem/stage1 tied (identity shortcut), stage2 has a projection.
    'resnet_tiny': (5, 5, 3, 7, 11, 9, 16),
    # stem, stage1 (depthwise tied to stem), expansions, streams, head.
    'mobilenet_v2_tiny': (5, 6, 20, 33, 9, 40, 50, 13, 21),
}


@pytest.mark.parametrize('arch', sorted(NARROW))
def test_masked_subnetwork_equals_narrow_network(arch):
  full = W.uniform(arch)
  narrow = full.replace(NARROW[arch])
  space = autoslim.make_space(full, RES, CLASSES)
  assert space.ties == frozenset(architectures.identity_ties(
      narrow.spec, narrow.values))
  if arch == 'resnet_tiny':
    assert space.ties == {('stem', 'stage1')}
    names = [l.name for l in architectures.layers(narrow.spec, narrow.values,
                                                  RES, CLASSES)]
    assert 'stage2/block1/shortcut' in names
    assert 'stage1/block1/shortcut' not in names
  model, variables = _variables(full)
  narrow_model = models.build_model(narrow, CLASSES)
  x = _images(4)
  shapes = jax.eval_shape(narrow_model.init, jax.random.PRNGKey(0), x)
  sliced = _slice_like(variables, shapes)
  masks = space.masks(narrow.array())
  for m in masks.values():
    assert m.dtype == jnp.float32
  # Eval mode: the running statistics of the kept channels.
  apply = _jit_apply(model)
  narrow_apply = _jit_apply(narrow_model)
  out_masked = apply(variables, x, False, masks)
  out_narrow = narrow_apply(sliced, x, False, None)
  np.testing.assert_allclose(out_masked, out_narrow, rtol=1e-4, atol=1e-4)
  assert np.abs(out_masked - apply(variables, x, False, None)).max() > 1e-2
  # Train mode: batch statistics are per channel, so the kept channels see
  # the narrower net's statistics.
  out_m, new_m = apply(variables, x, True, masks)
  out_n, new_n = narrow_apply(sliced, x, True, None)
  np.testing.assert_allclose(out_m, out_n, rtol=1e-4, atol=1e-4)
  chex.assert_trees_all_close(_slice_like(new_m, new_n), new_n, rtol=1e-4,
                              atol=1e-5)


# --------------------------------------------------------------------------
# The slimming space: grids, ties, MACs.
# --------------------------------------------------------------------------


def test_width_grid():
  assert autoslim.width_grid(16, 0.1, 4, 0.1) == (16, 14, 13, 11, 10, 8, 6, 5)
  assert autoslim.width_grid(8, 0.1, 4, 0.1) == (8, 7, 6, 5, 4)
  assert autoslim.width_grid(100, 0.25, 1, 0.5) == (100, 75, 50)
  assert autoslim.width_grid(4, 0.1, 4, 0.1) == (4,)  # at the minimum
  assert autoslim.width_grid(3, 0.1, 4, 0.1) == (3,)


def test_space_units_ties_and_macs():
  full = W.uniform('resnet_tiny')
  space = autoslim.make_space(full, RES, CLASSES)
  assert space.units[0] == ('stem', 'stage1')
  assert space.group_unit[:2] == (0, 0)
  assert space.macs(full.array()) == cost.macs(full, RES, CLASSES)
  rng = np.random.default_rng(0)
  for _ in range(5):
    levels = rng.integers(0, space.num_levels)
    w = space.widths_at(levels)
    assert w['stem'] == w['stage1']
    assert space.macs(space.counts(levels)) == cost.macs(w, RES, CLASSES)
    np.testing.assert_array_equal(space.levels_of(w), levels)
    np.testing.assert_array_equal(space.jnp_counts(jnp.asarray(levels)),
                                  space.counts(levels))
  # A random sub-network's expected MACs, exact, against enumeration.
  grid = np.asarray(list(itertools.product(*[range(n) for n in
                                              space.num_levels])))
  counts = np.stack([space.counts(l) for l in grid[::7]])
  assert len(grid) == 5**3 * 8**3
  all_counts = np.asarray(space.grid_table())[
      np.asarray(space.group_unit)[None, :],
      grid[:, np.asarray(space.group_unit)]]
  np.testing.assert_array_equal(all_counts[::7], counts)
  np.testing.assert_allclose(space.expected_random_macs(),
                             space.macs(all_counts).mean(), rtol=1e-12)
  # Depthwise: MobileNetV2 (a unit whose conv has in == out group).
  mb = autoslim.make_space(W.uniform('mobilenet_v2_tiny'), RES, CLASSES)
  keys = jax.random.split(jax.random.PRNGKey(1), 4000)
  levels = np.asarray(jax.vmap(mb.sample_levels)(keys))
  assert levels.min() == 0 and np.all(levels.max(0) == mb.min_levels)
  sampled = mb.macs(mb.jnp_counts(jnp.asarray(levels)), xp=np)
  np.testing.assert_allclose(sampled.mean(), mb.expected_random_macs(),
                             rtol=0.02)


def test_candidates_skip_new_identity_shortcut():
  """resnet_bottleneck_tiny: stem 8, stage1 16 (projection). Slimming
  stage1 to 8 would make it an identity shortcut: that level is skipped."""
  space = autoslim.make_space(W.uniform('resnet_bottleneck_tiny'), RES,
                              CLASSES)
  u = space.units.index(('stage1',))
  assert space.grids[u] == (16, 14, 13, 11, 10, 8, 6, 5)
  levels = space.full_levels.copy()
  levels[u] = 4  # stage1 = 10
  cands = dict(autoslim.candidates(space, levels))
  assert space.widths_at(cands[u])['stage1'] == 6  # 8 skipped
  assert len(cands) == space.num_units
  levels[u] = 7  # stage1 at its minimum: no candidate for it
  assert u not in dict(autoslim.candidates(space, levels))


# --------------------------------------------------------------------------
# Slimmable training: one sandwich step, 8 devices == 1 device.
# --------------------------------------------------------------------------


def _sandwich_steps(mesh, batches, space, loss_fn):
  model = models.build_model(space.widths, CLASSES)
  tc = defaults.get_config().train
  tc.update(batch_size=16, base_lr=0.8, warmup_epochs=0.0,
            label_smoothing=0.1)
  step = train.TrainStep(model, tc, mesh, seed=0, image_shape=(RES, RES, 3),
                         total_steps=10, steps_per_epoch=5, loss_fn=loss_fn)
  state = step.init()
  for batch in batches:
    state = step(state, train.global_batch(mesh, batch))
  assert step.jitted._cache_size() == 1  # one compile for every sampled width
  return train.to_host(state)


def test_sandwich_step_8_devices_equals_1_device():
  assert jax.device_count() == 8
  space = autoslim.make_space(SHALLOW.replace((4, 4, 4, 8, 8)), RES, CLASSES)
  loss_fn = autoslim.make_sandwich_loss(space, num_random=2)
  batches = _batches(2, 16)
  one = _sandwich_steps(train.make_mesh(jax.devices()[:1]), batches, space,
                        loss_fn)
  eight = _sandwich_steps(train.make_mesh(), batches, space, loss_fn)
  chex.assert_trees_all_close(eight, one, rtol=2e-5, atol=2e-6)
  assert set(one.sums) == {'loss', 'accuracy', 'min_accuracy', 'full_loss',
                           'student_loss', 'sandwich_macs', 'count'}
  assert float(one.sums['student_loss']) > 0
  # sandwich_macs = (full + smallest + 2 random) / full, per step.
  full = space.macs(space.widths.array())
  low = 1 + 3 * space.macs(space.counts(space.min_levels)) / full
  assert low < float(one.sums['sandwich_macs']) / 2 < 4


def test_sandwich_loss_parts():
  """The loss is CE(full) + distillation of the smallest and random widths
  from the stop-gradient full output; only the full pass updates BN stats."""
  space = autoslim.make_space(SHALLOW.replace((4, 4, 4, 8, 8)), RES, CLASSES)
  model, v = _variables(space.widths)
  batch = _batches(1, 8)[0]
  tc = ml_collections.ConfigDict({'label_smoothing': 0.0})
  rng = jax.random.PRNGKey(3)
  fn = autoslim.make_sandwich_loss(space, num_random=1)
  # The random width: what the loss draws from `rng` with num_random=1.
  rand = space.jnp_counts(space.sample_levels(jax.random.split(rng, 1)[0]))
  students = np.stack([space.counts(space.min_levels), np.asarray(rand)])

  def reference(params):
    """Unfused: full CE + CE(student, constant teacher), for each student."""
    variables = {'params': params, 'batch_stats': v['batch_stats']}
    logits, new = model.apply(variables, batch['image'], train=True,
                              mutable=['batch_stats'])
    teacher = jax.lax.stop_gradient(jax.nn.softmax(logits))
    ce = -jax.nn.log_softmax(logits)[jnp.arange(8), batch['label']].mean()
    parts = []
    for counts in students:
      s, _ = model.apply(variables, batch['image'], train=True,
                         masks=space.masks(counts), mutable=['batch_stats'])
      parts.append(-(teacher * jax.nn.log_softmax(s)).sum(-1).mean())
    return ce + sum(parts), (new['batch_stats'], ce, sum(parts))

  def fused(params):
    loss, (bs, m) = fn(model, params, v['batch_stats'], batch, rng, tc)
    return loss, (bs, m['full_loss'], m['student_loss'])

  (loss, (bs, ce, st)), grads = jax.jit(jax.value_and_grad(
      fused, has_aux=True))(v['params'])
  (loss_r, (bs_r, ce_r, st_r)), grads_r = jax.jit(jax.value_and_grad(
      reference, has_aux=True))(v['params'])
  np.testing.assert_allclose([loss, ce, st], [loss_r, ce_r, st_r], rtol=1e-5)
  assert float(st) > 0
  chex.assert_trees_all_close(bs, bs_r, rtol=1e-6)  # the full pass's stats
  chex.assert_trees_all_close(grads, grads_r, rtol=1e-4, atol=1e-6)


def test_train_macs_per_example():
  space = autoslim.make_space(W.uniform('resnet_tiny'), RES, CLASSES)
  analytic, executed = autoslim.train_macs_per_example(space, 2)
  full = cost.macs(space.widths, RES, CLASSES)
  smallest = cost.macs(space.widths_at(space.min_levels), RES, CLASSES)
  assert executed == 3 * 4 * full
  np.testing.assert_allclose(
      analytic, 3 * (full + smallest + 2 * space.expected_random_macs()))
  assert 3 * (full + 3 * smallest) < analytic < executed


# --------------------------------------------------------------------------
# Candidate evaluation: recalibration, vmapped == one at a time.
# --------------------------------------------------------------------------


@pytest.fixture(scope='module')
def evaluator():
  space = autoslim.make_space(SHALLOW, RES, CLASSES)
  model, v = _variables(space.widths, seed=1)
  v = {'params': v['params'],
       'batch_stats': jax.tree.map(jnp.zeros_like, v['batch_stats'])}
  return autoslim.CandidateEvaluator(
      model, space, train.make_mesh(), v, _batches(2, 16, seed=1),
      _batches(2, 24, seed=2), chunk=0), model, v


def test_recalibration_gives_batch_statistics(evaluator):
  """With the calibration batches' statistics, eval mode on their union
  computes what train mode computes on it (batch statistics)."""
  ev, model, v = evaluator
  space = ev.space
  levels = space.full_levels.copy()
  levels[[0, 2, 3]] = [2, 5, 1]
  counts = space.counts(levels)
  stats = ev.recalibrated_stats(jnp.asarray(np.stack([counts] * ev.chunk)))
  stats = jax.tree.map(lambda x: np.asarray(x)[0], stats)
  # Two equal halves: the mean of the batch means is the union's mean; the
  # variances match when both halves have the same variance -- so use one
  # batch twice.
  ev1 = autoslim.CandidateEvaluator(model, space, train.make_mesh(), v,
                                    _batches(1, 16, seed=1) * 2,
                                    _batches(1, 8), chunk=ev.chunk)
  stats1 = jax.tree.map(lambda x: np.asarray(x)[0], ev1.recalibrated_stats(
      jnp.asarray(np.stack([counts] * ev.chunk))))
  x = _batches(1, 16, seed=1)[0]['image']
  masks = space.masks(counts)
  train_out, _ = model.apply(v, x, train=True, masks=masks,
                             mutable=['batch_stats'])
  eval_out = model.apply({'params': v['params'], 'batch_stats': stats1}, x,
                         train=False, masks=masks)
  np.testing.assert_allclose(eval_out, train_out, rtol=1e-3, atol=1e-4)
  # Two different batches: means are averaged.
  halves = [model.apply(v, b['image'], train=True, masks=masks,
                        mutable=['batch_stats'])[1]['batch_stats']
            for b in _batches(2, 16, seed=1)]
  mean = jax.tree.map(lambda a, b: (a + b) / 2 / (1 - autoslim.BN_MOMENTUM),
                      *halves)
  chex.assert_trees_all_close(stats, mean, rtol=1e-4, atol=1e-5)


def test_vmapped_evaluation_equals_one_at_a_time(evaluator):
  ev, model, v = evaluator
  space = ev.space
  cands = [space.full_levels, space.min_levels] + [
      c for _, c in autoslim.candidates(space, space.full_levels)][:5]
  assert len(cands) > ev.chunk  # two chunks, the second one padded
  together = ev.evaluate(cands)
  single = autoslim.CandidateEvaluator(model, space, train.make_mesh(), v,
                                       _batches(2, 16, seed=1),
                                       _batches(2, 24, seed=2), chunk=1)
  one_by_one = [single.evaluate([c]) for c in cands]
  np.testing.assert_allclose(together['top1'],
                             [r['top1'][0] for r in one_by_one], atol=1e-6)
  np.testing.assert_allclose(together['loss'],
                             [r['loss'][0] for r in one_by_one], rtol=1e-5)
  assert single.rows_executed == len(cands)
  assert len(set(np.round(together['loss'], 5))) > 1


# --------------------------------------------------------------------------
# Greedy slimming.
# --------------------------------------------------------------------------


def test_greedy_slimming_reaches_target(evaluator, tmp_path):
  ev, _, _ = evaluator
  space = ev.space
  full = cost.macs(space.widths, RES, CLASSES)
  target = full // 2
  saved = []
  history = autoslim.greedy_slim(space, ev.evaluate, target, settings={'a': 1},
                                 eval_examples=80, save=saved.append)
  macs = [r['macs'] for r in history]
  assert macs[0] == full and macs[-1] <= target < macs[-2]
  assert all(a > b for a, b in zip(macs, macs[1:]))  # monotone
  for r in history:
    w = space.widths.replace(list(r['widths'].values()))  # valid Widths
    assert cost.macs(w, RES, CLASSES) == r['macs']
    assert architectures.identity_ties(w.spec, w.values) == (('stem',
                                                              'stage1'),)
    np.testing.assert_array_equal(space.levels_of(w), r['levels'])
  for a, b in zip(history, history[1:]):  # one unit, one step at a time
    changed = np.flatnonzero(np.asarray(b['levels']) != a['levels'])
    assert len(changed) == 1 and b['removed'] == list(space.units[changed[0]])
    assert b['candidates'] == len(autoslim.candidates(space, a['levels']))
    cand_macs = [space.macs(space.counts(c))
                 for _, c in autoslim.candidates(space, a['levels'])]
    assert b['eval_macs'] == 80 * sum(cand_macs)
  assert history[0]['eval_macs'] == 80 * full
  assert len(saved) == len(history)

  # Resume: from a partial history, only the remaining steps are evaluated
  # and the path is the same.
  calls = []

  def counting(levels_list):
    calls.append(len(levels_list))
    return ev.evaluate(levels_list)

  again = autoslim.greedy_slim(space, counting, target, history=history[:3],
                               settings={'a': 1}, eval_examples=80)
  assert [r['levels'] for r in again] == [r['levels'] for r in history]
  assert len(calls) == len(history) - 3
  # A higher target truncates the stored path; other settings are refused.
  higher = autoslim.greedy_slim(space, counting, macs[2], history=history,
                                settings={'a': 1})
  assert len(higher) == 3 and len(calls) == len(history) - 3
  with pytest.raises(ValueError, match='another slimming run'):
    autoslim.greedy_slim(space, counting, target, history=history,
                         settings={'a': 2})


def test_greedy_slimming_stops_at_minimum():
  space = autoslim.make_space(W.uniform('resnet_tiny').replace(TINY), RES,
                              CLASSES)  # 4-wide groups never slim
  fake = lambda ls: {'top1': np.zeros(len(ls)), 'loss': np.arange(len(ls))}
  history = autoslim.greedy_slim(space, fake, 1, eval_examples=1)
  np.testing.assert_array_equal(history[-1]['levels'], space.min_levels)
  # Ties in accuracy: the lower loss (here: the first candidate) wins.
  assert history[1]['removed'] == list(space.units[space.num_units - 3])


# --------------------------------------------------------------------------
# Config and the optimizer end to end (digits, a few steps), with resume.
# --------------------------------------------------------------------------


def _config():
  c = defaults.get_config()
  c.arch = 'resnet_tiny'
  c.optimizer = 'autoslim'
  c.autoslim = defaults.autoslim()
  c.data.augment = 'none'
  c.train.batch_size = 32
  c.train.eval_batch_size = 64
  c.train.warmup_epochs = 0.0
  c.train.log_every = 2
  c.train.checkpoint_every = 2
  c.autoslim.num_steps = 3
  c.autoslim.calib_batches = 1
  c.autoslim.eval_batches = 1
  c.autoslim.target_fraction = 0.7
  return c


def test_config_validation():
  c = _config()
  autoslim.validate(c)
  for field, value in (('step_fraction', 1.0), ('min_width', 0),
                       ('target_fraction', 0.0), ('num_random', -1),
                       ('calib_batches', 0), ('eval_batches', -1)):
    bad = _config()
    bad.autoslim[field] = value
    with pytest.raises(errors.ConfigError, match=f'autoslim.{field}'):
      autoslim.validate(bad)
  bad = _config()
  bad.data.val_fraction = 0.0
  with pytest.raises(errors.ConfigError, match='val_fraction'):
    autoslim.validate(bad)
  bad = _config()
  with bad.autoslim.unlocked():
    bad.autoslim.extra = 1
  with pytest.raises(errors.ConfigError, match='unknown fields'):
    autoslim.validate(bad)


def test_optimize_on_digits_and_resume(tmp_path, monkeypatch):
  c = _config()
  w = SHALLOW.replace((4, 4, 4, 16, 8))
  info = data.dataset_info(c.data)
  problem = Problem(w, c.data, info.resolution, info.num_classes,
                    info.num_examples['train'])
  workdir = str(tmp_path)
  splits = []
  make_dataset = data.make_dataset

  def recording(data_config, split, **kwargs):
    splits.append(split)
    return make_dataset(data_config, split, **kwargs)

  monkeypatch.setattr(data, 'make_dataset', recording)
  result = autoslim.optimize(c, problem, workdir)
  result_lib.save(workdir, result)  # what the optimizer registry does
  assert 'val' in splits and 'test' not in splits  # decisions on val only
  d = result.details
  full = cost.macs(w, RES, CLASSES)
  assert d['start_macs'] == full and d['target_macs'] == int(0.7 * full)
  assert cost.macs(result.widths, RES, CLASSES) <= d['target_macs']
  assert result.widths.same_structure(w) and d['reached_target']
  assert result_lib.load(workdir).widths == result.widths  # summary
  hist = files.read_json(os.path.join(workdir, result_lib.HISTORY))
  assert [r['macs'] for r in hist] == sorted((r['macs'] for r in hist),
                                             reverse=True)
  assert d['candidate_evaluations'] == sum(r['candidates'] for r in hist)
  assert d['candidate_eval_seconds'] > 0
  assert result.examples == 3 * 32 and d['train_steps'] == 3
  space = autoslim.make_space(w, RES, CLASSES)
  per_example, executed = autoslim.train_macs_per_example(space, 2)
  assert d['sandwich_train_macs'] == round(per_example * 96)
  assert d['sandwich_train_macs_executed'] == executed * 96
  assert result.train_macs == d['sandwich_train_macs'] + d['slimming_macs']
  assert d['train_macs_executed'] > result.train_macs
  assert d['slimming_macs'] == sum(r['eval_macs'] for r in hist)
  # Resume: training from its checkpoints (complete: no step runs), slimming
  # from history.json (only the steps after the stored ones are evaluated).
  os.remove(os.path.join(workdir, result_lib.SUMMARY))
  hist_short = hist[:2]
  files.write_json(os.path.join(workdir, result_lib.HISTORY), hist_short)
  calls = []
  original = autoslim.CandidateEvaluator.evaluate

  def counting(self, levels_list):
    calls.append(len(levels_list))
    return original(self, levels_list)

  monkeypatch.setattr(autoslim.CandidateEvaluator, 'evaluate', counting)
  again = autoslim.optimize(c, problem, workdir)
  assert again.widths == result.widths
  assert len(calls) == len(hist) - 2
  assert again.examples == result.examples


def test_candidate_val_batches_are_a_class_mixed_sample():
  """Eval splits come in class order; the scored batches must not."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  labels = np.repeat(np.arange(10), 30).astype(np.int32)  # class order
  batches = []
  for i in range(0, 320, 32):
    lab = np.zeros(32, np.int32)
    mask = np.zeros(32, np.float32)
    n = min(32, 300 - i)
    lab[:n], mask[:n] = labels[i:i + n], 1.0
    batches.append({'label': lab, 'mask': mask,
                    'image': np.zeros((32, 2, 2, 3), np.float32)})
  ds = tf.data.Dataset.from_tensor_slices(
      {k: np.stack([b[k] for b in batches]) for k in batches[0]})
  first = autoslim.take_batches(ds, 2)
  assert len(np.unique(np.concatenate([b['label'] for b in first]))) <= 3
  got = autoslim.sample_batches(ds, 2)
  assert len(got) == 2 and all(b['mask'].sum() == 32 for b in got)
  assert len(np.unique(np.concatenate([b['label'] for b in got]))) == 10
  assert autoslim.sample_batches(ds, 2)[0]['label'].tolist() == (
      got[0]['label'].tolist())  # fixed sample
  assert len(autoslim.sample_batches(ds, 0)) == 10
