"""The layer list of a trace: recorded module calls -> `graph.Layer`s.

`tracing.trace` records every nn.Conv, nn.Dense and nn.BatchNorm call
(`_Call`: kind, module path, module, input and output) and the group of
every tensor (`trace_labels`); `layers` turns them into the layer graph's
records: kernel, stride, sizes and groups of each conv (plain, grouped or
depthwise) and dense layer, each BatchNorm attached to the layer whose
output it reads, or a layer of kind 'bn' of its own, and the table of
masked outputs (`Trace.masked`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from wt_jax.errors import ArchError
from wt_jax.nets import trace_labels
from wt_jax.nets.graph import Layer
from wt_jax.nets.trace_checks import CLASSES_PROBE
from wt_jax.nets.trace_checks import IMAGE_CHANNELS
from wt_jax.nets.trace_checks import label
from wt_jax.nets.trace_checks import ProbeNames


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _square(values, what: str, call) -> int:
  values = tuple(int(v) for v in values)
  if len(set(values)) != 1:
    raise ArchError(f'{call.kind} {label(call.path)}: {what} {values} is '
                    'not square; the layer graph counts square kernels, '
                    'strides and images')
  return values[0]


def _spatial(shape, call) -> int:
  if len(shape) == 2:
    return 1
  if len(shape) != 4:
    raise ArchError(f'{call.kind} {label(call.path)} reads a tensor of shape '
                    f'{tuple(shape)}; expected (batch, H, W, C) or (batch, C)')
  return _square(shape[1:3], 'the spatial size', call)


class Groups:
  """Group of a layer's input and output channels (ArchError if none)."""

  def __init__(self, names: ProbeNames, labels: Optional[trace_labels.Labels] = None):
    self.names = names
    self.labels = labels

  def input(self, c: int, call) -> Optional[str]:
    if self.labels is not None:
      found = (self.labels.bn if call.kind == 'bn' else
               self.labels.inputs).get(call.path)
      if found is not None:
        return found
    if c in self.names.unique:
      return self.names.unique[c]
    if c in (IMAGE_CHANNELS, CLASSES_PROBE):
      return None
    raise ArchError(
        f'{call.kind} {label(call.path)} reads {c} channels, which is no '
        "group's width (did a reshape, slice or concatenation change the "
        'channel axis before it?)')

  def output(self, c: int, call) -> Optional[str]:
    features = getattr(call.module, 'features', None)
    if getattr(features, 'group', None) is not None and int(features) == c:
      return features.group  # a `tracing.Probe`
    if c in self.names.unique:
      return self.names.unique[c]
    if c == CLASSES_PROBE and call.kind != 'bn':
      return None
    raise ArchError(
        f'{call.kind} {label(call.path)} has {c} output features, which is '
        'not a widths entry: its features must be widths[<group>] (or '
        "num_classes for the logits), read from the module's widths mapping")


def _conv_layer(call, params, groups: Groups) -> Layer:
  m, xs, ys = call.module, call.x.shape, call.y.shape
  kernel = _get(params, call.path)['kernel'].shape
  cin, cout = int(xs[-1]), int(ys[-1])
  fgc = int(m.feature_group_count)
  kind = 'depthwise' if fgc > 1 and fgc == cin else 'conv'
  strides = m.strides if m.strides is not None else 1
  strides = (strides,) * 2 if isinstance(strides, int) else tuple(strides)
  in_group = groups.input(cin, call)
  if fgc > 1 and not isinstance(in_group, str):
    raise ArchError(
        f'{"depthwise" if kind == "depthwise" else "grouped"} conv '
        f'{label(call.path)} (feature_group_count={fgc}) reads '
        f'{"the image" if in_group is None else "a concatenation"}; '
        "supported: a grouped or depthwise conv reads one group's tensor")
  return Layer(
      '/'.join(call.path), kind, _square(kernel[:2], 'the kernel', call),
      _square(strides, 'the stride', call), cin, cout, _spatial(xs, call),
      _spatial(ys, call), in_group, groups.output(cout, call),
      call.path, None, bias=bool(m.use_bias),
      feature_groups=fgc if kind == 'conv' else 1)


def _dense_layer(call, groups: Groups) -> Layer:
  xs, ys = call.x.shape, call.y.shape
  cin, cout = int(xs[-1]), int(ys[-1])
  size = _spatial(xs, call)
  return Layer('/'.join(call.path), 'fc', 1, 1, cin, cout, size, size,
               groups.input(cin, call), groups.output(cout, call), call.path,
               None, bias=bool(call.module.use_bias))


def _bn_group(call, groups: Groups) -> str:
  m = call.module
  if not (m.use_scale and m.use_bias) or m.axis not in (-1, len(call.x.shape)
                                                       - 1):
    raise ArchError(
        f'BatchNorm {label(call.path)}: supported is the default '
        'BatchNorm (axis=-1, use_scale=True, use_bias=True); MorphNet reads '
        'its scales')
  group = groups.input(int(call.x.shape[-1]), call)
  if group is None:
    raise ArchError(f'BatchNorm {label(call.path)} normalizes '
                    f'{int(call.x.shape[-1])} channels, which is no group')
  return group


def layers(calls, params, groups: Groups) -> tuple[list[Layer], dict]:
  """The layer list (BNs attached) and {module path: masked group}.

  A layer's output is masked where it is a group's tensor: a BN's output,
  and a conv or dense output that no BN reads directly.
  """
  out: list[Layer] = []
  producer: dict[int, int] = {}  # id(output tracer) -> index in `out`
  masked = {}
  for call in calls:
    if call.kind == 'bn':
      group = _bn_group(call, groups)
      i = producer.pop(id(call.x), None)
      if i is not None and out[i].bn is None:
        out[i] = dataclasses.replace(out[i], bn=call.path)
        masked.pop(out[i].path, None)
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
