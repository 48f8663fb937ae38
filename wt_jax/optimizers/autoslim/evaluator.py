"""Candidate evaluation: BN recalibration, then val top-1 / loss, vmapped.

Batch norm: recalibration, not switchable (private) statistics
---------------------------------------------------------------
Switchable BN keeps private statistics per width, which only works for a
handful of fixed widths; here every unit slims on its own, so the number of
sub-networks is the product of the grid sizes. AutoSlim (like US-Nets)
therefore shares the BN parameters and recalibrates the statistics of each
candidate before evaluating it: the calibration batches (training batches)
in train mode with the candidate's masks, collecting each batch's mean and
(biased) variance and averaging them over the batches (the exact average, as
PyTorch's `momentum=None` cumulative average does, not an exponential
moving average). In train mode BN normalizes with the batch's own
statistics, so the batches are independent and the recalibrated statistics
do not depend on the polluted running averages at all. BN *training*
statistics are per channel, so a kept channel sees the same batch statistics
in a masked net as in the narrower net; only the running averages mix
widths.

Vmapped chunks
--------------
`CandidateEvaluator.evaluate` scores candidates in chunks: one jitted,
`jax.vmap`-ed function over a stacked [chunk, groups] array of kept counts,
padded to a fixed chunk (by repeating the chunk's last candidate) so that it
compiles once. State is replicated over the mesh and batches are split over
its 'data' axis (`train.sharding`).
"""
from __future__ import annotations

import time
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wt_jax.nets import families
from wt_jax.optimizers.slim_space import SlimSpace
from wt_jax.train import recalibration
from wt_jax.train import sharding

# recalibration reads a batch's statistics back from the running averages
# updated from zeros; tests/test_autoslim.py checks it.
BN_MOMENTUM = families.BN_MOMENTUM


def _calibration_fn(model, space: SlimSpace):
  """(variables, counts, images, acc) -> acc + every candidate's batch stats."""

  def calib_fn(variables, counts, images, acc):
    stats = jax.vmap(lambda c: recalibration.batch_statistics(
        model, variables['params'], variables['batch_stats'], images,
        space.masks(c)))(counts)
    return jax.tree.map(jnp.add, acc, stats)

  return calib_fn


def _evaluation_fn(model, space: SlimSpace):
  """(variables, stats, counts, batch, sums) -> sums + every candidate's
  correct predictions and loss on `batch` (and the batch's real rows)."""

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

  return eval_fn


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
    self.variables = sharding.replicate(
        mesh, {'params': variables['params'],
               'batch_stats': variables['batch_stats']})
    self.calib = [sharding.global_batch(mesh, {'image': b['image']})
                  for b in calib_batches]
    self.val = [sharding.global_batch(mesh, dict(b)) for b in val_batches]
    self.calib_examples = sum(int(b['image'].shape[0]) for b in self.calib)
    self.val_examples = sum(int(b['image'].shape[0]) for b in self.val)
    self.rows_executed = 0
    self.seconds = 0.0
    self._compile(model)

  def _compile(self, model) -> None:
    """The jitted calibration, evaluation and accumulator functions."""
    rep = sharding.replicated(self.mesh)
    split = sharding.batch_sharding(self.mesh)
    chunk = self.chunk
    self._calib = jax.jit(_calibration_fn(model, self.space),
                          in_shardings=(rep, rep, split, rep),
                          out_shardings=rep, donate_argnums=(3,))
    self._eval = jax.jit(_evaluation_fn(model, self.space),
                         in_shardings=(rep, rep, rep, split, rep),
                         out_shardings=rep, donate_argnums=(4,))
    self._zero_stats = jax.jit(
        lambda bs: jax.tree.map(
            lambda x: jnp.zeros((chunk,) + x.shape, x.dtype), bs),
        out_shardings=rep)
    self._zero_sums = jax.jit(
        lambda: {'correct': jnp.zeros((chunk,), jnp.float32),
                 'loss': jnp.zeros((chunk,), jnp.float32),
                 'count': jnp.zeros((), jnp.float32)}, out_shardings=rep)
    self._scale = jax.jit(lambda t, s: jax.tree.map(lambda x: x * s, t),
                          out_shardings=rep)

  def recalibrated_stats(self, counts: jax.Array):
    """Per-candidate BN statistics: the mean over the calibration batches."""
    acc = self._zero_stats(self.variables['batch_stats'])
    for batch in self.calib:
      acc = self._calib(self.variables, counts, batch['image'], acc)
    return self._scale(acc, np.float32(1.0 / len(self.calib)))

  def _evaluate_chunk(self, rows: Sequence[np.ndarray]) -> dict:
    """Summed correct / loss per row and the real example count (host)."""
    counts = sharding.replicate(self.mesh, np.stack(
        [self.space.counts(l) for l in rows]).astype(np.int32))
    stats = self.recalibrated_stats(counts)
    sums = self._zero_sums()
    for batch in self.val:
      sums = self._eval(self.variables, stats, counts, batch, sums)
    self.rows_executed += len(rows)
    return jax.tree.map(lambda x: np.asarray(x, np.float64),
                        sharding.to_host(sums))

  def evaluate(self, levels_list: Sequence[Sequence[int]]
               ) -> dict[str, np.ndarray]:
    """{'top1', 'loss'} per candidate (level vectors), in the given order."""
    t0 = time.perf_counter()
    levels_list = [np.asarray(l, np.int32) for l in levels_list]
    top1, loss = [], []
    for start in range(0, len(levels_list), self.chunk):
      part = levels_list[start:start + self.chunk]
      sums = self._evaluate_chunk(part + [part[-1]] * (self.chunk - len(part)))
      n = max(float(sums['count']), 1.0)
      top1.extend((sums['correct'][:len(part)] / n).tolist())
      loss.extend((sums['loss'][:len(part)] / n).tolist())
    self.seconds += time.perf_counter() - t0
    return {'top1': np.asarray(top1), 'loss': np.asarray(loss)}
