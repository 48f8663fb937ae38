"""Built-in families traced like any network == the hand-written description.

Issue 22 removed the hand-written layer lists of the built-in families; the
layer graph, groups, ties and masks now come from tracing the families'
Flax modules (`wt_jax.nets.families`, registered through `custom_archs`). These
tests compare every built-in, at several widths, depths and resolutions,
with the description the library had before (kept as an oracle in
`tests/_reference_nets.py` and `tests/_reference_models.py`): groups and
their roles, uniform widths, every layer (name, kind, kernel, stride,
channels, sizes, groups, parameter paths, BN), identity ties, MACs and
params, MorphNet's per-unit BN members, AutoSlim's masked layers, and the
network's outputs with and without masks.
"""
import os
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wt_jax.nets import architectures
from wt_jax.nets import cost
from wt_jax.nets import graph
from wt_jax.nets import models
from wt_jax.nets import widths as W
from wt_jax.optimizers import morphnet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _reference_models  # pylint: disable=g-import-not-at-top,wrong-import-position
import _reference_nets as ref  # pylint: disable=g-import-not-at-top,wrong-import-position


def _settings(name):
  """(width_mult, depth or None, resolution) to compare `name` at."""
  spec = ref.get_arch(name)
  res = ref.default_resolution(spec)
  out = [(1.0, None, res), (0.5, None, 32), (0.35, None, 64)]
  out.append((0.75, tuple(max(1, d // 2) for d in spec.depth), 32))
  out.append((1.4, tuple(d + 1 for d in spec.depth), 32))
  return out


def _random_widths(w, rng, tie_breaking):
  """`w` with random multiples of 8; with `tie_breaking`, tied groups get
  different widths (ResNet's identity shortcuts become projections)."""
  vals = rng.integers(1, 9, size=len(w)) * 8
  if not tie_breaking:
    for a, b in ref.identity_ties(ref.get_arch(w.arch, w.depth), w.values):
      vals[w.names.index(b)] = vals[w.names.index(a)]
  return w.replace(vals.tolist())


def _check_same(w, resolution, classes=10):
  spec, old = w.spec, ref.get_arch(w.arch, w.depth)
  assert architectures.groups(spec) == tuple(
      architectures.Group(g.name, g.kind, g.stage, g.block, g.position)
      for g in ref.groups(old))
  traced = architectures.layers(spec, w.values, resolution, classes)
  assert traced == ref.layers(old, w.values, resolution, classes)
  assert architectures.identity_ties(spec, w.values) == ref.identity_ties(
      old, w.values)
  names = [g.name for g in ref.groups(old)]
  old_ties = ref.identity_ties(old, w.values)
  assert architectures.tie_units(spec, w.values) == graph.tie_units(
      names, old_ties)
  hand = graph.LayerGraph.build(
      ref.layers(old, w.values, resolution, classes), names, old_ties)
  c = cost.count(w, resolution, classes)
  assert c.macs == int(hand.macs(np.asarray(w.values, np.int64)))
  assert c.params == sum(l.params for l in hand.layers)
  members = morphnet.make_structure(w, resolution, classes).members
  assert members == tuple(
      tuple((l.bn, 0) for l in hand.layers if l.bn is not None and
            hand.unit_index(l.out_group) == u) for u in range(len(hand.units)))
  masked = spec.net.masked(spec.depth, w.values)
  assert masked == {l.bn: l.out_group for l in hand.layers if l.bn}


@pytest.mark.parametrize('name', architectures.NAMES)
def test_traced_description_equals_the_hand_written_one(name):
  rng = np.random.default_rng(sum(map(ord, name)))
  for mult, depth, res in _settings(name):
    w = W.uniform(name, mult, depth=depth)
    old = ref.get_arch(name, depth)
    assert w.values == ref.uniform_values(old, mult)
    _check_same(w, res)
    for tie_breaking in (False, True):
      _check_same(_random_widths(w, rng, tie_breaking), res)


def test_identity_ties_come_from_the_trace():
  """ResNet-18's stem and stage1 are tied at uniform widths, by the add the
  trace finds; a wider stage1 gets a projection conv instead."""
  w = W.uniform('resnet18', 0.25)
  assert architectures.identity_ties(w.spec, w.values) == (('stem',
                                                            'stage1'),)
  names = [l.name for l in architectures.layers(w.spec, w.values, 32, 10)]
  assert 'stage1/block1/shortcut' not in names
  wider = w.replace([v * 2 if n == 'stage1' else v
                     for n, v in zip(w.names, w.values)])
  assert architectures.identity_ties(wider.spec, wider.values) == ()
  names = [l.name for l in architectures.layers(wider.spec, wider.values, 32,
                                                10)]
  assert 'stage1/block1/shortcut' in names


_OUTPUT_CASES = [('resnet_tiny', 1.0), ('resnet_bottleneck_tiny', 1.0),
                 ('mobilenet_v2_tiny', 1.0), ('resnet20_cifar', 0.5),
                 ('mobilenet_v2_cifar', 0.25)]


@pytest.mark.parametrize('name, mult', _OUTPUT_CASES)
def test_modules_compute_what_the_hand_written_modules_did(name, mult):
  w = W.uniform(name, mult)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 16, 16, 3))
  new, old = models.build_model(w, 10), _reference_models.build_model(w, 10)
  variables = new.init(jax.random.PRNGKey(0), x)
  chex.assert_trees_all_equal(variables, old.init(jax.random.PRNGKey(0), x))
  rng = np.random.default_rng(0)
  masks = {n: jnp.asarray(rng.random(v) < 0.6, jnp.float32)
           for n, v in zip(w.names, w.values)}
  for m in (None, masks):
    chex.assert_trees_all_equal(new.apply(variables, x, masks=m),
                                old.apply(variables, x, masks=m))
    out_new, state_new = new.apply(variables, x, train=True, masks=m,
                                   mutable=['batch_stats'])
    out_old, state_old = old.apply(variables, x, train=True, masks=m,
                                   mutable=['batch_stats'])
    chex.assert_trees_all_equal((out_new, state_new), (out_old, state_old))
