"""Splits held in memory as numpy: batches without TensorFlow.

A split is read from memory when its source holds it decoded at the fed
resolution (`in_memory`: digits always; a folder, or a fixed-size TFDS
dataset, with `config.data.cache` when it fits in half the host memory) and
its augmentation is 'cifar' or 'none'. `pipeline.make_dataset` then returns
an `ArrayStream` instead of a tf.data pipeline, with the same batches'
format and the same guarantees (process blocks, padding and masks, finite
and endless streams):

* order: epoch e of a training stream is the permutation
  `default_rng([seed, e])` of this process's block (the whole block: no
  shuffle buffer is needed);
* 'cifar' augmentation: per position of epoch e, a crop offset (dy, dx) in
  [0, 2 * pad] of the reflect-padded image (pad = round(R / 8), 4 at 32) and
  a flip, drawn from `default_rng([seed, e, 1])` (`crop_flip_draws`);
* images scaled to [0, 1] and normalized per channel, as the tf.data path
  (by a table of the 256 values per channel, `normalized_values`).

The draws are made here, on the host, for both placements
(`config.data.placement`): 'host' gathers and crops in numpy
(`crop_flip`) and feeds float32 images; 'device' feeds only the positions
and draws (`ArrayStream(..., positions=True)`) and the device gathers and
crops the same pixels from its copy of the split (`placement.gather`).
Everything is a function of (data, split_seed, seed), so a resumed stream
repeats itself exactly.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Iterator, Optional

import numpy as np

AUGMENTS = ('cifar', 'none')  # the augmentations read from memory


def pad_of(resolution: int) -> int:
  """The reflect padding of the 'cifar' crop: round(R / 8), at least 1."""
  return max(1, round(resolution / 8))


def crop_flip_draws(seed: int, epoch: int, n: int, resolution: int):
  """(dy, dx, flip) int32 [n] each: epoch `epoch`'s 'cifar' draws of the
  positions 0..n-1 of `seed`'s stream."""
  rng = np.random.default_rng([int(seed), int(epoch), 1])
  offsets = rng.integers(0, 2 * pad_of(resolution) + 1, (2, n))
  flips = rng.random(n) < 0.5
  return (offsets[0].astype(np.int32), offsets[1].astype(np.int32),
          flips.astype(np.int32))


def crop_flip(images: np.ndarray, dy, dx, flip) -> np.ndarray:
  """The 'cifar' augmentation of uint8 [B, R, R, 3] images: reflect-pad,
  the R x R crop at (dy, dx), flipped left-right where `flip`."""
  b, r = images.shape[0], images.shape[1]
  p = pad_of(r)
  padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode='reflect')
  span = np.arange(r)
  rows = (np.asarray(dy)[:, None] + span)[:, :, None]
  cols = np.asarray(dx)[:, None] + span
  cols = np.where(np.asarray(flip, bool)[:, None], cols[:, ::-1], cols)
  return padded[np.arange(b)[:, None, None], rows, cols[:, None, :]]


def normalized_values(mean, std) -> np.ndarray:
  """float32 [256, 3]: the normalized value of each uint8 value in each
  channel, (v / 255 - mean) / std. Both placements normalize by looking
  pixels up in it, so the device's images are the host's, bit for bit."""
  std = np.asarray(std, np.float64)
  scale = (1.0 / (255.0 * std)).astype(np.float32)
  shift = (np.asarray(mean, np.float64) / std).astype(np.float32)
  return np.arange(256, dtype=np.float32)[:, None] * scale - shift


def normalize(images, table):
  """uint8 [..., 3] images -> float32, through `normalized_values`."""
  return table[images, np.arange(3)]


@dataclasses.dataclass
class ArrayStream:
  """Batches of one process's block of an in-memory split.

  `images`/`labels` hold the split (uint8 [N, R, R, 3] / int [N], position
  i = the split's i-th example); `block` the positions this process reads;
  `batch` the per-process batch. Train streams (`seed` set) repeat
  `num_epochs` times (None: forever), permuted and augmented per epoch;
  `limit` cuts them after that many batches, `padded` pads the last one.
  Eval streams read the block in order, padded. `positions=True` yields
  {'position', 'dy', 'dx', 'flip', 'label', 'mask'} (int32 / float32) for a
  device that holds `images`, instead of {'image', 'label', 'mask'}.
  """
  images: np.ndarray
  labels: np.ndarray
  block: np.ndarray
  batch: int
  augment: str
  mean: tuple
  std: tuple
  seed: Optional[int] = None
  num_epochs: Optional[int] = 1
  limit: Optional[int] = None
  padded: int = 0  # mask-0 examples appended after the last epoch
  positions: bool = False
  skipped: int = 0
  repeat: int = 1  # passes over the whole stream (eval: num_epochs)

  @property
  def resolution(self) -> int:
    return self.images.shape[1]

  def skip(self, count: int) -> 'ArrayStream':
    """The stream without its first `count` batches (as tf.data's)."""
    return dataclasses.replace(self, skipped=self.skipped + int(count))

  def _epochs(self) -> Iterator[tuple]:
    """(positions, dy, dx, flip) per epoch; then the padding."""
    n, r = len(self.block), self.resolution
    epochs = (itertools.count() if self.num_epochs is None else
              range(self.num_epochs))
    for epoch in epochs:
      if self.seed is None:
        order = self.block
        draws = (np.zeros(n, np.int32),) * 3
      else:
        order = np.random.default_rng(
            [int(self.seed), epoch]).permutation(self.block)
        draws = (crop_flip_draws(self.seed, epoch, n, r)
                 if self.augment == 'cifar' else (np.zeros(n, np.int32),) * 3)
      yield (order, np.ones(n, np.float32)) + draws
    if self.padded:
      zeros = np.zeros(self.padded, np.int32)
      yield (np.full(self.padded, -1, np.int64),
             np.zeros(self.padded, np.float32), zeros, zeros, zeros)

  def _chunks(self) -> Iterator[tuple]:
    """(positions, mask, dy, dx, flip) of each batch, in order."""
    pending, size = [], 0
    for part in self._epochs():
      pending.append(part)
      size += len(part[0])
      while size >= self.batch:
        joined = [np.concatenate(x) for x in zip(*pending)]
        yield tuple(x[:self.batch] for x in joined)
        rest = tuple(x[self.batch:] for x in joined)
        pending, size = [rest], len(rest[0])

  def __iter__(self) -> Iterator[dict]:
    passes = itertools.chain.from_iterable(
        self._chunks() for _ in range(self.repeat))
    chunks = itertools.islice(passes, self.skipped, self.limit)
    return (self._batch(*chunk) for chunk in chunks)

  def _batch(self, position, mask, dy, dx, flip) -> dict:
    real = position >= 0
    safe = np.where(real, position, 0)
    labels = np.where(real, self.labels[safe], 0).astype(np.int32)
    if self.positions:
      return {'position': safe.astype(np.int32), 'dy': dy, 'dx': dx,
              'flip': flip, 'label': labels, 'mask': mask}
    images = self.images[safe]
    if self.augment == 'cifar' and self.seed is not None:
      images = crop_flip(images, dy, dx, flip)
    image = normalize(images, normalized_values(self.mean, self.std))
    image[~real] = 0.0  # padding: 0 once normalized, as the tf.data path
    return {'image': image, 'label': labels, 'mask': mask}
