"""Where a training split lives: `config.data.placement`.

* 'device': the split (uint8, at the fed resolution) is copied once to every
  device, replicated (`resident`; on several hosts each process places it on
  its own devices). The host sends only each step's positions and 'cifar'
  draws (`arrays.ArrayStream(positions=True)`, a few bytes per example); the
  jitted train step gathers the batch from the device copy, crops, flips and
  normalizes it (`gather`), each device gathering its own shard. The pixels
  are those the host path would make: the same positions, the same draws.
* 'host': batches are made on the host (numpy for in-memory splits, tf.data
  otherwise) and fed as float32 images.
* 'auto': 'device' when the split is read from memory (`arrays`) and fits in
  `config.data.device_memory_fraction` of one device's memory (25% by
  default; CIFAR-10's train split is 150 MB), else 'host'.

Evaluation, BN recalibration and the width optimizers' val batches are fed
from the host in both placements: they run a few times per training run.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from wt_jax.data import arrays
from wt_jax.data import pipeline
from wt_jax.data import raw
from wt_jax.data import sources
from wt_jax.data import splits
from wt_jax.errors import DataError


def device_memory_bytes() -> int:
  """One device's memory (its allocator's limit); the host's for CPUs."""
  device = jax.local_devices()[0]
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    pass
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit'])
  return int(raw.host_memory_bytes() or 0)


def resolve(data_config, readable_from_memory: bool, num_bytes: int) -> str:
  """'host' or 'device' for a training split of `num_bytes` (uint8);
  DataError when 'device' is asked for a split it cannot hold."""
  wanted = data_config.placement
  share = float(data_config.device_memory_fraction)
  limit = share * device_memory_bytes()
  fits = num_bytes <= limit
  if wanted == 'host':
    return 'host'
  if wanted == 'device':
    if not readable_from_memory:
      raise DataError(
          "config.data.placement='device' needs the training split in memory "
          "at the fed resolution: config.data.augment='cifar' or 'none', and "
          'a digits source, or a folder / fixed-size TFDS source with '
          f'config.data.cache=True (augment={data_config.augment!r}, '
          f'cache={data_config.cache!r}); allowed here: placement=\'host\' '
          "or 'auto'")
    if not fits:
      raise DataError(
          f"config.data.placement='device': the training split takes "
          f'{num_bytes / 2**20:.0f} MiB, more than config.data.'
          f'device_memory_fraction={share} of the device\'s '
          f'{device_memory_bytes() / 2**30:.1f} GiB; allowed: a larger '
          "fraction, or placement='host' or 'auto'")
    return 'device'
  chosen = 'device' if readable_from_memory and fits else 'host'
  logging.info('data placement: %s (split %.0f MiB, %s%.0f MiB allowed on '
               'the device)', chosen, num_bytes / 2**20,
               '' if readable_from_memory else 'not in memory; ',
               limit / 2**20)
  return chosen


@dataclasses.dataclass(frozen=True, eq=False)
class DeviceSplit:
  """A training split on the devices and how a step reads it.

  `images`: the replicated uint8 [N, R, R, 3] array; `augment`, `mean`,
  `std`: as the host path applies them.
  """
  images: Any
  augment: str
  mean: tuple
  std: tuple

  def gather(self, images, batch) -> dict:
    """{'image' float32 normalized, 'label', 'mask'} of a positions batch
    (`arrays.ArrayStream(positions=True)`), traced inside the step;
    `images` is `self.images` passed as an argument of the jitted step."""
    x = jnp.take(images, batch['position'], axis=0)
    if self.augment == 'cifar':
      x = crop_flip(x, batch['dy'], batch['dx'], batch['flip'])
    table = jnp.asarray(arrays.normalized_values(self.mean, self.std))
    image = table[x.astype(jnp.int32), jnp.arange(3)]
    return {'image': image, 'label': batch['label'], 'mask': batch['mask']}


def crop_flip(images, dy, dx, flip):
  """`arrays.crop_flip` in JAX (the same pixels): reflect-pad, crop at
  (dy, dx), flip where `flip`."""
  r = images.shape[1]
  p = arrays.pad_of(r)
  padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode='reflect')

  def one(image, y, x, f):
    crop = jax.lax.dynamic_slice(image, (y, x, 0), (r, r, image.shape[-1]))
    return jnp.where(f > 0, crop[:, ::-1], crop)

  return jax.vmap(one)(padded, dy, dx, flip)


def resident(mesh, images: np.ndarray):
  """`images` copied to every device of `mesh`, replicated (each process
  its own devices)."""
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return jax.make_array_from_callback(images.shape, sharding,
                                      lambda index: images[index])


def place_train_split(mesh, data_config):
  """The training split of `data_config` on `mesh`'s devices
  (`DeviceSplit`) when the placement resolves to 'device'; None when the
  host feeds the batches."""
  dc = data_config
  source = sources.get_source(dc)
  resolution = splits.fed_resolution(dc, source)
  store = pipeline.stored_size(dc, source, resolution)
  indices = splits.split_indices(dc)['train']
  num_bytes = len(indices) * resolution * resolution * 3
  readable = pipeline.in_memory(dc, source, 'train', store)
  if resolve(dc, readable, num_bytes) == 'host':
    return None
  mean, std = splits.channel_stats(dc, source, resolution)
  images = source.images('train', indices, store)
  return DeviceSplit(resident(mesh, images), dc.augment, mean, std)
