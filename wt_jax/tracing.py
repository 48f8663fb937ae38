"""A Flax CNN's layer graph, found by tracing it once at probe widths.

`trace(module, probes, resolution)` initialises `module` abstractly (no
arithmetic: `jax.make_jaxpr` over `module.init_with_output`, on a 2 x
resolution x resolution x 3 image) while `flax.linen.intercept_methods`
records every `nn.Conv`, `nn.Dense` and `nn.BatchNorm` call: its module
path, input and output shapes and attributes. `module` was built at *probe
widths*: one distinct channel count per group, none equal to the image's 3
channels or to `CLASSES_PROBE`, the probe number of classes. So every
channel count in the trace names its group, and the trace gives
(`Trace.layers`, the records of `graph.Layer`):

* every conv and dense layer: input group (None: the image's 3 channels),
  output group (None: the logits), kernel, stride, depthwise (a
  `feature_group_count` equal to the input channels, which ties input and
  output), input and output spatial size, bias and Flax parameter path;
* every BatchNorm and the group it normalizes: attached to the conv or dense
  layer whose output it reads directly (`Layer.bn`), or else a layer of kind
  'bn' of its own (no weights, no MACs; e.g. a pre-activation BN);
* the groups that meet in an elementwise op (a residual add): tensors of two
  different groups have different probe widths, so combining them fails
  inside the trace, and the failure is reported as an `ArchError` naming the
  module and both groups. What traces is therefore only ever a group added
  to itself: a registered network has no ties between groups.

What the layer list cannot express is refused while tracing, with an
`ArchError` naming the module, the user's source line and the group
(`trace_checks`): a conv whose feature count is no group's probe width (a
hard-coded or derived width), a grouped conv, a reshape, transpose, slice,
pad or concatenation that does not keep a group's channel axis whole as the
last axis (flattening before a dense layer, channel shuffles, concatenated
groups, whose widths would add), a convolution or matmul outside `nn.Conv`
/ `nn.Dense`, a weight-shared module, and parameters outside those three
layer types (which the cost would miss).

`Trace.masked` maps the module path of every Conv, Dense and BatchNorm whose
output is a group to that group: AutoSlim's masks multiply those outputs
(`models.CustomNet`). `Trace.at(widths, num_classes)` substitutes real
widths into the layers. The structure of a network must not depend on its
widths (the trace is taken at the probe widths only).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from wt_jax import trace_checks
from wt_jax.errors import ArchError
from wt_jax.graph import Layer
from wt_jax.trace_checks import ProbeNames
from wt_jax.trace_checks import label

IMAGE_CHANNELS = 3
CLASSES_PROBE = 997  # the number of classes the trace runs with
_FIRST_PROBE = 1009


def probe_widths(names) -> dict[str, int]:
  """One distinct channel count per group name (odd numbers from 1009)."""
  return {n: _FIRST_PROBE + 2 * i for i, n in enumerate(names)}


@dataclasses.dataclass(frozen=True)
class Trace:
  """A network's layers at its probe widths (see the module doc)."""
  layers: tuple[Layer, ...]
  masked: tuple[tuple[tuple[str, ...], str], ...]  # (module path, group)
  probes: tuple[tuple[str, int], ...]

  def at(self, widths: Mapping[str, int], num_classes: int
         ) -> tuple[Layer, ...]:
    """The layers with `widths[group]` channels and `num_classes` logits."""
    def side(group, traced):
      if group is not None:
        return int(widths[group])
      return int(num_classes) if traced == CLASSES_PROBE else traced
    return tuple(dataclasses.replace(
        l, in_channels=side(l.in_group, l.in_channels),
        out_channels=side(l.out_group, l.out_channels)) for l in self.layers)


@dataclasses.dataclass
class _Call:
  kind: str  # 'conv' | 'dense' | 'bn'
  path: tuple[str, ...]
  module: nn.Module
  x: Any  # the input tracer
  y: Any  # the output tracer


_KINDS = ((nn.Conv, 'conv'), (nn.Dense, 'dense'), (nn.BatchNorm, 'bn'))


def _kind(module) -> Optional[str]:
  for cls, kind in _KINDS:
    if isinstance(module, cls):
      return kind
  return None


def _record(module, x, probes: Mapping[str, int]):
  """(calls, scopes, jaxpr, variables, output) of `module.init` on `x`.

  `scopes[i]` is the module path of the named scope '@i' around each module
  call, so that every jaxpr equation's name stack gives its module.
  """
  names = ProbeNames(probes)
  calls: list[_Call] = []
  scopes: list[tuple[str, ...]] = []  # module path of the named scope '@i'

  def intercept(next_fun, args, kwargs, context):
    if context.method_name != '__call__':
      return next_fun(*args, **kwargs)
    path = tuple(context.module.path)
    if isinstance(context.module, nn.Conv) and args:
      trace_checks.check_conv_groups(context.module, args[0], path, names)
    scopes.append(path)
    with jax.named_scope(f'@{len(scopes) - 1}'):
      try:
        y = next_fun(*args, **kwargs)
      except ArchError:
        raise
      except (TypeError, ValueError) as e:
        mixed = names.mixing_error(e, path)
        if mixed is None:
          raise
        raise mixed from e
    kind = _kind(context.module)
    if kind is not None and args:
      calls.append(_Call(kind, path, context.module, args[0], y))
    return y

  key = jax.random.PRNGKey(0)

  def init(image):
    with nn.intercept_methods(intercept):
      return module.init_with_output({'params': key, 'dropout': key}, image,
                                     train=False)

  jaxpr, (out, variables) = jax.make_jaxpr(init, return_shape=True)(x)
  return calls, scopes, jaxpr, variables, out


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _square(values, what: str, call: _Call) -> int:
  values = tuple(int(v) for v in values)
  if len(set(values)) != 1:
    raise ArchError(f'{call.kind} {label(call.path)}: {what} {values} is '
                    'not square; the layer graph counts square kernels, '
                    'strides and images')
  return values[0]


def _spatial(shape, call: _Call) -> int:
  if len(shape) == 2:
    return 1
  if len(shape) != 4:
    raise ArchError(f'{call.kind} {label(call.path)} reads a tensor of shape '
                    f'{tuple(shape)}; expected (batch, H, W, C) or (batch, C)')
  return _square(shape[1:3], 'the spatial size', call)


class _Groups:
  """Group of a layer's input and output channels (ArchError if none)."""

  def __init__(self, names: ProbeNames):
    self.names = names

  def input(self, c: int, call: _Call) -> Optional[str]:
    if c in self.names.group:
      return self.names.group[c]
    if c in (IMAGE_CHANNELS, CLASSES_PROBE):
      return None
    raise ArchError(
        f'{call.kind} {label(call.path)} reads {c} channels, which is no '
        "group's width (did a reshape, slice or concatenation change the "
        'channel axis before it?)')

  def output(self, c: int, call: _Call) -> Optional[str]:
    if c in self.names.group:
      return self.names.group[c]
    if c == CLASSES_PROBE and call.kind != 'bn':
      return None
    raise ArchError(
        f'{call.kind} {label(call.path)} has {c} output features, which is '
        'not a widths entry: its features must be widths[<group>] (or '
        "num_classes for the logits), read from the module's widths mapping")


def _conv_layer(call: _Call, params, groups: _Groups) -> Layer:
  m, xs, ys = call.module, call.x.shape, call.y.shape
  kernel = _get(params, call.path)['kernel'].shape
  fgc = int(m.feature_group_count)
  cin, cout = int(xs[-1]), int(ys[-1])
  kind = 'conv' if fgc == 1 else 'depthwise'  # check_conv_groups ran
  strides = m.strides if m.strides is not None else 1
  strides = (strides,) * 2 if isinstance(strides, int) else tuple(strides)
  return Layer(
      '/'.join(call.path), kind, _square(kernel[:2], 'the kernel', call),
      _square(strides, 'the stride', call), cin, cout, _spatial(xs, call),
      _spatial(ys, call), groups.input(cin, call), groups.output(cout, call),
      call.path, None, bias=bool(m.use_bias))


def _dense_layer(call: _Call, groups: _Groups) -> Layer:
  xs, ys = call.x.shape, call.y.shape
  cin, cout = int(xs[-1]), int(ys[-1])
  size = _spatial(xs, call)
  return Layer('/'.join(call.path), 'fc', 1, 1, cin, cout, size, size,
               groups.input(cin, call), groups.output(cout, call), call.path,
               None, bias=bool(call.module.use_bias))


def _bn_group(call: _Call, groups: _Groups) -> str:
  m = call.module
  if not (m.use_scale and m.use_bias) or m.axis not in (-1, len(call.x.shape)
                                                       - 1):
    raise ArchError(
        f'BatchNorm {label(call.path)}: supported is the default '
        'BatchNorm (axis=-1, use_scale=True, use_bias=True); MorphNet reads '
        'its scales')
  return groups.output(int(call.x.shape[-1]), call)


def _layers(calls, params, names: ProbeNames) -> tuple[list[Layer], dict]:
  """The layer list (BNs attached) and {module path: output group}."""
  groups = _Groups(names)
  out: list[Layer] = []
  producer: dict[int, int] = {}  # id(output tracer) -> index in `out`
  masked = {}
  for call in calls:
    if call.kind == 'bn':
      group = _bn_group(call, groups)
      i = producer.pop(id(call.x), None)
      if i is not None and out[i].bn is None:
        out[i] = dataclasses.replace(out[i], bn=call.path)
      else:
        c, size = int(call.x.shape[-1]), _spatial(call.x.shape, call)
        out.append(Layer('/'.join(call.path), 'bn', 0, 1, c, c, size, size,
                         group, group, call.path, call.path))
      masked[call.path] = group
      continue
    layer = (_conv_layer(call, params, groups) if call.kind == 'conv' else
             _dense_layer(call, groups))
    producer[id(call.y)] = len(out)
    out.append(layer)
    if layer.out_group is not None:
      masked[call.path] = layer.out_group
  return out, masked


def trace(module: nn.Module, probes: Mapping[str, int], resolution: int
          ) -> Trace:
  """The layers of `module` (built at `probes`, with `CLASSES_PROBE`
  classes) on a `resolution` x `resolution` RGB image (see the module doc).
  """
  names = ProbeNames(probes)
  x = jax.ShapeDtypeStruct((2, resolution, resolution, IMAGE_CHANNELS),
                           jnp.float32)
  calls, scopes, jaxpr, variables, logits = _record(module, x, probes)
  owners = {c.path: c.kind for c in calls}
  trace_checks.check_forward(jaxpr.jaxpr, set(jaxpr.jaxpr.invars), names,
                             owners, scopes)
  params = variables.get('params', {})
  trace_checks.check_params(calls, params, names)
  layers, masked = _layers(calls, params, names)
  trace_checks.check_coverage(layers, probes)
  shape = tuple(getattr(logits, 'shape', ()))
  if shape != (2, CLASSES_PROBE):
    raise ArchError(f'the network returns shape {shape} on a batch of 2; '
                    'expected (batch, num_classes) logits')
  return Trace(tuple(layers), tuple(masked.items()),
               tuple((n, int(v)) for n, v in probes.items()))
