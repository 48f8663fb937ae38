"""Concatenation and grouped convolutions in traced networks.

morph-net's published concat case (its flop_regularizer_test), hand counts of
MACs and params, masked == narrow networks, MorphNet's members of a
concatenation, group divisibility in every width the chain makes, and the
CLI chain on `tests/_concat_net.py`'s networks.
"""
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import _concat_net  # noqa: F401  (registers dense_tiny, inception_tiny)
from wt_jax.errors import WidthError
from wt_jax.nets import architectures
from wt_jax.nets import cost
from wt_jax.nets import graph as graph_lib
from wt_jax.nets import models
from wt_jax.nets import widths as W
from wt_jax.nets.graph import Layer
from wt_jax.optimizers import autoslim
from wt_jax.optimizers import morphnet
from wt_jax.optimizers.dmcp import chain as dmcp_chain
from wt_jax.transfer import extrapolate

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RES, CLASSES = 8, 10


# --------------------------------------------------------------------------
# morph-net's own concat case, in MAC units (its FLOPs / 2).
# --------------------------------------------------------------------------
# google-research/morph-net, morph_net/network_regularizers/
# flop_regularizer_test.py, GammaFlopsTest: a 17x19 RGB image; conv1 (13
# channels, 7x5 kernel) and conv2 (23, 1x1) on the image, concatenated;
# conv3 (29, 3x3, stride 2) and conv4 (31, 1x1) on the concatenation; SAME
# padding, a BN after each conv, no classifier, gamma_threshold 0.45.
_GAMMAS = {'g1': [0.8] * 7 + [0.2] * 6, 'g2': [-0.7] * 11 + [0.1] * 12,
           'g3': [0.6] * 10 + [-0.3] * 19, 'g4': [-0.5] * 17 + [-0.4] * 14}
_WIDTHS = {g: len(v) for g, v in _GAMMAS.items()}


def _morphnet_concat_graph():
  conv = lambda name, k, s, cin, cout, size, gin, gout: Layer(
      name, 'conv', k, s, cin, cout, (17, 19), size, gin, gout, (name,),
      (name + '_bn',))
  layers = [conv('conv1', (7, 5), 1, 3, 13, (17, 19), None, 'g1'),
            conv('conv2', 1, 1, 3, 23, (17, 19), None, 'g2'),
            conv('conv3', 3, 2, 36, 29, (9, 10), ('g1', 'g2'), 'g3'),
            conv('conv4', 1, 1, 36, 31, (17, 19), ('g1', 'g2'), 'g4')]
  return layers, graph_lib.LayerGraph.build(layers, list(_WIDTHS))


def test_morphnet_published_concat_case():
  layers, graph = _morphnet_concat_graph()
  params = {l.bn[0]: {'scale': jnp.asarray(_GAMMAS[l.out_group], jnp.float32)}
            for l in layers}
  structure = morphnet.structure_of(_WIDTHS, graph)
  # Published costs (testCost): coeff(conv) x alive_in x alive_out, where
  # morph-net's flop_coeff is 2 x kh x kw x H_out x W_out: 7 of conv1's
  # gammas and 11 of conv2's are above 0.45; conv3 has 10, conv4 17, each
  # reading 7 + 11 alive channels of the concatenation.
  published_flops = {'conv1': 2 * 35 * 17 * 19 * 7 * 3,
                     'conv2': 2 * 1 * 17 * 19 * 11 * 3,
                     'conv3': 2 * 9 * 9 * 10 * 10 * 18,
                     'conv4': 2 * 1 * 17 * 19 * 17 * 18}
  alive = morphnet.alive_counts(params, structure, 0.45)
  assert alive == {'g1': 7, 'g2': 11, 'g3': 10, 'g4': 17}
  for layer in layers:
    one = graph_lib.LayerGraph.build([layer], list(_WIDTHS))
    assert one.macs(np.asarray(list(alive.values()))) == (
        published_flops[layer.name] // 2)
  assert float(morphnet.alive_macs(params, structure, 0.45)) == (
      sum(published_flops.values()) / 2)
  # Published regularization term (testLossDecorated): 1410376.375 FLOPs
  # over all four convs (float32).
  term = float(morphnet.regularization_term(params, structure, 0.45))
  np.testing.assert_allclose(term, 1410376.375 / 2, rtol=1e-6)


def test_concatenated_input_counts_the_sum_of_its_groups():
  _, graph = _morphnet_concat_graph()
  counts = np.asarray([13, 23, 29, 31])
  assert graph.macs(counts) == (35 * 323 * 3 * 13 + 323 * 3 * 23 +
                                9 * 90 * 36 * 29 + 323 * 36 * 31)
  np.testing.assert_allclose(graph.macs(jnp.asarray(counts, jnp.float32),
                                        xp=jnp), graph.macs(counts))
  # A group concatenated twice counts twice.
  twice = graph_lib.LayerGraph.build([Layer(
      'c', 'conv', 1, 1, 26, 5, 4, 4, ('g1', 'g1'), 'g2', ('c',), None)],
                                     ['g1', 'g2'])
  assert twice.macs(np.asarray([13, 5])) == 16 * 26 * 5


# --------------------------------------------------------------------------
# Hand counts of the example networks.
# --------------------------------------------------------------------------


def _num_params(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('values', [None, (24, 8, 16, 8, 16, 8, 32)])
def test_dense_net_macs_and_params_by_hand(values):
  w = W.uniform('dense_tiny') if values is None else W.Widths(
      'dense_tiny', (2, 2), values)
  s, g11, g12, t1, g21, g22, t2 = w.values
  r, h, k = RES, RES // 2, CLASSES  # stage 2 after a 2x2 average pool
  macs = (9 * r * r * 3 * s + 9 * r * r * s * g11 + 9 * r * r * (s + g11) *
          g12 + r * r * (s + g11 + g12) * t1 + 9 * h * h * t1 * g21 +
          9 * h * h * (t1 + g21) * g22 + h * h * (t1 + g21 + g22) * t2 +
          t2 * k)
  params = (27 * s + 9 * s * g11 + 9 * (s + g11) * g12 +
            (s + g11 + g12) * t1 + 9 * t1 * g21 + 9 * (t1 + g21) * g22 +
            (t1 + g21 + g22) * t2 + t2 * k + k)
  # BN scale and bias: one BN per dense layer on its concatenated input,
  # one per transition, one at the end.
  params += 2 * (s + (s + g11) + (s + g11 + g12) + t1 + (t1 + g21) +
                 (t1 + g21 + g22) + t2)
  got = cost.count(w, r, k)
  assert (got.macs, got.params) == (macs, params)
  shapes = jax.eval_shape(models.build_model(w, k).init,
                          jax.random.PRNGKey(0), jnp.zeros((1, r, r, 3)))
  assert _num_params(shapes['params']) == params


@pytest.mark.parametrize('values', [None, (8, 8, 12, 8, 16, 24, 8, 32)])
def test_inception_net_macs_and_params_by_hand(values):
  w = W.uniform('inception_tiny') if values is None else W.Widths(
      'inception_tiny', (), values)
  s, b1, b2r, b2, b3, mix, nr, ni = w.values
  r, h, k = RES, RES // 2, CLASSES
  g2, g8 = _concat_net.BRANCH2_GROUPS, _concat_net.NEXT_GROUPS
  macs = (9 * r * r * 3 * s + r * r * s * b1 + r * r * s * b2r +
          9 * r * r * b2r * b2 // g2 + 9 * r * r * s * b3 +
          h * h * (b1 + b2 + b3) * mix + h * h * mix * nr +
          9 * h * h * nr * ni // g8 + h * h * ni * mix + mix * k)
  weights = (27 * s + s * b1 + s * b2r + 9 * b2r * b2 // g2 + 9 * s * b3 +
             (b1 + b2 + b3) * mix + mix * nr + 9 * nr * ni // g8 + ni * mix +
             mix * k + k)
  params = weights + 2 * (s + b1 + b2r + b2 + b3 + mix + nr + ni + mix)
  got = cost.count(w, r, k)
  assert (got.macs, got.params) == (macs, params)
  shapes = jax.eval_shape(models.build_model(w, k).init,
                          jax.random.PRNGKey(0), jnp.zeros((1, r, r, 3)))
  assert _num_params(shapes['params']) == params
  grouped = {l.name: l.feature_groups for l in got.layers
             if l.feature_groups > 1}
  assert grouped == {'branch2_conv': g2, 'next_inner_conv': g8}


def test_group_counts_set_the_multiples():
  w = W.uniform('inception_tiny')
  assert dict(zip(w.names, w.multiples)) == {
      'stem': 1, 'branch1': 1, 'branch2_reduce': 4, 'branch2': 4,
      'branch3': 1, 'mix': 1, 'next_reduce': 8, 'next_inner': 8}
  assert set(W.uniform('dense_tiny').multiples) == {1}
  for arch in ('resnet18', 'mobilenet_v2'):
    assert set(W.uniform(arch).multiples) == {1}
  with pytest.raises(WidthError, match=r"width of group 'next_inner' is 12, "
                     r'not a multiple of 8'):
    w.replace([16, 8, 8, 16, 8, 32, 16, 12])


# --------------------------------------------------------------------------
# A masked network computes the narrower one (AutoSlim, DMCP).
# --------------------------------------------------------------------------


def _kept(full: W.Widths, narrow: W.Widths) -> dict[str, np.ndarray]:
  """{group: full-network indices of the kept channels}, in order."""
  space = autoslim.make_space(full, RES, CLASSES)
  return {g: np.nonzero(order < narrow[g])[0]
          for g, order in space.keep_orders().items()}


def _channels(groups, kept, full: W.Widths) -> np.ndarray:
  """Kept indices of a concatenation of `groups` of the full network."""
  out, offset = [], 0
  for g in groups:
    out.append(kept[g] + offset)
    offset += full[g]
  return np.concatenate(out)


def _slice_params(variables, full: W.Widths, narrow: W.Widths):
  """The narrower network's parameters: the kept channels' entries."""
  kept = _kept(full, narrow)
  index = {}  # module path -> {leaf name: per-axis index arrays}
  for l in architectures.layers(full.spec, full.values, RES, CLASSES):
    out = (np.arange(CLASSES) if l.out_group is None else
           _channels(l.in_groups if l.kind == 'bn' else (l.out_group,), kept,
                     full))
    if l.kind == 'conv':
      per_group = narrow[l.in_groups[0]] // l.feature_groups if (
          l.feature_groups > 1) else None
      cin = (np.arange(per_group) if per_group is not None else
             np.arange(3) if not l.in_groups else
             _channels(l.in_groups, kept, full))
      index[l.path] = {'kernel': (slice(None), slice(None), cin, out)}
    elif l.kind == 'depthwise':
      index[l.path] = {'kernel': (slice(None), slice(None), slice(None), out)}
    elif l.kind == 'fc':
      index[l.path] = {'kernel': (_channels(l.in_groups, kept, full), out),
                       'bias': (out,)}
    if l.bn is not None:
      index[l.bn] = {n: (out,) for n in ('scale', 'bias', 'mean', 'var')}

  def take(path, x):
    keys = tuple(p.key for p in path)
    ix = index[keys[1:-1]][keys[-1]]
    for axis, i in enumerate(ix):
      if not isinstance(i, slice):
        x = jnp.take(x, jnp.asarray(i), axis=axis)
    return x

  return jax.tree_util.tree_map_with_path(take, variables)


@pytest.mark.parametrize('arch, narrow', [
    ('dense_tiny', (8, 4, 6, 10, 2, 6, 16)),
    ('inception_tiny', (8, 4, 4, 8, 6, 20, 8, 8)),
])
def test_masked_network_equals_the_narrow_one(arch, narrow):
  full = W.uniform(arch)
  narrow = full.replace(narrow)
  model = models.build_model(full, CLASSES)
  x = np.random.default_rng(0).normal(0.5, 1.5, (4, RES, RES, 3)).astype(
      np.float32)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  rng = np.random.default_rng(1)
  variables = jax.tree.map(
      lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype), shapes)
  narrow_model = models.build_model(narrow, CLASSES)
  sliced = _slice_params(variables, full, narrow)
  chex.assert_trees_all_equal_shapes(sliced, jax.eval_shape(
      narrow_model.init, jax.random.PRNGKey(0), x))
  space = autoslim.make_space(full, RES, CLASSES)
  masks = space.masks(narrow.array())

  def apply(m, v, train, masks=None):
    return m.apply(v, x, train=train, masks=masks,
                   mutable=['batch_stats'] if train else False)

  apply = jax.jit(apply, static_argnums=(0, 2))
  ref = apply(narrow_model, sliced, False)
  np.testing.assert_allclose(apply(model, variables, False, masks), ref,
                             rtol=1e-4, atol=1e-4)
  assert np.abs(apply(model, variables, False) - ref).max() > 1e-2
  (out, _), (ref, _) = (apply(model, variables, True, masks),
                        apply(narrow_model, sliced, True))
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
  assert space.macs(narrow.array()) == cost.macs(narrow, RES, CLASSES)


def test_keep_order_keeps_whole_blocks():
  order = graph_lib.keep_order(12, 4)  # 4 blocks of 3
  assert sorted(order.tolist()) == list(range(12))
  assert np.nonzero(order < 8)[0].tolist() == [0, 1, 3, 4, 6, 7, 9, 10]
  assert np.nonzero(order < 4)[0].tolist() == [0, 3, 6, 9]
  assert graph_lib.keep_order(5).tolist() == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------
# MorphNet on a concatenation: each group's slice of the BNs that read it.
# --------------------------------------------------------------------------


def test_morphnet_members_are_slices_of_the_concatenation_bns():
  w = W.uniform('dense_tiny')
  structure = morphnet.make_structure(w, RES, CLASSES)
  members = {u[0]: m for u, m in zip(structure.units, structure.members)}
  assert members['stem'] == ((('stage1/block1/bn',), 0),
                             (('stage1/block2/bn',), 0),
                             (('stage1/transition_bn',), 0))
  assert members['stage1/block1/growth'] == ((('stage1/block2/bn',), 16),
                                             (('stage1/transition_bn',), 16))
  assert members['stage1/block2/growth'] == ((('stage1/transition_bn',),
                                              24),)
  assert members['stage2'] == ((('final_bn',), 0),)
  # Every channel alive: the cost is the analytic MACs. Gammas that kill
  # channel j of the growth group in *every* BN that reads it remove it.
  model = models.build_model(w, CLASSES)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, RES, RES, 3)))['params']
  params = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), params)
  assert float(morphnet.alive_macs(params, structure)) == cost.macs(
      w, RES, CLASSES)
  dead = dict(params)
  for bn, first in members['stage1/block1/growth']:
    dead[bn[0]] = dict(dead[bn[0]], scale=dead[bn[0]]['scale'].at[
        first:first + 3].set(0.0))
  counts = morphnet.alive_counts(dead, structure)
  assert counts['stage1/block1/growth'] == 5 and counts['stem'] == 16
  one = dict(dead)  # alive in one member: alive
  bn, first = members['stage1/block1/growth'][0]
  one[bn[0]] = params[bn[0]]
  assert morphnet.alive_counts(one, structure)['stage1/block1/growth'] == 8
  # The term is the graph's closed form at the groups' alive counts and
  # |gamma| sums.
  alive = np.asarray([counts[n] for n in w.names], np.float64)
  sums = alive.copy()  # |gamma| is 1 on live channels, 0 on dead ones
  np.testing.assert_allclose(
      float(morphnet.regularization_term(dead, structure)),
      structure.graph.gamma_term(alive, sums), rtol=1e-6)


# --------------------------------------------------------------------------
# Group divisibility in every width the chain makes.
# --------------------------------------------------------------------------


def _respects(widths: W.Widths) -> bool:
  return all(v % m == 0 for v, m in zip(widths.values, widths.multiples))


def test_every_width_respects_the_group_counts():
  full = W.uniform('inception_tiny')
  for mult in (0.25, 0.3, 0.5, 0.75, 1.0, 1.3, 2.0):
    assert _respects(W.uniform('inception_tiny', mult, divisor=2))
  # An optimizer's counts (MorphNet's alive channels) and multipliers.
  fitted = W.fit(full, [5, 3, 5, 9, 1, 7, 13, 11], 1)
  assert fitted.values == (5, 3, 4, 8, 1, 7, 16, 8)
  assert _respects(W.from_multipliers(full, np.linspace(0.3, 1.7, 8), 2))
  # Extrapolated and FLOPs-matched: the top-up steps by lcm(divisor, G).
  for target in (60_000, 100_000, 173_888, 250_000):
    match = extrapolate.flops_match(full, target, RES, CLASSES,
                                    values=full.array() * np.linspace(
                                        0.5, 1.5, 8), divisor=2, min_width=2)
    assert _respects(match.widths) and match.macs <= target
    assert match.macs > target - 9 * 16 * 8 * 8  # no unit's step still fits
  # AutoSlim's grid and DMCP's chains.
  space = autoslim.make_space(full, RES, CLASSES, step_fraction=0.1,
                              min_width=2)
  for unit, grid in zip(space.units, space.grids):
    m = full.multiples[full.names.index(unit[0])]
    assert all(k % m == 0 for k in grid) and len(grid) > 1
  chain = dmcp_chain.make_chain(full, RES, CLASSES, group_fraction=0.1,
                                min_fraction=0.1, min_width=2)
  for u, unit in enumerate(chain.space.units):
    m = full.multiples[full.names.index(unit[0])]
    assert chain.group_size[u] % m == 0 and chain.min_channels[u] % m == 0
  rng = np.random.default_rng(0)
  for _ in range(5):
    assert _respects(chain.widths_of(rng.normal(0, 2, chain.alpha_shape)))
  # Marginal masks: a grouped conv's blocks shrink together.
  alpha = jnp.asarray(rng.normal(0, 1, chain.alpha_shape), jnp.float32)
  m = np.asarray(chain.marginal_masks(alpha)['next_inner'])
  np.testing.assert_array_equal(m.reshape(8, 2)[:, 0], m[0])  # block starts
  np.testing.assert_array_equal(m.reshape(8, 2), np.tile(m.reshape(8, 2)[0],
                                                         (8, 1)))


def test_random_subnetwork_macs_expectation_is_exact():
  space = autoslim.make_space(W.uniform('dense_tiny'), RES, CLASSES,
                              step_fraction=0.25, min_width=2)
  rng = np.random.default_rng(0)
  levels = np.stack([rng.integers(0, n, 40_000) for n in space.num_levels], 1)
  counts = np.asarray(space.grid_table())[np.asarray(space.group_unit)[None],
                                          levels[:, space.group_unit]]
  sampled = space.graph.macs(counts).mean()
  np.testing.assert_allclose(space.expected_random_macs(), sampled, rtol=5e-3)


# --------------------------------------------------------------------------
# The CLI chain on them.
# --------------------------------------------------------------------------


_FAST = ('--config.data.resolution=0', '--config.train.num_steps=8',
         '--config.train.log_every=4', '--config.train.checkpoint_every=4',
         '--config.morphnet.num_steps=6', '--config.morphnet.export_every=3',
         '--config.autoslim.num_steps=6', '--config.autoslim.eval_batches=1',
         '--config.autoslim.calib_batches=1', '--config.dmcp.num_steps=8',
         '--config.seeds=0,', '--config.projection.resolution=6',
         '--config.transfer.divisor=2', '--config.transfer.min_width=2')


def _cli(tmp_path, arch, optimizer, *extra):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, HERE]))
  cmd = [sys.executable, '-m', 'wt_jax.main', '--config=configs/quickstart.py',
         f'--workdir={tmp_path}', f'--config.arch={arch}',
         '--config.arch_module=_concat_net', f'--config.optimizer={optimizer}',
         '--config.stages=optimize,transfer,train_transferred,report',
         *_FAST, *extra]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True,
                        text=True, check=False, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize('arch, optimizer, extra', [
    ('dense_tiny', 'morphnet', ('--config.projection.depth_mult=0.5',)),
    ('inception_tiny', 'morphnet', ('--config.projection.depth_mult=1',)),
    ('inception_tiny', 'autoslim', ('--config.projection.depth_mult=1',)),
    ('inception_tiny', 'dmcp', ('--config.projection.depth_mult=1',)),
])
def test_cli_chain_on_concatenation_and_grouped_convs(tmp_path, arch,
                                                      optimizer, extra):
  out = _cli(tmp_path, arch, optimizer, '--config.projection.width_mult=0.5',
             '--config.projection.sample_fraction=0.5', *extra)
  assert out.returncode == 0, out.stderr[-3000:]
  full = W.uniform(arch)
  written = [W.load(str(p)) for p in (tmp_path / 'widths').glob('*.json')]
  assert {'uniform', 'transferred'} <= {
      p.stem for p in (tmp_path / 'widths').glob('*.json')}
  summaries = list(tmp_path.glob('**/summary.json'))
  assert summaries
  optimized = [W.from_json(json.loads(p.read_text())['widths'])
               for p in summaries]
  for w in written + optimized:
    assert _respects(w), w.as_dict()
  transferred = W.load(str(tmp_path / 'widths' / 'transferred.json'))
  assert transferred.same_structure(full)
  assert cost.macs(transferred, RES, CLASSES) <= cost.macs(full, RES, CLASSES)


def test_readme_dense_example_is_the_tested_network():
  """The README's DenseNet-style code, registered under another name,
  counts as dense_tiny at every depth."""
  text = open(os.path.join(REPO, 'README.md')).read()
  section = text[text.index('**Concatenation and grouped convolutions**'):]
  code = section[section.index('```python') + 9:section.index('```\n\n')]
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from typing import Mapping  # pylint: disable=g-import-not-at-top
  import wt_jax  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=exec-used
  exec(code.replace("'dense_tiny'", "'readme_dense'"),
       dict(nn=nn, jnp=jnp, Mapping=Mapping, wt_jax=wt_jax))
  for res, depth in ((8, None), (32, (1, 3))):
    ours, readme = (cost.count(W.uniform(n, depth=depth), res, 10)
                    for n in ('dense_tiny', 'readme_dense'))
    assert (readme.macs, readme.params) == (ours.macs, ours.params)
