"""Evaluation of a train state over a split: top-1, top-5, loss.

`make_eval_step(model, mesh)` is the jitted, sharded step that adds one
batch's masked counts to running sums; `evaluate(...)` runs it over every
batch of a split (each process its own block), so every example is counted
exactly once (the last batch is padded and masked by `data.make_dataset`).
`Evaluator(model, mesh, data_config, split, batch_size)` binds them for one
run: `evaluator(state) -> metrics` (`evaluator.each(state)`: a list, one
per seed of the state).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
from jax.sharding import Mesh
import jax.numpy as jnp
import optax

from wt_jax import data
from wt_jax.train.sharding import batch_sharding
from wt_jax.train.sharding import global_batch
from wt_jax.train.sharding import replicated
from wt_jax.train.sharding import to_host

SUMS = ('top1', 'top5', 'loss', 'count')


def make_eval_step(model, mesh: Mesh, seeds: int = 0):
  """Jitted `(params, batch_stats, batch, sums) -> sums` of masked counts;
  `seeds` > 0: params, batch_stats and sums have a leading axis of that
  many seeds (`seeds.SeedsStep`), the batch is shared (vmapped)."""
  rep = replicated(mesh)

  def eval_fn(params, batch_stats, batch, sums):
    logits = model.apply({'params': params, 'batch_stats': batch_stats},
                         batch['image'], train=False)
    mask = batch['mask']
    labels = batch['label']
    k = min(5, logits.shape[-1])
    topk = jax.lax.top_k(logits, k)[1]
    top1 = (topk[:, 0] == labels) * mask
    top5 = (topk == labels[:, None]).any(-1) * mask
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return {'top1': sums['top1'] + top1.sum(),
            'top5': sums['top5'] + top5.sum(),
            'loss': sums['loss'] + (loss * mask).sum(),
            'count': sums['count'] + mask.sum()}

  if seeds:
    eval_fn = jax.vmap(eval_fn, in_axes=(0, 0, None, 0))
  return jax.jit(eval_fn, in_shardings=(rep, rep, batch_sharding(mesh), rep),
                 out_shardings=rep)


def evaluate(eval_step, mesh: Mesh, state, data_config, split: str,
             *, eval_batch_size: int, seeds: int = 0):
  """top1, top5, eval_loss, num_eval_examples of `state` over `split`; with
  `seeds` (a state of that many seeds and `make_eval_step(..., seeds)`) a
  list of them, one per seed, from one pass over the split."""
  ds = data.make_dataset(data_config, split, batch_size=eval_batch_size,
                         seed=0, train=False,
                         process_index=jax.process_index(),
                         process_count=jax.process_count())
  shape = (seeds,) if seeds else ()
  sums = jax.jit(lambda: {k: jnp.zeros(shape, jnp.float32) for k in SUMS},
                 out_shardings=replicated(mesh))()
  for local in data.as_numpy(ds):
    sums = eval_step(state.params, state.batch_stats,
                     global_batch(mesh, local), sums)
  sums = to_host(sums)
  if seeds:
    return [_metrics({k: v[i] for k, v in sums.items()})
            for i in range(seeds)]
  return _metrics(sums)


def _metrics(sums) -> dict[str, float]:
  n = float(sums['count'])
  return {'top1': float(sums['top1']) / n, 'top5': float(sums['top5']) / n,
          'eval_loss': float(sums['loss']) / n, 'num_eval_examples': int(n)}


@dataclasses.dataclass(frozen=True, eq=False)
class Evaluator:
  """`evaluator(state)`: `evaluate` of `model` on `split` of `data_config`
  (`seeds` > 0: of a state of that many seeds, a list of metrics)."""
  model: Any
  mesh: Mesh
  data_config: Any
  split: str
  batch_size: int
  seeds: int = 0

  @functools.cached_property
  def step(self):
    return make_eval_step(self.model, self.mesh, self.seeds)

  def __call__(self, state):
    return evaluate(self.step, self.mesh, state, self.data_config, self.split,
                    eval_batch_size=self.batch_size, seeds=self.seeds)

  def each(self, state) -> list[dict[str, float]]:
    """Per seed of `state` (one without `seeds`), its metrics."""
    metrics = self(state)
    return metrics if self.seeds else [metrics]
