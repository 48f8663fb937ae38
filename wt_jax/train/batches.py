"""The data order: which training examples each process feeds at each step.

Multi-host: each process reads its own block of the data
(`process_index`/`process_count` of `data.make_dataset`) in batches of
`batch_size // process_count`; `sharding.global_batch` assembles the global
batch from them (`prefetch_to_device` keeps two ready on the devices).

The order is a pure function of (seed, epoch), so a resumed run feeds the
same batch at step s as a run that was never interrupted: epoch e is
`make_dataset(..., seed=epoch_seed(seed, e), num_epochs=1)` (full batches
only), and resuming at step s rebuilds epoch s // steps_per_epoch and skips
s % steps_per_epoch batches (at most one epoch is skipped through the input
pipeline).
"""
from __future__ import annotations

import collections
from typing import Iterator

import jax
import numpy as np

from wt_jax import data
from wt_jax.train.sharding import global_batch
from wt_jax.train.sharding import seeds_batch_sharding


def epoch_seed(seed: int, epoch: int) -> int:
  return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(
      1)[0]) & 0x7FFFFFFF


def steps_per_epoch(num_train: int, batch_size: int,
                    process_count: int = 1) -> int:
  """Full batches per epoch: what `make_dataset(num_epochs=1)` yields."""
  return (num_train // process_count) // (batch_size // process_count)


def local_train_batches(data_config, *, batch_size: int, seed: int,
                        start_step: int, process_index: int,
                        process_count: int) -> Iterator[dict]:
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
                           drop_remainder=True)
    if skip:
      ds = ds.skip(skip)
      skip = 0
    yield from data.as_numpy(ds)
    epoch += 1


def device_batches(mesh, data_config, batch_size: int, seed: int,
                   start_step: int) -> Iterator[dict]:
  """The global training batches from `start_step` on, prefetched to the
  devices: this process's `local_train_batches`, assembled over processes."""
  return prefetch_to_device(mesh, local_train_batches(
      data_config, batch_size=batch_size, seed=seed, start_step=start_step,
      process_index=jax.process_index(), process_count=jax.process_count()))


def device_seed_batches(mesh, data_config, batch_size: int, seeds,
                        start_step: int) -> Iterator[dict]:
  """The batches of several seeds trained in one program: each seed's own
  `local_train_batches` (its data order unchanged), stacked on a leading
  seed axis, `[seed, example, ...]`, the examples split over 'data'."""
  per_seed = [local_train_batches(
      data_config, batch_size=batch_size, seed=int(s), start_step=start_step,
      process_index=jax.process_index(), process_count=jax.process_count())
              for s in seeds]
  stacked = ({k: np.stack([b[k] for b in group]) for k in group[0]}
             for group in zip(*per_seed))
  return prefetch_to_device(mesh, stacked, seeds_batch_sharding(mesh))


def prefetch_to_device(mesh, iterator, sharding=None, size: int = 2):
  """Global (sharded) batches from local numpy ones, `size` of them ahead
  (`sharding`: default `sharding.batch_sharding(mesh)`)."""
  queue = collections.deque()
  for local in iterator:
    queue.append(global_batch(mesh, local, sharding))
    if len(queue) >= size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
