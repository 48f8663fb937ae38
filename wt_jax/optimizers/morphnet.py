"""MorphNet (Gordon et al. 2018): a FLOPs regularizer on batch-norm scales.

Follows MorphNet's GammaFlopsRegularizer, in JAX, over wt_jax's layer graph
(`architectures.layers`), in MACs, the unit of `wt_jax.nets.cost`:

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
  depthwise: cost = coeff * alive_out, term = coeff * (sum|g_in| + sum|g_out|);
  a grouped conv with G groups: both divided by G.
  The FC layer counts like a 1x1 conv with `num_classes` constant outputs;
  the first conv's 3 image channels are constants (sum|gamma| = 0 for both).
* A concatenation's channels are its inputs' (morph-net's concat handler):
  a conv reading one has alive_in and sum|gamma_in| summed over the
  concatenated groups; a BatchNorm of a concatenation (pre-activation, as in
  DenseNet) is a member of each concatenated group's unit through its slice
  of the channels.
* Widths the result exports are alive counts rounded to the nearest
  multiple of a grouped conv's group count, where a group has one
  (`widths.fit`).

`alive_macs` (the cost) and `regularization_term` are separate functions of
params over a `Structure` built once per width vector by `make_structure`;
both count over the one compiled layer form (`graph.LayerGraph`) that
`wt_jax.nets.cost` uses. The term enters the loss as `strength * term` inside the
jitted, sharded train step (an `extra_loss`), so it costs no pass over the
data. With every channel alive, `alive_macs` equals the analytic MACs of
`wt_jax.nets.cost` (tested for every architecture).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from wt_jax import train
from wt_jax.nets import architectures
from wt_jax.nets import cost
from wt_jax.nets import models
from wt_jax.nets import widths as widths_lib
from wt_jax.nets.graph import LayerGraph
from wt_jax.nets.widths import Widths
from wt_jax.optimizers import result as result_lib
from wt_jax.transfer.problem import Problem
from wt_jax.util import files
from wt_jax.util import validation
from wt_jax.util import workdir as workdir_lib

# MorphNet's examples use 1e-3..0.5. With BN scales initialised at 1, no
# weight decay on them, and an L1-like push to zero whose SGD steps are of
# order lr * strength * coeff, 1e-2 sits well below live channels (|g| ~ 1)
# and above the jitter of dead ones; see bench/morphnet_step.py for the
# trajectories.
DEFAULT_THRESHOLD = 1e-2


@dataclasses.dataclass(frozen=True)
class Structure:
  """The static part of the regularizer for one width vector."""
  widths: Widths
  graph: LayerGraph  # layers over groups; graph.units merge identity ties
  # Per unit: (BN param path, first channel) of each member BN; the unit's
  # channels are `width` channels of that BN from the first.
  members: tuple[tuple[tuple[tuple[str, ...], int], ...], ...]

  @property
  def units(self) -> tuple[tuple[str, ...], ...]:
    return self.graph.units

  def unit_of(self, group: str) -> int:
    return self.graph.unit_index(group)

  @property
  def macs(self) -> int:
    """The MACs of `widths` (`cost.macs`, from this graph)."""
    return cost.Cost(self.graph, self.widths.values).macs


def make_structure(widths: Widths, resolution: int,
                   num_classes: int) -> Structure:
  return structure_of(widths, architectures.layer_graph(
      widths.spec, widths.values, resolution, num_classes))


def structure_of(widths, g: LayerGraph) -> Structure:
  """The regularizer's structure of a layer graph at `widths` (a `Widths`,
  or for a graph written by hand, a {group: width} mapping)."""
  members = [[] for _ in g.units]
  w = dict(widths.as_dict() if isinstance(widths, Widths) else widths)
  for layer in g.layers:
    if layer.bn is None:
      continue
    first = 0  # a BN of a concatenation: each group its slice
    for group in (layer.in_groups if layer.kind == 'bn' else
                  (layer.out_group,)):
      members[g.unit_index(group)].append((layer.bn, first))
      first += w[group]
  return Structure(widths, g, tuple(tuple(m) for m in members))


def _get(tree: Mapping[str, Any], path: tuple[str, ...]):
  for k in path:
    tree = tree[k]
  return tree


def unit_gammas(params, structure: Structure) -> list[jax.Array]:
  """Per unit: the element-wise max of |gamma| over its member BNs."""
  out = []
  for unit, members in zip(structure.units, structure.members):
    width = structure.widths[unit[0]]
    scales = []
    for path, first in members:
      scale = jnp.abs(jnp.asarray(_get(params, path)['scale'], jnp.float32))
      if (first, width) != (0, scale.shape[0]):  # a concatenation's slice
        scale = scale[first:first + width]
      scales.append(scale)
    g = scales[0]
    for other in scales[1:]:
      g = jnp.maximum(g, other)
    out.append(g)
  return out


def _group_stats(params, structure, threshold):
  """Per group: alive channels (no gradient) and the sum of |gamma|."""
  gammas = unit_gammas(params, structure)
  alive = jnp.stack([jax.lax.stop_gradient(
      (g > threshold).astype(jnp.float32).sum()) for g in gammas])
  sums = jnp.stack([g.sum() for g in gammas])
  units = structure.graph.group_unit
  return alive[units], sums[units]


def alive_macs(params, structure: Structure,
               threshold: float = DEFAULT_THRESHOLD) -> jax.Array:
  """The cost: MACs of the network with only the alive channels."""
  alive, _ = _group_stats(params, structure, threshold)
  return structure.graph.macs(alive, xp=jnp)


def regularization_term(params, structure: Structure,
                        threshold: float = DEFAULT_THRESHOLD) -> jax.Array:
  """MorphNet's differentiable FLOPs proxy (MACs x |gamma|)."""
  alive, sums = _group_stats(params, structure, threshold)
  return structure.graph.gamma_term(alive, sums, xp=jnp)


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
  return {n: out[n] for n in structure.graph.names}


def learned_widths(params, structure: Structure, threshold: float,
                   min_width: int) -> Widths:
  """The alive counts as a width vector; no group below `min_width`."""
  counts = alive_counts(params, structure, threshold)
  return widths_lib.fit(structure.widths,
                        [counts[n] for n in structure.widths.names],
                        min_width)


# ----------------------------------------------------------------------------
# The width optimizer.
# ----------------------------------------------------------------------------

FIELDS = ('strength', 'strength_knob', 'threshold', 'epochs', 'num_steps',
          'lr', 'export_every', 'shrink_to', 'expand_to', 'min_width',
          'average_last', 'calib_batches')


def validate(config) -> None:
  """Checks `config.morphnet`; raises ConfigError naming the field."""
  f = validation.Fields(config.morphnet, 'morphnet')
  f.known(FIELDS, required=FIELDS)
  f.number('strength', 0, note='0 = auto: strength_knob / starting MACs')
  f.number('strength_knob', 0, lo_open=True)
  f.number('threshold', 0, lo_open=True)
  f.training_length()
  f.number('lr', 0, lo_open=True)
  f.number('export_every', 1, integer=True)
  f.number('shrink_to', 0, 1)
  f.number('expand_to', 0)
  f.number('min_width', 1, integer=True)
  f.number('average_last', 0, integer=True,
           note='0 or 1: the last export; k: the mean of the last k')
  f.number('calib_batches', 0, integer=True,
           note='0: measure the deciding net on its running BN averages')


def auto_strength(structure: Structure, knob: float) -> float:
  """MorphNet's advice: strength ~ knob / the network's initial cost.

  With every gamma at its init of 1, the term is about twice the MACs, so
  `strength * term` starts near `2 * knob`, beside a cross-entropy of ~2.3.
  """
  return float(knob) / structure.macs


def structure_learning_train_config(config):
  """`config.train` with MorphNet's schedule: a fixed learning rate."""
  mc = config.morphnet
  # No decay on BN scales: it would shrink every gamma, not only the
  # expensive ones.
  return train.derive_train_config(
      config.train, epochs=float(mc.epochs), num_steps=int(mc.num_steps),
      base_lr=float(mc.lr), schedule='constant', warmup_epochs=0.0,
      decay_bn_and_bias=False)


class _Exporter:
  """The train loop's callback: exports the learned structure.

  Every call records the alive channels per group and their MACs in
  `history.json` (atomically; records past `step` from a killed run are
  replaced) and asks the loop to stop once the MACs reach `stop_macs`.
  """

  def __init__(self, structure: Structure, problem: Problem, mc,
               workdir: str):
    self.structure = structure
    self.problem = problem
    self.threshold = float(mc.threshold)
    self.min_width = int(mc.min_width)
    self.start_macs = structure.macs
    self.stop_macs = (float(mc.shrink_to) * self.start_macs
                      if mc.shrink_to > 0 else -1)
    self.average_last = max(1, int(mc.average_last))
    self.path = workdir_lib.history(workdir)
    self.history = (files.read_json(self.path) if files.exists(self.path)
                    else [])
    self.variables = None  # the deciding net at the last call (host)

  @property
  def learned(self) -> Widths:
    """The result: the last export, or the rounded mean alive counts of the
    last `average_last` exports (a structure still jittering around the
    threshold settles to its average)."""
    last = self.history[-self.average_last:]
    names = self.structure.widths.names
    mean = [np.mean([h['widths'][n] for h in last]) for n in names]
    return widths_lib.fit(self.structure.widths, mean, self.min_width)

  def macs(self, widths: Widths) -> int:
    return cost.macs(widths, self.problem.resolution, self.problem.num_classes)

  def __call__(self, step, state):
    params = jax.device_get(state.params)
    self.variables = {'params': params,
                      'batch_stats': jax.device_get(state.batch_stats)}
    learned = learned_widths(params, self.structure, self.threshold,
                             self.min_width)
    macs = self.macs(learned)
    record = dict(step=int(step), macs=int(macs),
                  macs_fraction=macs / self.start_macs,
                  cost=float(alive_macs(params, self.structure,
                                        self.threshold)),
                  widths=learned.as_dict())
    del self.history[len([h for h in self.history if h['step'] < step]):]
    self.history.append(record)
    if jax.process_index() == 0:
      files.write_json(self.path, self.history)
    return dict(learned_macs=macs, learned_macs_fraction=macs /
                self.start_macs, stop_training=bool(0 <= macs <=
                                                    self.stop_macs))


def deciding_net_metrics(config, problem: Problem, variables) -> dict:
  """The net whose gammas decided the widths, on the val split after BN
  recalibration (`morphnet.calib_batches` train batches); {} when 0."""
  n = int(config.morphnet.calib_batches)
  if not n:
    return {}
  model = models.build_model(problem.widths, problem.num_classes,
                             config.dtype)
  metrics = train.evaluate_recalibrated(
      model, train.make_mesh(), variables, problem.data, calib_batches=n,
      batch_size=int(config.train.batch_size),
      eval_batch_size=int(config.train.eval_batch_size),
      seed=int(config.seed))
  return {'val_top1_recalibrated': metrics['top1'],
          'val_loss_recalibrated': metrics['eval_loss']}


def optimize(config, problem: Problem, workdir: str
             ) -> result_lib.OptimizeResult:
  """MorphNet structure learning from `problem.widths`.

  Trains with `strength * regularization_term` added to the loss at a fixed
  learning rate, exports the learned structure (alive channels per group and
  their MACs) every `export_every` steps to `history.json`, and stops early
  once the learned MACs reach `shrink_to` x the starting MACs (never, with
  `shrink_to=0`: a fixed budget of `epochs`). The learned widths are the
  alive counts of the last export, or their mean over the last
  `average_last` exports (at least `min_width`). The deciding net's val
  top-1 is measured on its running BN averages (`val_top1`) and, with
  `calib_batches > 0`, after BN recalibration (`val_top1_recalibrated`).
  """
  mc = config.morphnet
  res, classes = problem.resolution, problem.num_classes
  structure = make_structure(problem.widths, res, classes)
  strength = float(mc.strength) or auto_strength(structure, mc.strength_knob)
  export = _Exporter(structure, problem, mc, workdir)
  logging.info('MorphNet: strength %.4g (%s), threshold %g, start %d MACs, '
               'stop at %s MACs.', strength,
               'set' if mc.strength else f'auto, knob {mc.strength_knob}',
               export.threshold, export.start_macs,
               f'{export.stop_macs:.0f}' if export.stop_macs >= 0 else
               'the last step')
  t0 = time.perf_counter()
  metrics = train.train_and_evaluate(
      config, problem.widths, workdir_lib.optimizer_train(workdir),
      data_config=problem.data,
      train_config=structure_learning_train_config(config),
      extra_loss=make_extra_loss(structure, strength, export.threshold),
      callback=export, callback_every=int(mc.export_every), eval_split='val')
  t1 = time.perf_counter()
  deciding = deciding_net_metrics(config, problem, export.variables)
  learned = export.learned
  learned_macs = export.macs(learned)
  return result_lib.OptimizeResult(
      widths=learned, train_macs=int(metrics['train_macs']),
      examples=int(metrics['examples_seen']),
      epochs=metrics['examples_seen'] / problem.num_train,
      wall_time_s=float(metrics['wall_time_s']),
      details=dict(optimizer='morphnet', strength=strength,
                   threshold=export.threshold,
                   start_macs=int(export.start_macs),
                   learned_macs=int(learned_macs),
                   learned_widths=learned.as_dict(),
                   averaged_exports=len(export.history[-export.average_last:]),
                   stopped_at_step=int(metrics['steps']),
                   reached_target=bool(learned_macs <= export.stop_macs),
                   val_top1=float(metrics['top1']), **deciding,
                   train_loss=float(metrics.get('train_loss', float('nan'))),
                   time_parts=dict(metrics.get('time_parts', {}),
                                   deciding_eval_s=time.perf_counter() - t1),
                   total_seconds=time.perf_counter() - t0))
