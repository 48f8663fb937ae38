"""The data order: which training examples each process feeds at each step.

Multi-host: each process reads its own block of the data
(`process_index`/`process_count` of `data.make_dataset`) in batches of
`batch_size // process_count`; `sharding.global_batch` assembles the global
batch from them (`Feeder`, one or several steps' batches per call).

The order is a pure function of (seed, epoch), so a resumed run feeds the
same batch at step s as a run that was never interrupted: epoch e is
`make_dataset(..., seed=epoch_seed(seed, e), num_epochs=1)` (full batches
only), and resuming at step s rebuilds epoch s // steps_per_epoch and skips
s % steps_per_epoch batches (at most one epoch is skipped through the input
pipeline).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Sequence

import jax
import numpy as np

from wt_jax import data
from wt_jax.train.sharding import global_batch
from wt_jax.train.sharding import stacked_batch_sharding


def epoch_seed(seed: int, epoch: int) -> int:
  return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(
      1)[0]) & 0x7FFFFFFF


def steps_per_epoch(num_train: int, batch_size: int,
                    process_count: int = 1) -> int:
  """Full batches per epoch: what `make_dataset(num_epochs=1)` yields."""
  return (num_train // process_count) // (batch_size // process_count)


def local_train_batches(data_config, *, batch_size: int, seed: int,
                        start_step: int, process_index: int,
                        process_count: int,
                        positions: bool = False) -> Iterator[dict]:
  """This process's training batches from global step `start_step` on.

  Epoch e is `make_dataset(seed=epoch_seed(seed, e), num_epochs=1)` (full
  batches only), so the batch of step s is the same however training got
  there; resuming skips `start_step % steps_per_epoch` batches of one epoch.
  """
  n = data.dataset_info(data_config).num_examples['train']
  per_epoch = steps_per_epoch(n, batch_size, process_count)
  epoch, skip = divmod(start_step, per_epoch)
  while True:
    ds = data.make_dataset(data_config, 'train', batch_size=batch_size,
                           seed=epoch_seed(seed, epoch), train=True,
                           process_index=process_index,
                           process_count=process_count, num_epochs=1,
                           drop_remainder=True, positions=positions)
    if skip:
      ds = ds.skip(skip)
      skip = 0
    yield from data.as_numpy(ds)
    epoch += 1


def device_batches(mesh, data_config, batch_size: int, seed: int,
                   start_step: int, positions: bool = False) -> 'Feeder':
  """The global training batches from `start_step` on (`Feeder`): this
  process's `local_train_batches`, assembled over processes; `positions`:
  positions and draws for a step that holds the split
  (`data.placement`)."""
  return Feeder(mesh, [local_train_batches(
      data_config, batch_size=batch_size, seed=seed, start_step=start_step,
      process_index=jax.process_index(), process_count=jax.process_count(),
      positions=positions)], seeds=False)


def device_seed_batches(mesh, data_config, batch_size: int, seeds,
                        start_step: int, positions: bool = False) -> 'Feeder':
  """The batches of several seeds trained in one program: each seed's own
  `local_train_batches` (its data order unchanged), stacked on a leading
  seed axis, `[seed, example, ...]`, the examples split over 'data'."""
  return Feeder(mesh, [local_train_batches(
      data_config, batch_size=batch_size, seed=int(s), start_step=start_step,
      process_index=jax.process_index(), process_count=jax.process_count(),
      positions=positions) for s in seeds], seeds=True)


def _stack(batches: Sequence[dict]) -> dict:
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


@dataclasses.dataclass
class Feeder:
  """Global batches, `k` steps at a time (`take(k)`): the batch of one
  step (k = 1) or the k steps' batches stacked on a leading axis (the
  steps of one jitted call); with `seeds`, the seeds' stacked before that.
  JAX dispatches asynchronously, so the host makes the next call's batches
  while the devices run this one."""
  mesh: Any
  streams: list
  seeds: bool

  def take(self, k: int) -> dict:
    groups = [[next(stream) for _ in range(k)] for stream in self.streams]
    per_stream = [_stack(g) if k > 1 else g[0] for g in groups]
    local = _stack(per_stream) if self.seeds else per_stream[0]
    leading = int(k > 1) + int(self.seeds)
    return global_batch(self.mesh, local,
                        stacked_batch_sharding(self.mesh, leading))
