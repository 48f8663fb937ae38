"""`make_dataset`: one process's batches of a split.

In-memory splits under 'cifar' or 'none' augmentation are read with numpy
(`arrays.ArrayStream`, no TensorFlow); everything else goes through tf.data
(`tf_pipeline`, TensorFlow). Both give the batches below; `as_numpy` iterates
either.

Augmentation (`config.data.augment`, train streams; see `images`)
* 'cifar': train = reflect-pad + random crop + horizontal flip; eval = the
  image itself.
* 'imagenet': train = inception-style random resized crop + horizontal flip
  (whole variable-size TFDS images, uncached, stay encoded until the crop:
  each JPEG decodes only its crop window); eval = center crop of 87.5% of
  the shorter side, resized.
* 'none': no augmentation.
Images are then scaled to [0, 1] and normalized per channel with the mean/std
of `splits.channel_stats`.

Determinism
-----------
The order and the augmentations are functions of `seed` alone (see
`arrays` and `tf_pipeline` for each path's).

Multi-host
----------
Each process reads its own contiguous block of the split's examples
(`process_index` of `process_count`; blocks differ by at most one example)
and yields per-process batches of `batch_size // process_count`. All
processes yield the same number of batches for evaluation and for finite
training streams. Assembling global jax.Arrays is the training code's job.

Batches
-------
Every batch is a dict {'image': float32 [B, R, R, 3], 'label': int32 [B],
'mask': float32 [B]}; 'mask' is 1 for real examples and 0 for padding.
Evaluation pads its last batch (padding: label 0, image 0 after
normalization), so `sum(mask)` over all processes and batches is exactly the
number of examples.
"""
import dataclasses

import numpy as np

from wt_jax.data import arrays
from wt_jax.data import fields
from wt_jax.data import sources
from wt_jax.data import splits
from wt_jax.data import tf_support
from wt_jax.errors import DataError
from wt_jax.util import validation


@dataclasses.dataclass(frozen=True)
class _Shard:
  """This process's share of a split."""
  indices: np.ndarray  # the sorted raw indices this process reads
  positions: np.ndarray  # their positions in the split
  fewest: int  # examples of the smallest process block
  most: int  # examples of the largest process block
  batch: int  # the per-process batch size


def make_dataset(data_config, split: str, *, batch_size: int, seed: int,
                 train: bool, process_index: int = 0, process_count: int = 1,
                 num_epochs=None, drop_remainder: bool = True,
                 positions: bool = False):
  """This process's batches of a split: an `arrays.ArrayStream` or a
  tf.data.Dataset (iterate either with `as_numpy`).

  Args:
    data_config: `config.data`.
    split: 'train', 'val' or 'test' (see `splits`).
    batch_size: the global batch; each process yields
      batch_size // process_count examples per batch.
    seed: shuffling and augmentation seed (train=True).
    train: True = shuffle (reshuffled every epoch), augment, repeat
      (`num_epochs` times; None = forever). False = fixed order, eval
      resize/crop only, `num_epochs` passes (None = one), the last batch
      padded with mask 0 so every example counts exactly once.
    process_index, process_count: this process and the number of processes
      (jax.process_index(), jax.process_count()).
    num_epochs: see `train`.
    drop_remainder: finite training streams only: drop (True) or pad and mask
      (False) the last partial batch. Evaluation always pads.
    positions: in-memory splits only (`in_memory`): yield each example's
      position in the split and its draws instead of its image, for a device
      that holds the split (`placement`).

  Returns:
    Batches of {'image': float32 [B, R, R, 3] normalized, 'label': int32
    [B], 'mask': float32 [B]} with static shapes, B = per-process batch.
  """
  dc = data_config
  fields.validate(dc)
  _check_arguments(split, batch_size, process_index, process_count,
                   num_epochs)
  source = sources.get_source(dc)
  resolution = splits.fed_resolution(dc, source)
  shard = _shard(dc, split, train, batch_size, process_index, process_count)
  store = stored_size(dc, source, resolution)
  mean, std = splits.channel_stats(dc, source, resolution)
  raw_split = 'test' if split == 'test' else 'train'
  if in_memory(dc, source, raw_split, store):
    indices = splits.split_indices(dc)[split]
    stream = arrays.ArrayStream(
        images=source.images(raw_split, indices, store),
        labels=source.labels(raw_split)[indices], block=shard.positions,
        batch=shard.batch, augment=dc.augment, mean=mean, std=std,
        positions=positions)
    if not train:
      total = -(-shard.most // shard.batch) * shard.batch
      return dataclasses.replace(stream, padded=total - len(shard.indices),
                                 repeat=num_epochs or 1)
    stream = dataclasses.replace(stream, seed=int(seed),
                                 num_epochs=num_epochs)
    if num_epochs is None:
      return stream
    if drop_remainder:
      return dataclasses.replace(
          stream, limit=num_epochs * shard.fewest // shard.batch)
    total = -(-num_epochs * shard.most // shard.batch) * shard.batch
    return dataclasses.replace(stream,
                               padded=total - num_epochs * len(shard.indices))
  if positions:
    raise ValueError('positions=True needs an in-memory split (`in_memory`)')
  from wt_jax.data import tf_pipeline  # pylint: disable=g-import-not-at-top
  return tf_pipeline.dataset(
      source, dc, shard, split=split, train=train, seed=seed,
      resolution=resolution, store=store, mean=mean, std=std,
      num_epochs=num_epochs, drop_remainder=drop_remainder)


def in_memory(data_config, source, raw_split: str, store) -> bool:
  """True when `make_dataset` reads this raw split from memory with numpy
  (`arrays`): the augmentation is one `arrays` makes, and the source holds
  the split decoded at the fed resolution."""
  return (data_config.augment in arrays.AUGMENTS and store is not None and
          source.in_memory(raw_split, store, data_config.cache))


def preload(data_config, split_names=splits.SPLITS) -> int:
  """Reads every image of these splits now; returns how many.

  An image that does not decode raises DataError naming its file before any
  training starts. With `config.data.cache` the decoded images stay in
  memory for the run, so this costs no second decode; TFDS data that is not
  cached is only listed here (TFDS validated it when it was prepared).
  """
  dc = data_config
  source = sources.get_source(dc)
  store = stored_size(dc, source, splits.fed_resolution(dc, source))
  count = 0
  for split in split_names:
    indices = splits.split_indices(dc)[split]
    raw_split = 'test' if split == 'test' else 'train'
    if len(indices):
      if in_memory(dc, source, raw_split, store):
        source.images(raw_split, indices, store)
      else:
        source.examples(raw_split, indices, store, dc.cache)
      count += len(indices)
  return count


def _check_arguments(split, batch_size, process_index, process_count,
                     num_epochs):
  """DataError for a bad argument of `make_dataset` (not a config field)."""
  def fail(name, value, allowed):
    validation.fail(name, value, allowed, DataError)

  if split not in splits.SPLITS:
    fail('split', split, ', '.join(splits.SPLITS))
  if not (validation.is_integer(process_count) and process_count >= 1):
    fail('process_count', process_count, 'an integer >= 1')
  if not (validation.is_integer(process_index) and
          0 <= process_index < process_count):
    fail('process_index', process_index,
         f'an integer in [0, process_count={process_count})')
  validation.batch_size('batch_size', batch_size, processes=process_count,
                        error=DataError)
  if num_epochs is not None and not (validation.is_integer(num_epochs) and
                                     num_epochs >= 1):
    fail('num_epochs', num_epochs, 'None or an integer >= 1')


def _shard(data_config, split, train, batch_size, process_index,
           process_count) -> _Shard:
  """This process's contiguous block of the split; DataError if empty."""
  indices = splits.split_indices(data_config)[split]
  if not len(indices):
    raise DataError(f'split {split!r} of config.data.source='
                    f'{data_config.source!r} is empty (config.data.'
                    f'val_fraction={data_config.val_fraction!r}); use '
                    'val_fraction > 0 for a val split.')
  blocks = np.array_split(np.arange(len(indices)), process_count)
  fewest, most = min(map(len, blocks)), max(map(len, blocks))
  if train and fewest == 0:
    raise DataError(f'split {split!r} has {len(indices)} examples, fewer than '
                    f'process_count={process_count}: some process would have '
                    'no training data.')
  block = blocks[process_index]
  return _Shard(indices[block], block, fewest, most,
                batch_size // process_count)


def stored_size(data_config, source, resolution):
  """The side images are decoded (and cached) at; None = whole images.

  Images are fitted to the fed resolution once, except for the 'imagenet'
  random resized crop of TFDS data, which crops from the native image.
  """
  if (data_config.augment == 'imagenet' and
      not isinstance(source, (sources.DigitsSource, sources.FolderSource))):
    return source.native_resolution if source.fixed_size else None
  return resolution


def as_numpy(ds):
  """An iterator of dicts of numpy arrays over `make_dataset`'s batches."""
  if isinstance(ds, arrays.ArrayStream):
    return iter(ds)
  return iter(tf_support.tfds().as_numpy(ds))
