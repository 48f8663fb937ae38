"""MorphNet (Gordon et al. 2018): a FLOPs regularizer on batch-norm scales.

Follows MorphNet's GammaFlopsRegularizer, in JAX, over wt_jax's layer graph
(`architectures.layers`), in MACs, the unit of `wt_jax.cost`:

* Per channel, the signal is |gamma| of the batch norm after each conv. A
  channel is alive when |gamma| > threshold.
* Channel groups are the width vector's groups, merged across identity
  shortcuts (`architectures.identity_ties`) into *units*. Where several BNs
  feed one unit (a residual stream, a depthwise conv tied to its expansion),
  the unit's regularization vector is the element-wise max of their |gamma|,
  so its alive vector is their OR: a channel is removed only if it is dead in
  every member.
* Per conv with coeff = kh*kw*H_out*W_out:
    cost = coeff * alive_in * alive_out
    term = coeff * (alive_in * sum|gamma_out| + alive_out * sum|gamma_in|)
  depthwise: cost = coeff * alive_out, term = coeff * (sum|g_in| + sum|g_out|).
  The FC layer counts like a 1x1 conv with `num_classes` constant outputs;
  the first conv's 3 image channels are constants (sum|gamma| = 0 for both).

`cost` and `regularization_term` are separate functions of params, built once
per width vector by `make_structure`; the term enters the loss as
`strength * term` inside the jitted, sharded train step (an `extra_loss`),
so it costs no pass over the data. With every channel alive, `cost` equals
the analytic MACs of `wt_jax.cost` (tested for every architecture).
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Mapping, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from wt_jax import architectures
from wt_jax.widths import Widths

# MorphNet's examples use 1e-3..0.5. With BN scales initialised at 1, no
# weight decay on them, and an L1-like push to zero whose SGD steps are of
# order lr * strength * coeff, 1e-2 sits well below live channels (|g| ~ 1)
# and above the jitter of dead ones; see bench/morphnet_step.py for the
# trajectories.
DEFAULT_THRESHOLD = 1e-2


@dataclasses.dataclass(frozen=True)
class _Conv:
  coeff: int
  depthwise: bool
  in_unit: Optional[int]  # None: constant channels `in_const`
  out_unit: Optional[int]  # None: constant channels `out_const`
  in_const: int
  out_const: int


@dataclasses.dataclass(frozen=True)
class Structure:
  """The static part of the regularizer for one width vector."""
  widths: Widths
  units: tuple[tuple[str, ...], ...]  # group names merged by identity ties
  members: tuple[tuple[tuple[str, ...], ...], ...]  # BN param paths per unit
  convs: tuple[_Conv, ...]

  def unit_of(self, group: str) -> int:
    for i, unit in enumerate(self.units):
      if group in unit:
        return i
    raise KeyError(group)


def make_structure(widths: Widths, resolution: int,
                   num_classes: int) -> Structure:
  spec = widths.spec
  layers = architectures.layers(spec, widths.values, resolution, num_classes)
  units = architectures.tie_units(spec, widths.values)
  index = {n: i for i, unit in enumerate(units) for n in unit}
  members = [[] for _ in units]
  convs = []
  for l in layers:
    if l.bn is not None:
      members[index[l.out_group]].append(l.bn)
    convs.append(_Conv(
        coeff=l.coeff, depthwise=l.kind == 'depthwise',
        in_unit=None if l.in_group is None else index[l.in_group],
        out_unit=None if l.out_group is None else index[l.out_group],
        in_const=l.in_channels, out_const=l.out_channels))
  return Structure(widths, units, tuple(tuple(m) for m in members),
                   tuple(convs))


def _get(tree: Mapping[str, Any], path: tuple[str, ...]):
  for k in path:
    tree = tree[k]
  return tree


def unit_gammas(params, structure: Structure) -> list[jax.Array]:
  """Per unit: the element-wise max of |gamma| over its member BNs."""
  out = []
  for paths in structure.members:
    g = jnp.abs(jnp.asarray(_get(params, paths[0])['scale'], jnp.float32))
    for p in paths[1:]:
      g = jnp.maximum(g, jnp.abs(jnp.asarray(_get(params, p)['scale'],
                                             jnp.float32)))
    out.append(g)
  return out


def _unit_stats(params, structure, threshold):
  gammas = unit_gammas(params, structure)
  alive = [jax.lax.stop_gradient((g > threshold).astype(jnp.float32).sum())
           for g in gammas]
  sums = [g.sum() for g in gammas]
  return alive, sums


def cost(params, structure: Structure,
         threshold: float = DEFAULT_THRESHOLD) -> jax.Array:
  """MACs of the network with only the alive channels."""
  alive, _ = _unit_stats(params, structure, threshold)
  total = 0.0
  for c in structure.convs:
    a_in = c.in_const if c.in_unit is None else alive[c.in_unit]
    a_out = c.out_const if c.out_unit is None else alive[c.out_unit]
    total = total + c.coeff * (a_out if c.depthwise else a_in * a_out)
  return jnp.asarray(total, jnp.float32)


def regularization_term(params, structure: Structure,
                        threshold: float = DEFAULT_THRESHOLD) -> jax.Array:
  """MorphNet's differentiable FLOPs proxy (MACs x |gamma|)."""
  alive, sums = _unit_stats(params, structure, threshold)
  total = 0.0
  for c in structure.convs:
    s_in = 0.0 if c.in_unit is None else sums[c.in_unit]
    s_out = 0.0 if c.out_unit is None else sums[c.out_unit]
    if c.depthwise:
      total = total + c.coeff * (s_in + s_out)
      continue
    a_in = c.in_const if c.in_unit is None else alive[c.in_unit]
    a_out = c.out_const if c.out_unit is None else alive[c.out_unit]
    total = total + c.coeff * (a_in * s_out + a_out * s_in)
  return jnp.asarray(total, jnp.float32)


def make_extra_loss(structure: Structure, strength: float,
                    threshold: float = DEFAULT_THRESHOLD
                    ) -> Callable[[Any], jax.Array]:
  """`strength * term` as a function of params, for the train step."""
  return lambda params: strength * regularization_term(params, structure,
                                                       threshold)


def alive_counts(params, structure: Structure,
                 threshold: float = DEFAULT_THRESHOLD) -> dict[str, int]:
  """Alive channels per group (every group of a unit gets the unit's count)."""
  gammas = jax.device_get(unit_gammas(params, structure))
  out = {}
  for unit, g in zip(structure.units, gammas):
    for name in unit:
      out[name] = int(np.sum(np.asarray(g) > threshold))
  return {n: out[n] for n in structure.widths.names}


def learned_widths(params, structure: Structure, threshold: float,
                   min_width: int) -> Widths:
  """The alive counts as a width vector; no group below `min_width`."""
  counts = alive_counts(params, structure, threshold)
  return structure.widths.replace(
      [max(min_width, counts[n]) for n in structure.widths.names])


# ----------------------------------------------------------------------------
# The width optimizer.
# ----------------------------------------------------------------------------


def auto_strength(widths: Widths, resolution: int, num_classes: int,
                  knob: float) -> float:
  """MorphNet's advice: strength ~ knob / the network's initial cost.

  With every gamma at its init of 1, the term is about twice the MACs, so
  `strength * term` starts near `2 * knob`, beside a cross-entropy of ~2.3.
  """
  from wt_jax import cost as cost_lib  # pylint: disable=g-import-not-at-top
  return float(knob) / cost_lib.macs(widths, resolution, num_classes)


def structure_learning_train_config(config):
  """`config.train` with MorphNet's schedule: a fixed learning rate."""
  from wt_jax import train  # pylint: disable=g-import-not-at-top
  mc = config.morphnet
  # No decay on BN scales: it would shrink every gamma, not only the
  # expensive ones.
  return train.derive_train_config(
      config.train, epochs=float(mc.epochs), num_steps=int(mc.num_steps),
      base_lr=float(mc.lr), schedule='constant', warmup_epochs=0.0,
      decay_bn_and_bias=False)


def optimize(config, data_config, widths: Widths, workdir: str):
  """MorphNet structure learning from `widths`; see `optimizers.optimize`.

  Trains with `strength * regularization_term` added to the loss at a fixed
  learning rate, exports the learned structure (alive channels per group and
  their MACs) every `export_every` steps to `history.json`, and stops early
  once the learned MACs reach `shrink_to` x the starting MACs. The learned
  widths are the alive counts (at least `min_width`); with `expand_to > 0`
  they are then scaled by FLOPs matching to that fraction of the starting
  MACs.
  """
  # pylint: disable=g-import-not-at-top
  from wt_jax import cost as cost_lib
  from wt_jax import data as data_lib
  from wt_jax import extrapolate
  from wt_jax import files
  from wt_jax import optimizers
  from wt_jax import train
  # pylint: enable=g-import-not-at-top
  mc = config.morphnet
  info = data_lib.dataset_info(data_config)
  res, classes = info.resolution, info.num_classes
  structure = make_structure(widths, res, classes)
  start_macs = cost_lib.macs(widths, res, classes)
  strength = float(mc.strength) or auto_strength(widths, res, classes,
                                                 mc.strength_knob)
  threshold = float(mc.threshold)
  stop_macs = float(mc.shrink_to) * start_macs if mc.shrink_to > 0 else -1
  history_path = os.path.join(workdir, optimizers.HISTORY)
  history = files.read_json(history_path) if files.exists(history_path) else []
  chosen = {}

  def export(step, state):
    params = jax.device_get(state.params)
    learned = learned_widths(params, structure, threshold, mc.min_width)
    macs = cost_lib.macs(learned, res, classes)
    record = dict(step=int(step), macs=int(macs),
                  macs_fraction=macs / start_macs,
                  cost=float(cost(params, structure, threshold)),
                  widths=learned.as_dict())
    del history[len([h for h in history if h['step'] < step]):]
    history.append(record)
    if jax.process_index() == 0:
      files.write_json(history_path, history)
    chosen['widths'] = learned
    stop = 0 <= macs <= stop_macs
    return dict(learned_macs=macs, learned_macs_fraction=macs / start_macs,
                stop_training=bool(stop))

  logging.info('MorphNet: strength %.4g (%s), threshold %g, start %d MACs, '
               'stop at %s MACs.', strength,
               'set' if mc.strength else f'auto, knob {mc.strength_knob}',
               threshold, start_macs,
               f'{stop_macs:.0f}' if stop_macs >= 0 else 'the last step')
  t0 = time.perf_counter()
  metrics = train.train_and_evaluate(
      config, widths, os.path.join(workdir, 'train'), data_config=data_config,
      train_config=structure_learning_train_config(config),
      extra_loss=make_extra_loss(structure, strength, threshold),
      callback=export, callback_every=int(mc.export_every), eval_split='val')
  learned = chosen['widths']
  result_widths = learned
  if mc.expand_to > 0:
    result_widths = extrapolate.flops_match(
        learned, int(mc.expand_to * start_macs), res, classes,
        divisor=config.transfer.divisor,
        min_width=config.transfer.min_width).widths
  per_epoch = info.num_examples['train']
  return optimizers.OptimizeResult(
      widths=result_widths, train_macs=int(metrics['train_macs']),
      examples=int(metrics['examples_seen']),
      epochs=metrics['examples_seen'] / per_epoch,
      wall_time_s=float(metrics['wall_time_s']),
      details=dict(optimizer='morphnet', strength=strength,
                   threshold=threshold, start_macs=int(start_macs),
                   learned_macs=int(cost_lib.macs(learned, res, classes)),
                   learned_widths=learned.as_dict(),
                   stopped_at_step=int(metrics['steps']),
                   reached_target=bool(
                       cost_lib.macs(learned, res, classes) <= stop_macs),
                   val_top1=float(metrics['top1']),
                   train_loss=float(metrics.get('train_loss', float('nan'))),
                   total_seconds=time.perf_counter() - t0))
