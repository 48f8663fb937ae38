"""What a traced network may not do, each refused with an `ArchError`.

`tracing.trace` calls these on what it records (module doc there): each
message names the module (its Flax path), the user's source line where
known, and the group (`ProbeNames`: a probe channel count names its group).

* `ProbeNames.mixing_error`: an elementwise op on two groups (their probe
  widths differ, so broadcasting fails inside the trace);
* `check_conv_groups`: a grouped conv whose group count changes with the
  widths or that reads a concatenation, a depthwise conv with a channel
  multiplier (before the call); `NeedsMultiple` where a fixed group count
  does not divide the probe widths (the trace is taken again at multiples);
* `check_forward`: the forward computation's jaxpr, i.e. the equations that
  depend on the image (a taint walk, into nested jaxprs): a reshape,
  transpose, slice, pad or split that does not keep a group's channel axis
  whole as the last axis, a concatenation of a group's tensor along another
  axis than the channels, and a convolution or matmul outside `nn.Conv` /
  `nn.Dense` (a concatenation along the channel axis is followed by
  `trace_labels`);
* `check_params`: a module called twice (shared weights), a parameter
  outside nn.Conv / nn.Dense / nn.BatchNorm;
* `check_coverage`: a widths entry that no layer's features use.
"""
from __future__ import annotations

import os
import re
import traceback
from typing import Mapping, Optional

import flax
import flax.linen as nn
import jax
import jax.extend
import numpy as np

from wt_jax.errors import ArchError

IMAGE_CHANNELS = 3
CLASSES_PROBE = 997  # the number of classes the trace runs with

# Equations that rearrange elements; each must keep a group's channel axis
# whole, as the last axis.
_REARRANGING = ('reshape', 'transpose', 'slice', 'dynamic_slice', 'gather',
                'pad', 'concatenate', 'split', 'squeeze', 'expand_dims')
# Frames in these are not the user's line (nor in the tracer's own files).
_HERE = os.path.dirname(os.path.abspath(__file__))
_LIBRARY_DIRS = tuple(os.path.dirname(m.__file__) + os.sep
                      for m in (jax, flax, np)) + tuple(
                          os.path.join(_HERE, f)
                          for f in ('tracing.py', 'trace_checks.py'))


def label(path) -> str:
  return "'" + '/'.join(path) + "'" if path else "the network's __call__"


def user_line(frames) -> str:
  """' (file.py:12)' of the innermost frame outside jax, flax and here."""
  for f in frames:
    if not os.path.abspath(f[0]).startswith(_LIBRARY_DIRS):
      return f' ({f[0]}:{f[1]})'
  return ''


class ProbeNames:
  """Group names of probe channel counts, for checks and messages."""

  def __init__(self, probes: Mapping[str, int]):
    shared: dict[int, list[str]] = {}
    for n, v in probes.items():
      shared.setdefault(int(v), []).append(n)
    # Probe count -> its group's name ('a / b' where groups of equal widths
    # share a probe); `unique` only the counts that name one group.
    self.group = {v: ' / '.join(ns) for v, ns in shared.items()}
    self.unique = {v: ns[0] for v, ns in shared.items() if len(ns) == 1}
    self.order = {n: i for i, n in enumerate(probes)}
    self.value = {n: int(v) for n, v in probes.items()}

  def of(self, c: int) -> str:
    return f"group '{self.group[c]}'" if c in self.group else f'{c} channels'

  def mixing_error(self, error: Exception, path) -> Optional[ArchError]:
    """An elementwise op on two groups (a broadcasting failure), or None."""
    text = str(error)
    if 'incompatible shapes' not in text.lower():
      return None
    lasts = [int(s.split(',')[-1]) for s in re.findall(r'\(([\d, ]+)\)', text)
             if s.strip(', ')]
    found = list(dict.fromkeys(self.group[c] for c in lasts
                               if c in self.group))
    if len(found) < 2:
      return None
    line = user_line(reversed(traceback.extract_tb(error.__traceback__)))
    return ArchError(
        f'{label(path)}{line} combines group {found[0]!r} with group '
        f'{found[1]!r} in an elementwise op (e.g. a residual add): tensors '
        'that are added must share one group, i.e. use the same widths '
        f'entry; a projection conv to widths[{found[1]!r}] makes the '
        'shortcut match')


class NeedsMultiple(Exception):
  """A grouped conv's group count does not divide the probe widths: the
  trace is taken again at probes that are multiples of it (`tracing`)."""

  def __init__(self, multiple: int):
    super().__init__(multiple)
    self.multiple = int(multiple)


def check_conv_groups(conv: nn.Conv, x, path, names: ProbeNames,
                      fixed: dict) -> None:
  """Before the call: feature_group_count is 1, depthwise, or a group count
  fixed by the network (`fixed`: {path: count} of earlier traces) on one
  group's channels; NeedsMultiple where it does not divide the probes."""
  fgc, cin, cout = int(conv.feature_group_count), int(x.shape[-1]), int(
      conv.features)
  if fgc == 1:
    return
  if fgc == cin:
    if cout != cin:
      raise ArchError(
          f'depthwise conv {label(path)} maps {names.of(cin)} to '
          f'{names.of(cout)}; supported: features = input channels (a '
          'channel multiplier of 1)')
    return
  if fixed.setdefault(path, fgc) != fgc:
    raise ArchError(
        f'grouped conv {label(path)}: feature_group_count is '
        f'{fixed[path]} at some widths and {fgc} at others; supported: a '
        "group count fixed by the network (as ResNeXt's cardinality), or "
        'depthwise (feature_group_count = input channels = features)')
  if cin not in names.group:
    raise ArchError(
        f'grouped conv {label(path)} (feature_group_count={fgc}) reads '
        f'{cin} channels, which is not one group (a concatenation?); '
        "supported: a grouped conv reads one group's tensor")
  if cin % fgc or cout % fgc:
    raise NeedsMultiple(fgc)


def scope(name_stack: str, scopes) -> tuple[str, ...]:
  """The innermost module path pushed by `_record` ('@i') in a name stack."""
  marks = [p for p in name_stack.split('/') if re.fullmatch(r'@\d+', p)]
  return scopes[int(marks[-1][1:])] if marks else ()


def _check_eqn(eqn, path, names: ProbeNames, owners: dict) -> None:
  """ArchError if `eqn` breaks a channel axis or counts outside a layer."""
  prim = eqn.primitive.name
  line = user_line(frames(eqn))
  if prim in ('conv_general_dilated', 'dot_general'):
    want = 'conv' if prim == 'conv_general_dilated' else 'dense'
    if owners.get(path) != want:
      raise ArchError(
          f'{label(path)}{line}: a {prim} outside nn.Conv / nn.Dense; '
          'wt_jax counts the MACs and params of nn.Conv, nn.Dense and '
          'nn.BatchNorm layers only')
    return
  if prim not in _REARRANGING:
    return
  shapes = [getattr(getattr(v, 'aval', None), 'shape', ()) for v in eqn.invars]
  if prim == 'concatenate':
    if eqn.params['dimension'] == len(shapes[0]) - 1:
      return  # the channel axis: its groups are followed (`trace_labels`)
    if any(sh and sh[-1] in names.group for sh in shapes):
      raise ArchError(
          f'{label(path)}{line} concatenates '
          f'{" and ".join(names.of(sh[-1]) for sh in shapes)} along axis '
          f'{eqn.params["dimension"]} of {len(shapes[0])}: supported is a '
          'concatenation along the channel axis (the last) only')
  for v in eqn.invars:
    shape = getattr(getattr(v, 'aval', None), 'shape', ())
    if not shape or shape[-1] not in names.group:
      continue
    for out in eqn.outvars:
      out_shape = out.aval.shape
      if not out_shape or out_shape[-1] != shape[-1]:
        what = {'concatenate': 'concatenates', 'pad': 'pads',
                'split': 'splits'}.get(prim, 'rearranges')
        raise ArchError(
            f'{label(path)}{line} {what} the channel axis of '
            f'{names.of(shape[-1])} ({prim} {tuple(shape)} -> '
            f'{tuple(out_shape)} at the probe widths): each group must stay '
            'whole as the last axis (no flattening before a dense layer: '
            'pool first; no channel split, shuffle or channels-first '
            'layout)')


def frames(eqn):
  tb = getattr(eqn.source_info, 'traceback', None)
  frames = getattr(tb, 'frames', None) or ()
  return [(f.file_name, f.line_num) for f in frames]


def hot_equations(jaxpr, tainted: set, prefix: str):
  """Each equation of `jaxpr` that reads a `tainted` variable, as (eqn, hot,
  where): `hot` flags its tainted inputs, `where` is its name stack under
  `prefix`; its outputs are tainted once the caller is done with it."""
  for eqn in jaxpr.eqns:
    hot = [isinstance(v, jax.extend.core.Var) and v in tainted
           for v in eqn.invars]
    if any(hot):
      yield eqn, hot, prefix + '/' + str(eqn.source_info.name_stack)
      tainted.update(eqn.outvars)


def sub_inputs(sub, eqn, hot) -> list:
  """(inner variable, outer variable or None, tainted) of each input of
  `sub`, a jaxpr nested in `eqn`: aligned from the end, which fits pjit,
  custom_jvp/vjp, remat, cond and scan."""
  n_in = len(sub.invars)
  if n_in <= len(eqn.invars):
    return list(zip(sub.invars, eqn.invars[-n_in:], hot[-n_in:]))
  return [(v, None, any(hot)) for v in sub.invars]


def check_forward(jaxpr, tainted: set, names: ProbeNames, owners: dict,
                  scopes, prefix: str = '') -> None:
  """Checks the equations of `jaxpr` that depend on a `tainted` variable.

  `owners`: {module path: 'conv' | 'dense'} of the recorded layers;
  `scopes`: the module path of each '@i' name scope. Nested jaxprs are
  walked with their inputs tainted where the equation's are (`sub_inputs`).
  """
  for eqn, hot, where in hot_equations(jaxpr, tainted, prefix):
    _check_eqn(eqn, scope(where, scopes), names, owners)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      check_forward(sub, {v for v, _, h in sub_inputs(sub, eqn, hot) if h},
                    names, owners, scopes, where)


def check_params(calls, params, names: ProbeNames) -> None:
  """Every parameter belongs to a recorded Conv, Dense or BatchNorm."""
  seen = {}
  for call in calls:
    if call.path in seen:
      raise ArchError(f'{call.kind} {label(call.path)} is called more than '
                      'once (shared weights are not supported)')
    seen[call.path] = call.kind
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  for key, leaf in flat.items():
    if key[:-1] not in seen:
      of = f', {names.of(leaf.shape[-1])}' if leaf.shape else ''
      raise ArchError(
          f"parameter '{'/'.join(key)}' {tuple(leaf.shape)}{of} is not of an "
          'nn.Conv, nn.Dense or nn.BatchNorm, the only layers wt_jax counts')


def check_coverage(layers, probes) -> None:
  """Every widths entry is the features of some layer."""
  used = {l.out_group for l in layers}
  unused = [n for n in probes if n not in used]
  if unused:
    raise ArchError(f'widths entries {unused} are the features of no conv or '
                    'dense layer')


