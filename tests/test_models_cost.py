"""Models and the analytic cost counter: shapes, params, published counts, XLA."""
import functools
import json
import subprocess
import sys

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from wt_jax.nets import architectures
from wt_jax.nets import cost
from wt_jax.nets import models
from wt_jax.nets import widths as W


def _init_shapes(widths, resolution, num_classes=10):
  model = models.build_model(widths, num_classes)
  x = jnp.zeros((2, resolution, resolution, 3))
  return model, jax.eval_shape(
      functools.partial(model.init, train=False), jax.random.PRNGKey(0), x)


def _num_params(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize('arch', architectures.NAMES)
def test_output_shape_every_architecture(arch):
  w = W.uniform(arch, 0.25)
  model = models.build_model(w, 7)
  x = jnp.ones((2, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  y = model.apply(variables, x, train=False)
  chex.assert_shape(y, (2, 7))
  chex.assert_tree_all_finite(y)
  y, state = model.apply(variables, x, train=True, mutable=['batch_stats'])
  chex.assert_shape(y, (2, 7))
  assert set(state) == {'batch_stats'}


@pytest.mark.parametrize('arch', architectures.NAMES)
def test_layer_graph_matches_model_parameters(arch):
  w = W.uniform(arch, 0.5)
  _, shapes = _init_shapes(w, 32)
  params = shapes['params']
  layers = cost.count(w, 32, 10).layers
  for layer in layers:
    node = functools.reduce(lambda t, k: t[k], layer.path, params)
    if layer.kind == 'fc':
      assert node['kernel'].shape == (layer.in_channels, layer.out_channels)
      continue
    cin = 1 if layer.kind == 'depthwise' else layer.in_channels
    assert node['kernel'].shape == (layer.kernel, layer.kernel, cin,
                                    layer.out_channels), layer.name
    bn = functools.reduce(lambda t, k: t[k], layer.bn, params)
    assert bn['scale'].shape == (layer.out_channels,), layer.name
  assert _num_params(params) == cost.params(w, 32, 10)


_TEST_ARCHS = ('resnet_tiny', 'resnet_bottleneck_tiny', 'mobilenet_v2_tiny',
               'resnet20_cifar', 'resnet18', 'mobilenet_v2')


@settings(max_examples=20, deadline=None)
@given(arch=st.sampled_from(_TEST_ARCHS), data=st.data())
def test_analytic_params_equal_model_params_random_widths(arch, data):
  """Property: for random width vectors, analytic params = Flax params."""
  base = W.uniform(arch)
  values = data.draw(st.lists(st.integers(1, 24), min_size=len(base),
                              max_size=len(base)))
  w = base.replace(values)
  _, shapes = _init_shapes(w, 16)
  assert _num_params(shapes['params']) == cost.params(w, 16, 10)


@pytest.mark.parametrize('arch, gmacs, params', [
    ('resnet18', 1.81, 11_689_512),
    ('resnet34', 3.66, 21_797_672),
    ('resnet50', 4.09, 25_557_032),
    ('resnet101', 7.80, 44_549_160),
    ('mobilenet_v2', 0.300, 3_504_872),
])
def test_published_counts_at_224(arch, gmacs, params):
  c = cost.count(W.uniform(arch), 224, 1000)
  assert c.params == params
  assert abs(c.macs / 1e9 - gmacs) / gmacs < 0.01


def test_model_params_equal_published_resnet50():
  _, shapes = _init_shapes(W.uniform('resnet50'), 224, 1000)
  assert _num_params(shapes['params']) == 25_557_032


def test_closed_form_macs_small_net():
  # resnet_tiny at width 8 everywhere, 8x8 input, 10 classes, by hand:
  w = W.uniform('resnet_tiny', 0.5)
  assert w.values == (8,) * 7
  conv3 = lambda cin, cout, side: 9 * cin * cout * side * side
  stem = conv3(3, 8, 8)
  stage1 = 4 * conv3(8, 8, 8)  # two blocks of two 3x3 convs at 8x8
  stage2 = 4 * conv3(8, 8, 4) + 8 * 8 * 4 * 4  # + the 1x1/2 projection
  expected = stem + stage1 + stage2 + 8 * 10  # + FC
  assert cost.macs(w, 8, 10) == expected


def _traced_macs(model, resolution):
  """MACs per example read off the model's own jaxpr (an independent count).

  Every conv_general_dilated contributes (output elements per example) x
  (kernel elements per output channel), every dot_general (the FC layer)
  output elements x the contracted size; nested jaxprs are walked.
  """
  x = jnp.zeros((1, resolution, resolution, 3))
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
      variables, x)

  def walk(jx):
    total = 0
    for eqn in jx.eqns:
      out = eqn.outvars[0].aval.shape
      if eqn.primitive.name == 'conv_general_dilated':
        kernel = eqn.invars[1].aval.shape  # HWIO: kh, kw, cin / groups, cout
        total += int(np.prod(out)) * int(np.prod(kernel[:3]))
      elif eqn.primitive.name == 'dot_general':
        (contract, _), _ = eqn.params['dimension_numbers']
        lhs = eqn.invars[0].aval.shape
        total += int(np.prod(out)) * int(np.prod([lhs[d] for d in contract]))
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        total += walk(sub)
    return total

  return walk(jaxpr.jaxpr)


@pytest.mark.parametrize('arch, width_mult, resolution', [
    ('resnet_tiny', 1.0, 8), ('resnet_bottleneck_tiny', 1.0, 8),
    ('mobilenet_v2_tiny', 1.0, 8), ('resnet20_cifar', 0.5, 16),
    ('mobilenet_v2', 0.25, 32), ('resnet50', 0.25, 32)])
def test_macs_equal_the_count_traced_from_the_model(arch, width_mult,
                                                     resolution):
  w = W.uniform(arch, width_mult)
  model = models.build_model(w, 10)
  assert cost.macs(w, resolution, 10) == _traced_macs(model, resolution)


def _xla_flops(fn, *args):
  return jax.jit(fn).lower(*args).compile().cost_analysis()['flops']


def test_xla_flops_equal_two_macs_on_1x1_conv_net():
  """On 1x1 (unpadded) convs XLA's FLOPs are exactly 2 x our MACs."""
  layers = [architectures.Layer(f'c{i}', 'conv', 1, s, cin, cout, n, -(-n // s),
                                None, None, (), None)
            for i, (s, cin, cout, n) in enumerate(
                [(1, 3, 16, 12), (2, 16, 24, 12), (1, 24, 8, 6)])]
  kernels = [jnp.ones((1, 1, l.in_channels, l.out_channels)) for l in layers]

  def net(x, ks):
    for l, k in zip(layers, ks):
      x = jax.lax.conv_general_dilated(x, k, (l.stride,) * 2, 'VALID',
                                       dimension_numbers=('NHWC', 'HWIO',
                                                          'NHWC'))
    return x

  flops = _xla_flops(net, jnp.ones((1, 12, 12, 3)), kernels)
  assert flops == 2 * sum(l.macs for l in layers)


@pytest.mark.parametrize('arch', ['resnet_tiny', 'mobilenet_v2_tiny',
                                  'resnet18'])
def test_xla_flops_equal_unpadded_macs_per_layer(arch):
  """Padded convs: XLA counts only taps inside the image: `unpadded_macs`."""
  w = W.uniform(arch, 0.25)
  for layer in cost.count(w, 32, 10).layers:
    if layer.kind == 'fc':
      continue
    p = layer.kernel // 2
    groups = layer.in_channels if layer.kind == 'depthwise' else 1
    k = jnp.ones((layer.kernel, layer.kernel, layer.in_channels // groups,
                  layer.out_channels))
    x = jnp.ones((1, layer.in_size, layer.in_size, layer.in_channels))
    conv = lambda x, k, s=layer.stride, p=p, g=groups: (
        jax.lax.conv_general_dilated(
            x, k, (s, s), ((p, p), (p, p)), feature_group_count=g,
            dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
    assert _xla_flops(conv, x, k) == 2 * cost.unpadded_macs(layer), layer.name
    assert cost.unpadded_macs(layer) <= layer.macs


@pytest.mark.parametrize('arch', ['resnet18_cifar', 'resnet20_cifar',
                                  'mobilenet_v2_cifar'])
def test_xla_whole_network_relation(arch):
  """Whole forward pass: XLA FLOPs = 2 x unpadded MACs + elementwise work.

  XLA drops the padding taps (so XLA/2MACs is 0.88 for ResNet-18-CIFAR w0.25
  at 32x32, 0.93 for ResNet-18 at 224) and adds BN, activation, add and pool
  arithmetic, which is 0.4-11% of the unpadded conv work on these nets.
  """
  w = W.uniform(arch, 0.25)
  model, _ = _init_shapes(w, 32)
  x = jnp.ones((1, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  flops = _xla_flops(lambda v, x: model.apply(v, x, train=False), variables, x)
  layers = cost.count(w, 32, 10).layers
  unpadded = sum(cost.unpadded_macs(l) for l in layers)
  assert 1.0 < flops / (2 * unpadded) < 1.15
  assert unpadded < sum(l.macs for l in layers)


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'wt_jax.cost', *args],
                        capture_output=True, text=True, check=False)


def test_cost_cli_json_resnet18():
  out = _cli('--arch=resnet18', '--resolution=224', '--json')
  assert out.returncode == 0, out.stderr
  obj = json.loads(out.stdout)
  assert obj['params'] == 11_689_512
  assert round(obj['macs'] / 1e9, 2) == 1.81
  assert len(obj['layers']) == 21 and obj['layers'][0]['name'] == 'stem/conv'


def test_cost_cli_table_widths_file_and_errors(tmp_path):
  path = tmp_path / 'w.json'
  W.save(str(path), W.uniform('resnet20_cifar', 0.5))
  out = _cli(f'--widths={path}')
  assert out.returncode == 0, out.stderr
  assert 'stage3/block3/conv1' in out.stdout and 'total' in out.stdout
  out = _cli('--arch=resnet9000')
  assert out.returncode == 2 and 'known architectures: resnet18' in out.stderr
  out = _cli('--arch=resnet18', f'--widths={path}')
  assert out.returncode == 2 and "'resnet18' is expected" in out.stderr
