"""AutoSlim (Yu & Huang 2019): slimmable training, then greedy slimming.

A width optimizer with the `optimizers.optimize` interface. Two phases, both
on the network's full widths (the starting `Widths`):

1. **Slimmable training** (`make_sandwich_loss`, run by
   `train.train_and_evaluate` as its `loss_fn`, in `workdir/train`). One set
   of weights serves every narrower sub-network: a sub-network keeps the
   *first* k channels of each group, implemented with channel masks
   (`models`: masks multiply each conv's BN output), so every shape stays
   static and one compiled step serves all widths. Each group's kept count
   moves on a grid of steps of `step_fraction` x its full width, down to a
   minimum (`SlimSpace`). Groups tied by an identity shortcut
   (`architectures.identity_ties`) form one *unit* and slim together; a
   depthwise conv is already in its expansion conv's group. Each step follows
   the sandwich rule: the full width on the labels, the smallest width and
   `num_random` random widths trained by in-place distillation from the full
   width's output (soft cross-entropy against the stop-gradient softmax of
   the full width's logits). The random widths draw one grid level per unit,
   uniformly, from the step's `rng` inside the jitted step, so masks are
   traced arrays (no recompiles). The students' passes are unrolled (one
   per student: under `jax.vmap` XLA:CPU runs the weight gradients as
   grouped convolutions, 2-3x slower). The losses are summed, so
   the update is the sum of the widths' gradients, as in slimmable_networks.

2. **Greedy slimming** (`greedy_slim`). From the full width, repeatedly
   evaluate every candidate that removes one grid step from one unit, keep
   the one with the best top-1 accuracy on the held-out 'val' split (ties:
   lower val loss, then fewer MACs), and stop once its MACs
   (`cost.macs`) reach the target. Candidates are evaluated in chunks of
   `candidate_batch`: one jitted, `jax.vmap`-ed function over a stacked
   [chunk, groups] array of kept counts, padded to a fixed chunk so it
   compiles once. Every accepted step is appended to `history.json`
   (atomically); a re-run replays the history and goes on from its last
   step. A candidate whose widths would turn a projection shortcut into an
   identity shortcut (a ResNet stream slimmed to exactly the width of the
   stream before it, at stride 1) is skipped: the masked network keeps the
   projection, the narrower network of `models` would not, so its accuracy
   would not be that network's. The unit's next grid level is offered
   instead.

Batch norm: recalibration, not switchable (private) statistics
---------------------------------------------------------------
Switchable BN keeps private statistics per width, which only works for a
handful of fixed widths; here every unit slims on its own, so the number of
sub-networks is the product of the grid sizes. AutoSlim (like US-Nets)
therefore shares the BN parameters and recalibrates the statistics of each
candidate before evaluating it: `calib_batches` training batches in train
mode with the candidate's masks, collecting each batch's mean and (biased)
variance and averaging them over the batches (the exact average, as
PyTorch's `momentum=None` cumulative average does, not an exponential
moving average). In train mode BN normalizes with the batch's own statistics,
so the batches are independent and the recalibrated statistics do not depend
on the polluted running averages at all. BN *training* statistics are per
channel, so a kept channel sees the same batch statistics in a masked net as
in the narrower net; only the running averages mix widths.

Running averages during slimmable training: only the full width's pass
updates `batch_stats` (the students' updated statistics are discarded), so
the running averages stay those of the full network: train.py's final
evaluation (on 'val') is the full network's true accuracy, and recalibration
serves every narrower candidate.

Cost accounting (`OptimizeResult.train_macs`)
---------------------------------------------
In MAC x examples, the unit of MorphNet's count: training is
`cost.TRAIN_MACS_FACTOR` (3) x forward MACs per example, forward-only
evaluation (BN calibration and val evaluation) 1 x. `train_macs` counts each
sub-network at *its own* MACs (the analytic cost of the algorithm, as if each
width ran as a narrower network): per training example 3 x (MACs(full) +
MACs(smallest) + num_random x E[MACs(random)]), the expectation taken in
closed form over the sampling distribution (the draws live inside the jitted
step; the realized sum per step, relative to the full MACs, is logged as the
train metric `sandwich_macs`), plus, per candidate evaluation, MACs(candidate)
x (calibration + val examples). What the masked implementation actually
executes is every pass at the full width (and the padding rows of the last
candidate chunk); that count is in `details` as `train_macs_executed`.
Sub-network MACs are those of the masked structure (the full network's layer
graph with fewer channels), which equals `cost.macs` of the candidate's
`Widths` for every candidate greedy slimming evaluates (see the shortcut rule
above). train.py's own final full-width evaluation on 'val' is not counted,
as for MorphNet.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import logging
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import optax

from wt_jax import architectures
from wt_jax import cost as cost_lib
from wt_jax import files
from wt_jax.errors import ConfigError
from wt_jax.widths import Widths

# The BN momentum of `models` (nn.BatchNorm(momentum=0.9)); recalibration
# reads a batch's statistics as the running average updated from zeros,
# (1 - momentum) x the batch's. tests/test_autoslim.py checks it.
BN_MOMENTUM = 0.9

FIELDS = ('epochs', 'num_steps', 'lr', 'step_fraction', 'min_fraction',
          'min_width', 'num_random', 'inplace_distillation', 'target_macs',
          'target_fraction', 'expand_to', 'calib_batches', 'eval_batches',
          'candidate_batch')


# ----------------------------------------------------------------------------
# The slimming space: units, grids, masks, MACs.
# ----------------------------------------------------------------------------


def width_grid(full: int, step_fraction: float, min_width: int,
               min_fraction: float) -> tuple[int, ...]:
  """Kept channel counts of one group, decreasing from `full`.

  round(full x (1 - j x step_fraction)) for j = 0, 1, ..., while at least
  max(min_width, ceil(min_fraction x full)); duplicates (narrow groups)
  removed. A group at or below the minimum never slims.
  """
  floor = max(int(min_width), int(np.ceil(min_fraction * full - 1e-9)), 1)
  out = [int(full)]
  j = 1
  while True:
    k = int(np.floor(full * (1.0 - j * step_fraction) + 0.5))
    if k < floor or k <= 0:
      break
    if k < out[-1]:
      out.append(k)
    j += 1
  return tuple(out)


@dataclasses.dataclass(frozen=True)
class _Layer:
  coeff: int
  depthwise: bool
  in_group: Optional[int]  # group index; None: constant `in_const`
  out_group: Optional[int]
  in_const: int
  out_const: int


@dataclasses.dataclass(frozen=True)
class SlimSpace:
  """Which sub-networks of `widths` exist, as grid levels per unit.

  A sub-network is a level vector (one int per unit, 0 = full width); its
  kept counts (one per group) are `counts(levels)`.
  """
  widths: Widths  # the full network
  units: tuple[tuple[str, ...], ...]  # groups merged by identity ties
  grids: tuple[tuple[int, ...], ...]  # per unit: kept counts, decreasing
  group_unit: tuple[int, ...]  # per group (in `widths.names` order)
  layers: tuple[_Layer, ...]  # the full network's layer graph
  ties: frozenset  # identity ties of the full network

  @property
  def num_units(self) -> int:
    return len(self.units)

  @property
  def num_levels(self) -> np.ndarray:
    return np.asarray([len(g) for g in self.grids], np.int32)

  @property
  def min_levels(self) -> np.ndarray:
    return self.num_levels - 1

  @property
  def full_levels(self) -> np.ndarray:
    return np.zeros(self.num_units, np.int32)

  def unit_label(self, u: int) -> str:
    return '+'.join(self.units[u])

  def grid_table(self) -> np.ndarray:
    """[units, max levels] kept counts, each row padded with its last."""
    width = int(self.num_levels.max())
    return np.asarray([list(g) + [g[-1]] * (width - len(g))
                       for g in self.grids], np.int32)

  def counts(self, levels) -> np.ndarray:
    """Kept count per group of the level vector (host, numpy)."""
    levels = np.asarray(levels, np.int64)
    return np.asarray([self.grids[u][levels[u]] for u in self.group_unit],
                      np.int32)

  def widths_at(self, levels) -> Widths:
    return self.widths.replace(self.counts(levels).tolist())

  def levels_of(self, widths: Widths) -> np.ndarray:
    """The level vector of a width vector of this space (ValueError if none)."""
    values = widths.as_dict()
    out = []
    for unit, grid in zip(self.units, self.grids):
      ks = {values[g] for g in unit}
      if len(ks) != 1 or ks.pop() not in grid:
        raise ValueError(f'widths {widths.as_dict()} are not on the slimming '
                         f'grid of unit {unit}: {grid}')
      out.append(grid.index(values[unit[0]]))
    return np.asarray(out, np.int32)

  def keeps_shortcuts(self, levels) -> bool:
    """True iff the sub-network's identity ties are the full network's."""
    w = self.widths_at(levels)
    return frozenset(architectures.identity_ties(w.spec, w.values)) == self.ties

  # --- Traceable (jnp) versions, for the jitted steps. ---

  def jnp_counts(self, levels: jax.Array) -> jax.Array:
    """[..., units] levels -> [..., groups] kept counts (traceable)."""
    table = jnp.asarray(self.grid_table())
    units = jnp.asarray(self.group_unit, jnp.int32)
    levels = jnp.asarray(levels, jnp.int32)
    return table[units, levels[..., units]]

  def masks(self, counts: jax.Array) -> dict[str, jax.Array]:
    """[groups] kept counts -> {group: float32 [C]} masks, first k kept."""
    counts = jnp.asarray(counts)
    return {name: (jnp.arange(full) < counts[i]).astype(jnp.float32)
            for i, (name, full) in enumerate(zip(self.widths.names,
                                                 self.widths.values))}

  def sample_levels(self, rng: jax.Array) -> jax.Array:
    """One uniformly random grid level per unit (traceable)."""
    return jax.random.randint(rng, (self.num_units,), 0,
                              jnp.asarray(self.num_levels))

  def macs(self, counts, xp=np) -> Any:
    """Forward MACs of the masked structure with these kept counts.

    Equals `cost.macs(widths_at(levels))` whenever the sub-network keeps the
    full network's shortcut types (`keeps_shortcuts`). Works on numpy
    (exact, int64) and jnp (float32) counts.
    """
    counts = xp.asarray(counts)
    dtype = xp.int64 if xp is np else jnp.float32
    total = xp.zeros(counts.shape[:-1], dtype)
    for l in self.layers:
      k_in = (l.in_const if l.in_group is None else
              counts[..., l.in_group].astype(dtype))
      k_out = (l.out_const if l.out_group is None else
               counts[..., l.out_group].astype(dtype))
      total = total + l.coeff * (k_out if l.depthwise else k_in * k_out)
    return total

  def expected_random_macs(self) -> float:
    """E[MACs] of a random sub-network (levels uniform per unit), exact."""
    grids = [np.asarray(g, np.float64) for g in self.grids]
    mean = [g.mean() for g in grids]
    mean_sq = [(g * g).mean() for g in grids]
    unit = self.group_unit
    total = 0.0
    for l in self.layers:
      ui = None if l.in_group is None else unit[l.in_group]
      uo = None if l.out_group is None else unit[l.out_group]
      e_out = l.out_const if uo is None else mean[uo]
      if l.depthwise:
        total += l.coeff * e_out
        continue
      e_in = l.in_const if ui is None else mean[ui]
      if ui is not None and ui == uo:
        total += l.coeff * mean_sq[ui]
      else:
        total += l.coeff * e_in * e_out
    return float(total)


def make_space(widths: Widths, resolution: int, num_classes: int, *,
               step_fraction: float = 0.1, min_width: int = 4,
               min_fraction: float = 0.1) -> SlimSpace:
  """The slimming space of the full network `widths`."""
  spec = widths.spec
  names = list(widths.names)
  ties = architectures.identity_ties(spec, widths.values)
  units = architectures.tie_units(spec, widths.values)
  w = widths.as_dict()
  grids = tuple(width_grid(w[u[0]], step_fraction, min_width, min_fraction)
                for u in units)
  unit_of = {n: i for i, unit in enumerate(units) for n in unit}
  group_unit = tuple(unit_of[n] for n in names)
  index = {n: i for i, n in enumerate(names)}
  layers = tuple(_Layer(
      coeff=l.coeff, depthwise=l.kind == 'depthwise',
      in_group=None if l.in_group is None else index[l.in_group],
      out_group=None if l.out_group is None else index[l.out_group],
      in_const=l.in_channels, out_const=l.out_channels)
                 for l in architectures.layers(spec, widths.values, resolution,
                                               num_classes))
  return SlimSpace(widths, units, grids, group_unit, layers, frozenset(ties))


def space_from_config(config, widths: Widths, resolution: int,
                      num_classes: int) -> SlimSpace:
  ac = config.autoslim
  return make_space(widths, resolution, num_classes,
                    step_fraction=float(ac.step_fraction),
                    min_width=int(ac.min_width),
                    min_fraction=float(ac.min_fraction))


# ----------------------------------------------------------------------------
# Slimmable training: the sandwich loss.
# ----------------------------------------------------------------------------


def _masked_mean(values, mask):
  return (values * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def make_sandwich_loss(space: SlimSpace, num_random: int = 2,
                       inplace_distillation: bool = True):
  """The sandwich rule as a `train.LossFn`.

  loss = CE(full, labels) + sum over the smallest and `num_random` random
  widths of CE(student, softmax(stop_gradient(full logits))) (or of
  CE(student, labels) without in-place distillation). Only the full width's
  pass updates the BN running statistics. Metrics: `accuracy` (full width),
  `full_loss`, `student_loss` (summed over students), `min_accuracy`
  (smallest width), `sandwich_macs` (MACs of all widths of this step / full
  MACs).
  """
  num_random = int(num_random)
  full_macs = float(space.macs(space.widths.array()))

  def loss_fn(model, params, batch_stats, batch, rng, train_config):
    smoothing = float(_get(train_config, 'label_smoothing', 0.0))
    variables = {'params': params, 'batch_stats': batch_stats}
    images, mask = batch['image'], batch['mask']
    logits, new_vars = model.apply(variables, images, train=True,
                                   mutable=['batch_stats'])
    labels = jax.nn.one_hot(batch['label'], logits.shape[-1])
    if smoothing:
      labels = optax.smooth_labels(labels, smoothing)
    full_loss = _masked_mean(optax.softmax_cross_entropy(logits, labels), mask)
    if inplace_distillation:
      target = jax.nn.softmax(jax.lax.stop_gradient(logits))
    else:
      target = labels
    levels = [jnp.asarray(space.min_levels)[None]]
    if num_random:
      keys = jax.random.split(rng, num_random)
      levels.append(jax.vmap(space.sample_levels)(keys))
    counts = space.jnp_counts(jnp.concatenate(levels))  # [students, groups]
    # One pass per student, unrolled: under jax.vmap the weight gradient of a
    # conv whose input and output gradient are both batched becomes a grouped
    # convolution, 2-3x slower on XLA:CPU than separate convolutions.
    student_logits, student_losses = [], []
    for i in range(counts.shape[0]):
      out, _ = model.apply(variables, images, train=True,
                           masks=space.masks(counts[i]),
                           mutable=['batch_stats'])
      student_logits.append(out)
      student_losses.append(_masked_mean(
          optax.softmax_cross_entropy(out, target), mask))
    student_loss = sum(student_losses)
    correct = jnp.argmax(logits, -1) == batch['label']
    min_correct = jnp.argmax(student_logits[0], -1) == batch['label']
    sub_macs = space.macs(counts, xp=jnp).sum()
    metrics = {'accuracy': _masked_mean(correct, mask),
               'min_accuracy': _masked_mean(min_correct, mask),
               'full_loss': full_loss, 'student_loss': student_loss,
               'sandwich_macs': (full_macs + sub_macs) / full_macs}
    return full_loss + student_loss, (new_vars['batch_stats'], metrics)

  return loss_fn


def _get(cfg, name, default):
  try:
    return cfg[name]
  except (KeyError, AttributeError, TypeError):
    return getattr(cfg, name, default)


def slimmable_train_config(config):
  """`config.train` with AutoSlim's length and learning rate."""
  from wt_jax import train  # pylint: disable=g-import-not-at-top
  ac = config.autoslim
  lr = {'base_lr': float(ac.lr)} if ac.lr > 0 else {}
  return train.derive_train_config(config.train, epochs=float(ac.epochs),
                                   num_steps=int(ac.num_steps), **lr)


def train_macs_per_example(space: SlimSpace, num_random: int
                           ) -> tuple[float, int]:
  """(analytic, executed) training MACs per example of one sandwich step."""
  full = int(space.macs(space.widths.array()))
  smallest = int(space.macs(space.counts(space.min_levels)))
  analytic = cost_lib.TRAIN_MACS_FACTOR * (
      full + smallest + num_random * space.expected_random_macs())
  executed = cost_lib.TRAIN_MACS_FACTOR * full * (2 + num_random)
  return analytic, executed


# ----------------------------------------------------------------------------
# Candidate evaluation: BN recalibration + val accuracy, vmapped.
# ----------------------------------------------------------------------------


def _replicate(mesh, tree):
  """Host values -> jax.Arrays replicated over `mesh` (multi-process safe)."""
  sharding = NamedSharding(mesh, P())

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(put, tree)


def _global_batch(mesh, local):
  sharding = NamedSharding(mesh, P('data'))
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


class CandidateEvaluator:
  """Recalibrates BN and measures val top-1 / loss of many sub-networks.

  `evaluate(levels_list)` runs chunks of `chunk` candidates through two
  jitted, vmapped functions (calibration, evaluation), each compiled once:
  the last chunk is padded by repeating its last candidate (counted in
  `rows_executed`). `chunk=0` means `space.num_units`.
  """

  def __init__(self, model, space: SlimSpace, mesh, variables,
               calib_batches: Sequence[Mapping[str, np.ndarray]],
               val_batches: Sequence[Mapping[str, np.ndarray]],
               chunk: int = 0):
    if not calib_batches or not val_batches:
      raise ValueError('candidate evaluation needs at least one calibration '
                       'batch and one val batch')
    self.space = space
    self.mesh = mesh
    self.chunk = int(chunk) or space.num_units
    host = {'params': variables['params'],
            'batch_stats': variables['batch_stats']}
    self.variables = _replicate(mesh, host)
    self.calib = [_global_batch(mesh, {'image': b['image']})
                  for b in calib_batches]
    self.val = [_global_batch(mesh, dict(b)) for b in val_batches]
    self.calib_examples = sum(int(b['image'].shape[0]) for b in self.calib)
    self.val_examples = sum(int(b['image'].shape[0]) for b in self.val)
    self.rows_executed = 0
    self.seconds = 0.0
    rep = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P('data'))
    inv = 1.0 / (1.0 - BN_MOMENTUM)

    def calib_fn(variables, counts, images, acc):
      zeros = jax.tree.map(jnp.zeros_like, variables['batch_stats'])

      def one(c):
        _, new = model.apply({'params': variables['params'],
                              'batch_stats': zeros}, images, train=True,
                             masks=space.masks(c), mutable=['batch_stats'])
        return jax.tree.map(lambda s: s * inv, new['batch_stats'])

      stats = jax.vmap(one)(counts)
      return jax.tree.map(jnp.add, acc, stats)

    def eval_fn(variables, stats, counts, batch, sums):
      def one(c, st):
        logits = model.apply({'params': variables['params'], 'batch_stats': st},
                             batch['image'], train=False, masks=space.masks(c))
        m = batch['mask']
        correct = (jnp.argmax(logits, -1) == batch['label']) * m
        loss = optax.softmax_cross_entropy_with_integer_labels(
            logits, batch['label']) * m
        return correct.sum(), loss.sum()

      correct, loss = jax.vmap(one)(counts, stats)
      return {'correct': sums['correct'] + correct,
              'loss': sums['loss'] + loss,
              'count': sums['count'] + batch['mask'].sum()}

    self._calib = jax.jit(calib_fn, in_shardings=(rep, rep, data, rep),
                          out_shardings=rep, donate_argnums=(3,))
    self._eval = jax.jit(eval_fn, in_shardings=(rep, rep, rep, data, rep),
                         out_shardings=rep, donate_argnums=(4,))
    self._zero_stats = jax.jit(
        lambda bs: jax.tree.map(
            lambda x: jnp.zeros((self.chunk,) + x.shape, x.dtype), bs),
        out_shardings=rep)
    self._zero_sums = jax.jit(
        lambda: {'correct': jnp.zeros((self.chunk,), jnp.float32),
                 'loss': jnp.zeros((self.chunk,), jnp.float32),
                 'count': jnp.zeros((), jnp.float32)}, out_shardings=rep)
    self._scale = jax.jit(lambda t, s: jax.tree.map(lambda x: x * s, t),
                          out_shardings=rep)

  def recalibrated_stats(self, counts: jax.Array):
    """Per-candidate BN statistics: the mean over the calibration batches."""
    acc = self._zero_stats(self.variables['batch_stats'])
    for batch in self.calib:
      acc = self._calib(self.variables, counts, batch['image'], acc)
    return self._scale(acc, np.float32(1.0 / len(self.calib)))

  def evaluate(self, levels_list: Sequence[Sequence[int]]
               ) -> dict[str, np.ndarray]:
    """{'top1', 'loss'} per candidate (level vectors), in the given order."""
    t0 = time.perf_counter()
    levels_list = [np.asarray(l, np.int32) for l in levels_list]
    top1, loss = [], []
    for start in range(0, len(levels_list), self.chunk):
      part = levels_list[start:start + self.chunk]
      rows = part + [part[-1]] * (self.chunk - len(part))
      counts = _replicate(self.mesh, np.stack(
          [self.space.counts(l) for l in rows]).astype(np.int32))
      stats = self.recalibrated_stats(counts)
      sums = self._zero_sums()
      for batch in self.val:
        sums = self._eval(self.variables, stats, counts, batch, sums)
      sums = jax.tree.map(
          lambda x: np.asarray(x.addressable_data(0), np.float64), sums)
      n = max(float(sums['count']), 1.0)
      top1.extend((sums['correct'][:len(part)] / n).tolist())
      loss.extend((sums['loss'][:len(part)] / n).tolist())
      self.rows_executed += self.chunk
    self.seconds += time.perf_counter() - t0
    return {'top1': np.asarray(top1), 'loss': np.asarray(loss)}


# ----------------------------------------------------------------------------
# Greedy slimming.
# ----------------------------------------------------------------------------


def candidates(space: SlimSpace, levels) -> list[tuple[int, np.ndarray]]:
  """(unit, levels) of every one-step slimming of `levels`.

  A unit's next grid level that would change the shortcut types is skipped
  (the level after it is offered).
  """
  out = []
  levels = np.asarray(levels, np.int32)
  for u in range(space.num_units):
    for j in range(int(levels[u]) + 1, len(space.grids[u])):
      cand = levels.copy()
      cand[u] = j
      if space.keeps_shortcuts(cand):
        out.append((u, cand))
        break
  return out


def greedy_slim(space: SlimSpace, evaluate: Callable[[list], Mapping[str, Any]],
                target_macs: int, *, history: Optional[list] = None,
                settings: Optional[dict] = None,
                eval_examples: int = 0,
                save: Optional[Callable[[list], None]] = None) -> list:
  """Greedy slimming down to `target_macs`; returns the history.

  `evaluate(list of level vectors) -> {'top1': [n], 'loss': [n]}`.
  `history`: records of an earlier run (same `space` and `settings`) to go
  on from; records past the first one at or below the target are dropped.
  Each record: step, macs, macs_fraction, val_top1, val_loss, widths,
  levels, removed (the groups slimmed at this step), candidates (evaluated
  at this step), eval_macs (candidate MACs x `eval_examples`, summed),
  eval_seconds. Record 0 is the full network. `save(history)` is called
  after each record.
  """
  full_macs = int(space.macs(space.widths.array()))
  settings = dict(settings or {})

  def record(step, levels, result, removed, n_cands, eval_macs, seconds):
    w = space.widths_at(levels)
    macs = int(space.macs(space.counts(levels)))
    rec = dict(step=int(step), macs=macs, macs_fraction=macs / full_macs,
               val_top1=float(result[0]), val_loss=float(result[1]),
               widths=w.as_dict(), levels=[int(x) for x in levels],
               removed=list(removed), candidates=int(n_cands),
               eval_macs=int(eval_macs), eval_seconds=float(seconds))
    if step == 0:
      rec['settings'] = settings
      rec['units'] = [list(u) for u in space.units]
    return rec

  history = list(history or [])
  if history:
    first = history[0]
    if (first.get('widths') != space.widths.as_dict() or
        first.get('settings') != settings):
      raise ValueError(
          'history.json belongs to another slimming run (full widths '
          f'{first.get("widths")}, settings {first.get("settings")}; this '
          f'run: {space.widths.as_dict()}, {settings}); use another workdir '
          'or delete it')
    for i, rec in enumerate(history):
      if rec['macs'] <= target_macs:
        del history[i + 1:]
        break
  else:
    t0 = time.perf_counter()
    res = evaluate([space.full_levels])
    history.append(record(0, space.full_levels,
                          (res['top1'][0], res['loss'][0]), [], 1,
                          full_macs * eval_examples,
                          time.perf_counter() - t0))
    if save:
      save(history)
  levels = np.asarray(history[-1]['levels'], np.int32)
  while history[-1]['macs'] > target_macs:
    cands = candidates(space, levels)
    if not cands:
      logging.info('AutoSlim: every unit is at its minimum width; MACs %d > '
                   'target %d.', history[-1]['macs'], target_macs)
      break
    t0 = time.perf_counter()
    res = evaluate([c for _, c in cands])
    macs = [int(space.macs(space.counts(c))) for _, c in cands]
    best = max(range(len(cands)), key=lambda i: (
        res['top1'][i], -res['loss'][i], -macs[i], -i))
    unit, levels = cands[best]
    history.append(record(
        len(history), levels, (res['top1'][best], res['loss'][best]),
        space.units[unit], len(cands), sum(macs) * eval_examples,
        time.perf_counter() - t0))
    logging.info('AutoSlim step %d: slimmed %s -> %d MACs (%.3f of full), '
                 'val top1 %.4f (%d candidates).', history[-1]['step'],
                 space.unit_label(unit), history[-1]['macs'],
                 history[-1]['macs_fraction'], history[-1]['val_top1'],
                 len(cands))
    if save:
      save(history)
  return history


# ----------------------------------------------------------------------------
# The width optimizer.
# ----------------------------------------------------------------------------


def target_of(config, full_macs: int) -> int:
  ac = config.autoslim
  if int(ac.target_macs) > 0:
    return int(ac.target_macs)
  return int(np.floor(float(ac.target_fraction) * full_macs))


def _take(ds, n):
  from wt_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  it = data_lib.as_numpy(ds)
  return list(itertools.islice(it, n)) if n > 0 else list(it)


def _sample_batches(ds, n, seed=0):
  """`n` batches of a random, fixed subset of an eval stream (all if n = 0).

  Eval splits come in index order, which is class order for `folder:` data,
  so the first batches would hold one or two classes. This streams the split
  once and keeps a seeded uniform sample of its real rows (masks preserved,
  padding rows last), so candidates are scored on every class.
  """
  batches = _take(ds, 0)
  if n <= 0 or n >= len(batches):
    return batches
  rows = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  real = np.flatnonzero(rows['mask'] > 0)
  size = len(batches[0]['mask'])
  keep = np.sort(np.random.default_rng(seed).permutation(real)[:n * size])
  pad = n * size - len(keep)
  keep = np.concatenate([keep, np.flatnonzero(rows['mask'] == 0)[:pad]])
  return [{k: v[keep[i * size:(i + 1) * size]] for k, v in rows.items()}
          for i in range(n)]


def optimize(config, problem, workdir: str):
  """AutoSlim (transitional shim until the package split lands)."""
  return _optimize(config, problem.data, problem.widths, workdir)


def validate(config):
  return validate_config(config)


def _optimize(config, data_config, widths: Widths, workdir: str):
  """AutoSlim from `widths`; see `optimizers.optimize` and the module doc."""
  # pylint: disable=g-import-not-at-top
  from wt_jax import data as data_lib
  from wt_jax import extrapolate
  from wt_jax import models
  from wt_jax import result as optimizers
  from wt_jax import train
  # pylint: enable=g-import-not-at-top
  ac = config.autoslim
  info = data_lib.dataset_info(data_config)
  res, classes = info.resolution, info.num_classes
  space = space_from_config(config, widths, res, classes)
  full_macs = cost_lib.macs(widths, res, classes)
  target = target_of(config, full_macs)
  num_random = int(ac.num_random)
  logging.info('AutoSlim: %d units, grids %s; full %d MACs, target %d.',
               space.num_units, [len(g) for g in space.grids], full_macs,
               target)

  # --- Slimmable training (resumes from workdir/train). ---
  captured = {}

  def capture(step, state):
    captured['step'] = int(step)
    captured['variables'] = train.to_host(
        {'params': state.params, 'batch_stats': state.batch_stats})

  tc = slimmable_train_config(config)
  metrics = train.train_and_evaluate(
      config, widths, os.path.join(workdir, 'train'), data_config=data_config,
      train_config=tc,
      loss_fn=make_sandwich_loss(space, num_random,
                                 bool(ac.inplace_distillation)),
      callback=capture, callback_every=0, eval_split='val')
  examples = int(metrics['examples_seen'])
  per_example, per_example_executed = train_macs_per_example(space, num_random)

  # --- Greedy slimming (replays history.json). ---
  t0 = time.perf_counter()
  mesh = train.make_mesh()
  pcount, pindex = jax.process_count(), jax.process_index()
  batch_size = int(tc.batch_size)
  eval_batch_size = int(tc.eval_batch_size)
  calib = _take(data_lib.make_dataset(
      data_config, 'train', batch_size=batch_size,
      seed=train.epoch_seed(int(config.seed), 1_000_003), train=True,
      process_index=pindex, process_count=pcount, num_epochs=1,
      drop_remainder=True), int(ac.calib_batches))
  val = _sample_batches(data_lib.make_dataset(
      data_config, 'val', batch_size=eval_batch_size, seed=0, train=False,
      process_index=pindex, process_count=pcount), int(ac.eval_batches))
  dtype = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[
      config.get('dtype', 'float32')]
  model = models.build_model(widths, classes, dtype)
  evaluator = CandidateEvaluator(model, space, mesh, captured['variables'],
                                 calib, val, int(ac.candidate_batch))
  eval_examples = evaluator.calib_examples + evaluator.val_examples
  settings = dict(step_fraction=float(ac.step_fraction),
                  min_fraction=float(ac.min_fraction),
                  min_width=int(ac.min_width),
                  calib_batches=len(calib), eval_batches=len(val),
                  batch_size=batch_size, eval_batch_size=eval_batch_size,
                  trained_steps=int(metrics['steps']), seed=int(config.seed))
  history_path = os.path.join(workdir, optimizers.HISTORY)
  history = files.read_json(history_path) if files.exists(history_path) else None

  def save(h):
    if pindex == 0:
      files.write_json(history_path, h)

  history = greedy_slim(space, evaluator.evaluate, target, history=history,
                        settings=settings, eval_examples=eval_examples,
                        save=save)
  save(history)
  slim_seconds = time.perf_counter() - t0
  slimmed = widths.replace([history[-1]['widths'][n] for n in widths.names])
  slimmed_macs = cost_lib.macs(slimmed, res, classes)
  result_widths = slimmed
  if ac.expand_to > 0:
    result_widths = extrapolate.flops_match(
        slimmed, int(ac.expand_to * full_macs), res, classes,
        divisor=config.transfer.divisor,
        min_width=config.transfer.min_width).widths

  n_evals = sum(r['candidates'] for r in history)
  eval_seconds = sum(r['eval_seconds'] for r in history)
  slim_macs = sum(r['eval_macs'] for r in history)
  # Executed: every candidate row (padding included) at the full width. The
  # rows of a replayed history are reconstructed from its candidate counts.
  chunk = evaluator.chunk
  rows = sum(-(-r['candidates'] // chunk) * chunk for r in history)
  slim_macs_executed = rows * full_macs * eval_examples
  train_macs = int(round(per_example * examples))
  train_macs_executed = int(per_example_executed) * examples
  return optimizers.OptimizeResult(
      widths=result_widths, train_macs=train_macs + int(slim_macs),
      examples=examples, epochs=examples / info.num_examples['train'],
      wall_time_s=float(metrics['wall_time_s']) + eval_seconds,
      details=dict(
          optimizer='autoslim', bn='recalibration',
          cost_convention='sub-network MACs (executed: full width)',
          start_macs=int(full_macs), target_macs=int(target),
          slimmed_macs=int(slimmed_macs), slimmed_widths=slimmed.as_dict(),
          reached_target=bool(slimmed_macs <= target),
          slimmed_val_top1=float(history[-1]['val_top1']),
          full_val_top1=float(history[0]['val_top1']),
          full_val_top1_running_stats=float(metrics['top1']),
          slimming_steps=len(history) - 1,
          candidate_evaluations=int(n_evals),
          candidate_eval_seconds=float(eval_seconds),
          candidate_batch=int(chunk),
          calib_examples=int(evaluator.calib_examples),
          val_examples_per_candidate=int(evaluator.val_examples),
          slimming_seconds=float(slim_seconds),
          train_steps=int(metrics['steps']),
          train_wall_time_s=float(metrics['wall_time_s']),
          sandwich_train_macs=train_macs,
          sandwich_train_macs_executed=int(train_macs_executed),
          slimming_macs=int(slim_macs),
          slimming_macs_executed=int(slim_macs_executed),
          train_macs_executed=int(train_macs_executed + slim_macs_executed),
          num_random=num_random, units=[list(u) for u in space.units],
          grids=[list(g) for g in space.grids],
          train_loss=float(metrics.get('train_loss', float('nan')))))


# ----------------------------------------------------------------------------
# Config validation (called by config_check.validate).
# ----------------------------------------------------------------------------


def validate_config(config) -> None:
  """Checks `config.autoslim`; raises config_check.ConfigError."""
  ac = config.autoslim

  def bad(field, allowed):
    raise ConfigError(f'config.autoslim.{field}={ac[field]!r} is invalid; '
                      f'allowed: {allowed}')

  unknown = sorted(set(ac.keys()) - set(FIELDS))
  if unknown:
    raise ConfigError(f'config.autoslim has unknown fields {unknown}; '
                      f'allowed: {", ".join(FIELDS)}')
  missing = [f for f in FIELDS if f not in ac]
  if missing:
    raise ConfigError(f'config.autoslim is missing fields {missing} (see '
                      'wt_jax/defaults.py)')

  def number(field, integer=False):
    v = ac[field]
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok:
      bad(field, 'an integer' if integer else 'a number')
    return v

  if number('epochs') < 0:
    bad('epochs', '>= 0')
  if number('num_steps', True) < 0:
    bad('num_steps', 'an integer >= 0')
  if ac.num_steps == 0 and not ac.epochs > 0:
    bad('epochs', '> 0 (or set autoslim.num_steps > 0)')
  if number('lr') < 0:
    bad('lr', '>= 0 (0 = config.train.base_lr)')
  if not 0 < number('step_fraction') < 1:
    bad('step_fraction', 'a number in (0, 1)')
  if not 0 <= number('min_fraction') <= 1:
    bad('min_fraction', 'a number in [0, 1]')
  if number('min_width', True) < 1:
    bad('min_width', 'an integer >= 1')
  if number('num_random', True) < 0:
    bad('num_random', 'an integer >= 0')
  if not isinstance(ac.inplace_distillation, bool):
    bad('inplace_distillation', 'True or False')
  if number('target_macs', True) < 0:
    bad('target_macs', 'an integer >= 0 (0 = use target_fraction)')
  if not 0 < number('target_fraction') <= 1:
    bad('target_fraction', 'a number in (0, 1]')
  if number('expand_to') < 0:
    bad('expand_to', '>= 0 (0 = no FLOPs matching)')
  if number('calib_batches', True) < 1:
    bad('calib_batches', 'an integer >= 1')
  if number('eval_batches', True) < 0:
    bad('eval_batches', 'an integer >= 0 (0 = the whole val split)')
  if number('candidate_batch', True) < 0:
    bad('candidate_batch', 'an integer >= 0 (0 = all units at once)')
  if config.get('optimizer') == 'autoslim' and 'data' in config and not (
      config.data.get('val_fraction', 0) > 0):
    raise ConfigError(
        f'config.data.val_fraction={config.data.get("val_fraction")!r} is '
        'invalid with optimizer=autoslim; allowed: > 0 (greedy slimming '
        'evaluates candidates on the held-out val split, never on test)')
