"""The group of every tensor of a traced forward pass (`tracing`).

Groups of equal width share one probe channel count, so a channel count
alone cannot say which group a tensor is. `Labels.walk` follows the forward
jaxpr instead, from the image to the logits, as `trace_checks.check_forward`
does (the equations that depend on the image, into nested jaxprs).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.extend

from wt_jax.errors import ArchError
from wt_jax.nets import trace_checks
from wt_jax.nets.trace_checks import ProbeNames


def _segments(label) -> tuple[str, ...]:
  """The groups of a tensor's label, in channel order."""
  return label if isinstance(label, tuple) else (label,)


def _describe(label) -> str:
  if isinstance(label, tuple):
    return 'the concatenation of groups ' + ', '.join(repr(g) for g in label)
  return f'group {label!r}'


def _line(eqn) -> str:
  return trace_checks.user_line(trace_checks.frames(eqn))


class Labels:
  """The group of every tensor in the forward jaxpr, found by propagation.

  A conv or dense layer's output carries the group its features name (a
  `Probe`); an elementwise op passes its inputs' group on; two different
  groups meeting in one (a residual add of equal widths) are tied, and the
  sum carries the later one in network order. A concatenation along the
  channel axis carries the tuple of its inputs' groups, in channel order
  (an input that is itself a concatenation contributes its groups); two
  concatenations added are tied group by group. So each layer's input
  group is known exactly even where several groups share one probe width.
  """

  def __init__(self, names: ProbeNames, owners: dict, scopes, out_groups):
    self.names, self.owners, self.scopes = names, owners, scopes
    self.out_groups = out_groups  # {conv/dense path: output group}
    self.inputs: dict[tuple[str, ...], Optional[str]] = {}  # layer path ->
    self.bn: dict[tuple[str, ...], str] = {}  # BN path -> its group
    self.ties: set[tuple[str, str]] = set()

  def _merge_one(self, groups) -> Optional[str]:
    found = sorted(set(g for g in groups if g is not None),
                   key=self.names.order.get)
    for a in found[:-1]:
      self.ties.add((a, found[-1]))
    return found[-1] if found else None

  def _merge(self, labels, eqn, path):
    """The label of an elementwise op's output (ties its inputs' groups)."""
    found = [l for l in labels if l is not None]
    if not any(isinstance(l, tuple) for l in found):
      return self._merge_one(found)
    parts = {len(_segments(l)) for l in found}
    if len(parts) != 1:
      raise ArchError(
          f'{trace_checks.label(path)}{_line(eqn)} combines '
          f'{" and ".join(_describe(l) for l in found)} in an elementwise '
          'op: tensors that are added must hold the same groups in the same '
          'order')
    for seg in zip(*(_segments(l) for l in found)):
      if len({self.names.value[g] for g in seg}) > 1:
        raise ArchError(
            f'{trace_checks.label(path)}{_line(eqn)} adds '
            f'{" and ".join(_describe(l) for l in found)}: groups '
            f'{" and ".join(repr(g) for g in seg)} meet at one position and '
            'differ in width; concatenations that are added must hold groups '
            'of equal width in the same order')
    return tuple(self._merge_one(seg) for seg in zip(
        *(_segments(l) for l in found)))

  def _concat(self, eqn, hot, labels, path):
    """The label of a channel-axis concatenation: its inputs' groups."""
    ins = [labels.get(v) if h else None for v, h in zip(eqn.invars, hot)]
    if all(l is None for l in ins):
      return None
    if any(l is None for l in ins):
      parts = [_describe(l) if l is not None else
               f'a tensor of shape {tuple(v.aval.shape)} that is no group'
               for l, v in zip(ins, eqn.invars)]
      raise ArchError(
          f'{trace_checks.label(path)}{_line(eqn)} concatenates '
          f'{", ".join(parts)} '
          "along the channel axis: every input must be a group's tensor (a "
          'conv, dense or BatchNorm output, or a concatenation of them); the '
          "image and tensors whose channel axis changed are not groups")
    out = tuple(g for l in ins for g in _segments(l))
    return out if len(out) > 1 else out[0]

  def _keep(self, group, var):
    shape = getattr(getattr(var, 'aval', None), 'shape', ())
    if group is None or not shape or shape[-1] != sum(
        self.names.value[g] for g in _segments(group)):
      return None
    return group

  def walk(self, jaxpr, labels: dict, tainted: set, prefix: str = '') -> None:
    for eqn, hot, where in trace_checks.hot_equations(jaxpr, tainted,
                                                      prefix):
      path = trace_checks.scope(where, self.scopes)
      ins = [labels.get(v) for v, h in zip(eqn.invars, hot) if h]
      if self.owners.get(path) == 'bn' and path not in self.bn:
        first = next((g for g in ins if g is not None), None)
        if first is not None:
          self.bn[path] = first
      subs = list(jax.extend.core.jaxprs_in_params(eqn.params))
      if (eqn.primitive.name in ('conv_general_dilated', 'dot_general') and
          path in self.out_groups):
        self.inputs.setdefault(path, labels.get(eqn.invars[0]))
        out = [self.out_groups[path]] * len(eqn.outvars)
      elif subs:
        out = self._walk_subs(eqn, subs, hot, labels, where)
      elif (eqn.primitive.name == 'concatenate' and eqn.params['dimension']
            == len(eqn.outvars[0].aval.shape) - 1):
        out = [self._concat(eqn, hot, labels, path)]
      else:
        out = [self._merge(ins, eqn, path)] * len(eqn.outvars)
      for v, g in zip(eqn.outvars, out):
        labels[v] = self._keep(g, v)

  def _walk_subs(self, eqn, subs, hot, labels, where) -> list:
    """Into nested jaxprs (inputs aligned from the end, as the taint is)."""
    out = [None] * len(eqn.outvars)
    for sub in subs:
      pairs = trace_checks.sub_inputs(sub, eqn, hot)
      inner = {sv: labels.get(v) for sv, v, _ in pairs if v is not None
               and isinstance(v, jax.extend.core.Var)}
      self.walk(sub, inner, {sv for sv, _, h in pairs if h}, where)
      if len(sub.outvars) == len(out):
        out = [o if o is not None else inner.get(sv)
               if isinstance(sv, jax.extend.core.Var) else None
               for o, sv in zip(out, sub.outvars)]
    return out
