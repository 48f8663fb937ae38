"""A Flax CNN's layer graph, found by tracing it at probe widths.

`trace(build, probes, resolution)` initialises `build(probes)` abstractly (no
arithmetic: `jax.make_jaxpr` over `module.init_with_output`, on a 2 x
resolution x resolution x 3 image) while `flax.linen.intercept_methods`
records every `nn.Conv`, `nn.Dense` and `nn.BatchNorm` call: its module
path, input and output shapes and attributes. `module` was built at *probe
widths* (`probe_widths`): channel counts from 1009 up, none equal to the
image's 3 channels or to `CLASSES_PROBE`, the probe number of classes, equal
for two groups only where their real widths are equal, each a `Probe` that
names its group. So a layer's output group is the `Probe` of its features,
and its input group is found by following the tensors through the jaxpr
(`trace_labels.Labels`). The trace gives (`Trace.layers`, records of `graph.Layer`):

* every conv and dense layer: input group (None: the image's 3 channels; a
  tuple of groups: their concatenation along the channel axis), output
  group (None: the logits), kernel, stride, depthwise (a
  `feature_group_count` equal to the input channels, which ties input and
  output) or grouped (a `feature_group_count` fixed by the network, which
  counts its MACs per group and makes its input and output widths
  multiples of it), input and output spatial size, bias and Flax parameter
  path;
* every BatchNorm and the group it normalizes: attached to the conv or dense
  layer whose output it reads directly (`Layer.bn`), or else a layer of kind
  'bn' of its own (no weights, no MACs; e.g. a pre-activation BN);
* `Trace.ties`: pairs of groups added in an elementwise op (a residual add
  of equal widths: ResNet's identity shortcut), which must keep one width.
  Groups of different widths cannot be added; that fails inside the trace
  and is reported as an `ArchError` naming the module and both groups.

Probe widths are odd numbers, so a grouped conv's fixed group count G
cannot divide them: the first trace that meets one stops
(`trace_checks.NeedsMultiple`) and the network is traced again at probes
multiplied by G (by the least common multiple of every group count met),
which keeps their order and equalities.

What the layer list cannot express is refused while tracing, with an
`ArchError` naming the module, the user's source line and the group
(`trace_checks`): a conv whose feature count is no group's probe width (a
hard-coded or derived width), a grouped conv whose group count follows the
widths or that reads a concatenation, a reshape, transpose, slice, pad or
split that does not keep a group's channel axis whole as the last axis, a
concatenation along another axis or of a tensor that is no group (the
image), a convolution or matmul outside `nn.Conv` / `nn.Dense`, a
weight-shared module, and parameters outside those three layer types.

`Trace.masked` maps the module path of every layer whose output is a
group's tensor (a BatchNorm, or a conv or dense layer no BatchNorm reads) to
that group (a tuple of groups for a BatchNorm of a concatenation): AutoSlim's
masks multiply those outputs (`models.Net`).
`Trace.at(widths, num_classes)` substitutes real widths into the layers.
A network's structure may depend on which of its widths are equal and on
their order (the probes keep both), nothing else.
"""
from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from wt_jax.errors import ArchError
from wt_jax.nets import trace_checks
from wt_jax.nets import trace_labels
from wt_jax.nets import trace_layers
from wt_jax.nets.graph import Layer
from wt_jax.nets.trace_checks import CLASSES_PROBE
from wt_jax.nets.trace_checks import IMAGE_CHANNELS
from wt_jax.nets.trace_checks import ProbeNames
_FIRST_PROBE = 1009


class Probe(int):
  """A probe channel count that knows its group (`features=widths[g]`).

  While `trace` runs, every comparison of a probe is recorded (`_DECISIONS`):
  a network's structure can depend on its widths only through such
  comparisons, so a trace holds for every width vector on which the recorded
  comparisons come out the same (`Trace.holds_for`).
  """

  def __new__(cls, value: int, group: str):
    self = super().__new__(cls, value)
    self.group = group
    return self

  def __reduce__(self):
    return (Probe, (int(self), self.group))

  __hash__ = int.__hash__

  def _compare(self, other, op: str):
    result = _OPS[op](int(self), int(other) if isinstance(other, int)
                      else other)
    if _DECISIONS:
      _DECISIONS[-1].append(
          (self.group, other.group, op, bool(result))
          if isinstance(other, Probe) else None)
    return result



_OPS = {'eq': operator.eq, 'ne': operator.ne, 'lt': operator.lt,
        'le': operator.le, 'gt': operator.gt, 'ge': operator.ge}
for _op in _OPS:  # Probe.__eq__, __ne__, ...: recorded comparisons
  setattr(Probe, f'__{_op}__',
          lambda self, other, op=_op: self._compare(other, op))
# The comparisons of probes made by the trace running now (a stack).
_DECISIONS: list[list] = []


def probe_widths(names, values=None) -> dict[str, int]:
  """Probe channel counts (odd numbers from 1009), one per group name.

  With `values` (the real widths, in `names` order), groups of equal width
  share one probe and the probes keep the widths' order, so a network whose
  structure depends on comparing its widths (ResNet's projection shortcut
  where a block's input and stream widths differ) has at the probes the
  structure it has at `values`. Each probe is a `Probe` naming its group.
  """
  names = list(names)
  if values is None:
    values = range(len(names))
  values = [int(v) for v in values]
  rank = {v: i for i, v in enumerate(sorted(set(values)))}
  return {n: Probe(_FIRST_PROBE + 2 * rank[v], n)
          for n, v in zip(names, values)}


@dataclasses.dataclass(frozen=True)
class Trace:
  """A network's layers at its probe widths (see the module doc)."""
  layers: tuple[Layer, ...]
  masked: tuple[tuple[tuple[str, ...], str], ...]  # (module path, group)
  probes: tuple[tuple[str, int], ...]
  # Pairs of distinct groups (network order) added in an elementwise op.
  ties: tuple[tuple[str, str], ...] = ()
  # (group, group, op, outcome) of every comparison of two widths the
  # network made; None if it compared a width with anything else.
  decisions: Optional[tuple[tuple[str, str, str, bool], ...]] = None
  # `probes` are `probe_widths` times this (the group counts' multiple).
  scale: int = 1

  def holds_for(self, widths: Mapping[str, int]) -> bool:
    """Whether the network at `widths` has this trace's structure: the same
    outcome of every comparison it made, and equal widths where it adds two
    groups."""
    if self.decisions is None:
      return False
    w = {n: int(v) for n, v in widths.items()}
    return (all(_OPS[op](w[a], w[b]) == out
                for a, b, op, out in self.decisions) and
            all(w[a] == w[b] for a, b in self.ties))

  def at(self, widths: Mapping[str, int], num_classes: int
         ) -> tuple[Layer, ...]:
    """The layers with `widths[group]` channels and `num_classes` logits."""
    def side(group, traced):
      if isinstance(group, tuple):
        return sum(int(widths[g]) for g in group)
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


def _record(module, x, probes: Mapping[str, int], fixed: dict):
  """(calls, scopes, jaxpr, variables, output) of `module.init` on `x`.

  `scopes[i]` is the module path of the named scope '@i' around each module
  call, so that every jaxpr equation's name stack gives its module.
  `fixed`: {path: group count} of the grouped convs met so far.
  """
  names = ProbeNames(probes)
  calls: list[_Call] = []
  scopes: list[tuple[str, ...]] = []  # module path of the named scope '@i'

  def intercept(next_fun, args, kwargs, context):
    if context.method_name != '__call__':
      return next_fun(*args, **kwargs)
    path = tuple(context.module.path)
    if isinstance(context.module, nn.Conv) and args:
      trace_checks.check_conv_groups(context.module, args[0], path, names,
                                     fixed)
    scopes.append(path)
    with jax.named_scope(f'@{len(scopes) - 1}'):
      try:
        y = next_fun(*args, **kwargs)
      except (ArchError, trace_checks.NeedsMultiple):
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


def _scaled(probes: Mapping[str, int], scale: int) -> dict[str, int]:
  return {n: Probe(int(v) * scale, n) for n, v in probes.items()}


def trace(build, probes: Mapping[str, int], resolution: int) -> Trace:
  """The layers of `build(probes)` (a module built at `probes`, with
  `CLASSES_PROBE` classes; or the module itself, built at `probes`) on a
  `resolution` x `resolution` RGB image (see the module doc).
  """
  fixed: dict = {}
  scale = 1
  while True:
    at = _scaled(probes, scale)
    try:
      return _trace_at(build, at, resolution, fixed, scale)
    except trace_checks.NeedsMultiple as e:
      if not callable(build) or isinstance(build, nn.Module):
        raise ArchError(
            f'a grouped conv (feature_group_count={e.multiple}) needs probe '
            'widths that are multiples of it: pass a function of the widths '
            'that builds the module') from None
      scale = scale * e.multiple // math.gcd(scale, e.multiple)


def _trace_at(build, probes, resolution: int, fixed: dict,
              scale: int) -> Trace:
  names = ProbeNames(probes)
  x = jax.ShapeDtypeStruct((2, resolution, resolution, IMAGE_CHANNELS),
                           jnp.float32)
  _DECISIONS.append([])
  try:
    module = build if isinstance(build, nn.Module) else build(probes)
    calls, scopes, jaxpr, variables, logits = _record(module, x, probes,
                                                      fixed)
  finally:
    decisions = _DECISIONS.pop()
  owners = {c.path: c.kind for c in calls}
  trace_checks.check_forward(jaxpr.jaxpr, set(jaxpr.jaxpr.invars), names,
                             owners, scopes)
  params = variables.get('params', {})
  trace_checks.check_params(calls, params, names)
  plain = trace_layers.Groups(names)
  out_groups = {c.path: plain.output(int(c.y.shape[-1]), c) for c in calls
                if c.kind != 'bn'}
  labels = trace_labels.Labels(names, owners, scopes, out_groups)
  labels.walk(jaxpr.jaxpr, {}, set(jaxpr.jaxpr.invars))
  layers, masked = trace_layers.layers(calls, params,
                                       trace_layers.Groups(names, labels))
  trace_checks.check_coverage(layers, probes)
  shape = tuple(getattr(logits, 'shape', ()))
  if shape != (2, CLASSES_PROBE):
    raise ArchError(f'the network returns shape {shape} on a batch of 2; '
                    'expected (batch, num_classes) logits')
  order = names.order
  ties = tuple(sorted(labels.ties, key=lambda t: (order[t[1]], order[t[0]])))
  return Trace(tuple(layers), tuple(masked.items()),
               tuple((n, int(v)) for n, v in probes.items()), ties,
               None if None in decisions else tuple(dict.fromkeys(decisions)),
               scale)
