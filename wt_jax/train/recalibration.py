"""Batch-norm recalibration: exact BN statistics for the current weights.

Running averages (momentum 0.9) lag behind weights that move fast, which a
width optimizer's constant, high learning rate makes them do: a net can be
at 72% train accuracy and 31% val accuracy on its running averages alone.
Recalibration recomputes them: each calibration batch goes through the net
in train mode (BN normalizes with the batch's own statistics, so the
batches are independent of the stale averages), its per-channel mean and
biased variance are read back, and the average over the batches replaces
the running statistics (PyTorch's cumulative `momentum=None` average).

* `batch_statistics(model, params, like, images, masks)`: one batch's
  statistics (traceable; AutoSlim vmaps it over candidates);
* `recalibrate(model, mesh, params, batch_stats, image_batches)`: the
  average over batches, as replicated arrays;
* `evaluate_recalibrated(...)`: a split's metrics after recalibrating on
  training batches (how a width optimizer's deciding net is measured).
"""
from __future__ import annotations

import itertools
import types
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from wt_jax import data
from wt_jax.nets import families
from wt_jax.train import batches
from wt_jax.train import evaluator
from wt_jax.train import sharding


def batch_statistics(model, params, like, images,
                     masks: Optional[Mapping[str, Any]] = None):
  """One batch's BN statistics (the tree of `like`), traceable.

  The running averages updated from zeros are (1 - momentum) x the batch's
  statistics, which is read back exactly.
  """
  zeros = jax.tree.map(jnp.zeros_like, like)
  _, new = model.apply({'params': params, 'batch_stats': zeros}, images,
                       train=True, masks=masks, mutable=['batch_stats'])
  scale = 1.0 / (1.0 - families.BN_MOMENTUM)
  return jax.tree.map(lambda s: s * scale, new['batch_stats'])


def recalibrate(model, mesh, params, batch_stats,
                image_batches: Sequence[np.ndarray]):
  """BN statistics averaged over `image_batches` (this process's numpy
  images of each batch); returns replicated arrays like `batch_stats`."""
  if not image_batches:
    raise ValueError('recalibration needs at least one batch')
  rep = sharding.replicated(mesh)
  one = jax.jit(lambda p, like, x: batch_statistics(model, p, like, x),
                in_shardings=(rep, rep, sharding.batch_sharding(mesh)),
                out_shardings=rep)
  params, like = sharding.replicate(mesh, (params, batch_stats))
  total = None
  for images in image_batches:
    stats = one(params, like, sharding.global_batch(
        mesh, {'image': images})['image'])
    total = stats if total is None else jax.tree.map(jnp.add, total, stats)
  n = float(len(image_batches))
  return jax.tree.map(lambda s: s / n, total)


def evaluate_recalibrated(model, mesh, variables, data_config, *,
                          calib_batches: int, batch_size: int,
                          eval_batch_size: int, seed: int,
                          split: str = 'val') -> dict[str, float]:
  """`variables` evaluated on `split` after BN recalibration on
  `calib_batches` training batches (augmented as in training, drawn with
  `seed`). Returns the evaluator's metrics (top1, top5, eval_loss, ...)."""
  ds = data.make_dataset(data_config, 'train', batch_size=batch_size,
                         seed=batches.epoch_seed(seed, 1_000_003), train=True,
                         process_index=jax.process_index(),
                         process_count=jax.process_count(), num_epochs=1,
                         drop_remainder=True)
  images = [b['image'] for b in itertools.islice(data.as_numpy(ds),
                                                 calib_batches)]
  stats = recalibrate(model, mesh, variables['params'],
                      variables['batch_stats'], images)
  state = types.SimpleNamespace(
      params=sharding.replicate(mesh, variables['params']),
      batch_stats=stats)
  return evaluator.Evaluator(model, mesh, data_config, split,
                             eval_batch_size)(state)
