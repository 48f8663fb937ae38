"""`make_dataset`: one process's batches of a split, as a tf.data.Dataset.

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

Determinism and throughput
--------------------------
Training order is a seeded full permutation of the shard (for sources
read at random: digits, folder, cached TFDS), then a seeded `shuffle`
(reshuffled every epoch, the same
sequence of orders for the same seed); augmentations use stateless random ops
keyed on (seed, example index, epoch). No global TF seed is used. All maps
run in parallel (AUTOTUNE) with deterministic output order, then prefetch.

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
# TensorFlow is imported only inside wt_jax/data/; wt_jax/data/__init__.py,
# which Python runs before this module, hides the GPUs from it.
import tensorflow as tf
import tensorflow_datasets as tfds

from wt_jax.data import fields
from wt_jax.data import images
from wt_jax.data import sources
from wt_jax.data import splits
from wt_jax.errors import DataError
from wt_jax.util import validation

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class _Shard:
  """This process's share of a split."""
  indices: np.ndarray  # the sorted raw indices this process reads
  fewest: int  # examples of the smallest process block
  most: int  # examples of the largest process block
  batch: int  # the per-process batch size


def make_dataset(data_config, split: str, *, batch_size: int, seed: int,
                 train: bool, process_index: int = 0, process_count: int = 1,
                 num_epochs=None, drop_remainder: bool = True):
  """This process's batches of a split as a tf.data.Dataset.

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

  Returns:
    A dataset of {'image': float32 [B, R, R, 3] normalized, 'label': int32
    [B], 'mask': float32 [B]} with static shapes, B = per-process batch.
  """
  dc = data_config
  fields.validate(dc)
  _check_arguments(split, batch_size, process_index, process_count,
                   num_epochs)
  source = sources.get_source(dc)
  resolution = splits.fed_resolution(dc, source)
  shard = _shard(dc, split, train, batch_size, process_index, process_count)
  store = _stored_size(dc, source, resolution)
  indices = shard.indices
  if train and source.random_access(store, dc.cache):
    # A full, seeded permutation first: raw splits can be sorted by class
    # (folder sources are), which a shuffle buffer smaller than the split
    # would leave as class-by-class batches.
    indices = np.random.default_rng(seed).permutation(indices)
  raw_split = 'test' if split == 'test' else 'train'
  # Whole variable-size TFDS images, uncached, under the inception crop:
  # each JPEG decodes only its crop window (images.py).
  encoded = (train and dc.augment == 'imagenet' and store is None and
             not dc.cache and hasattr(source, 'encoded_examples'))
  ds = (source.encoded_examples(raw_split, indices) if encoded else
        source.examples(raw_split, indices, store, dc.cache))
  mean, std = splits.channel_stats(dc, source, resolution)
  if train:
    ds = _train_stream(ds, dc, shard, seed, resolution, mean, num_epochs,
                       drop_remainder, encoded)
  else:
    ds = _eval_stream(ds, dc.augment, shard, resolution, mean, num_epochs)
  ds = _normalize(ds, mean, std)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(AUTOTUNE)


def preload(data_config, split_names=splits.SPLITS) -> int:
  """Reads every image of these splits now; returns how many.

  An image that does not decode raises DataError naming its file before any
  training starts. With `config.data.cache` the decoded images stay in
  memory for the run, so this costs no second decode; TFDS data that is not
  cached is only listed here (TFDS validated it when it was prepared).
  """
  dc = data_config
  source = sources.get_source(dc)
  store = _stored_size(dc, source, splits.fed_resolution(dc, source))
  count = 0
  for split in split_names:
    indices = splits.split_indices(dc)[split]
    if len(indices):
      source.examples('test' if split == 'test' else 'train', indices,
                      store, dc.cache)
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
  blocks = np.array_split(indices, process_count)
  fewest, most = min(map(len, blocks)), max(map(len, blocks))
  if train and fewest == 0:
    raise DataError(f'split {split!r} has {len(indices)} examples, fewer than '
                    f'process_count={process_count}: some process would have '
                    'no training data.')
  return _Shard(blocks[process_index], fewest, most,
                batch_size // process_count)


def _stored_size(data_config, source, resolution):
  """The side images are decoded (and cached) at; None = whole images.

  Images are fitted to the fed resolution once, except for the 'imagenet'
  random resized crop of TFDS data, which crops from the native image.
  """
  if data_config.augment == 'imagenet' and isinstance(source,
                                                      sources.TfdsSource):
    return source.native_resolution if source.fixed_size else None
  return resolution


def _train_stream(ds, data_config, shard, seed, resolution, mean, num_epochs,
                  drop_remainder, encoded=False):
  """Shuffled, augmented, repeated batches (finite with `num_epochs`);
  `encoded`: the examples' images are still encoded bytes."""
  n = len(shard.indices)
  ds = ds.shuffle(min(data_config.shuffle_buffer, n), seed=seed,
                  reshuffle_each_iteration=True)
  ds = ds.repeat(num_epochs).enumerate()
  ds = ds.map(_augmenter(data_config.augment, seed, n, resolution, encoded),
              num_parallel_calls=AUTOTUNE)
  if num_epochs is None:
    return ds.batch(shard.batch, drop_remainder=True)
  if drop_remainder:
    ds = ds.batch(shard.batch, drop_remainder=True)
    return ds.take(num_epochs * shard.fewest // shard.batch)
  total = -(-num_epochs * shard.most // shard.batch) * shard.batch
  ds = _pad(ds, total - num_epochs * n, resolution, mean)
  return ds.batch(shard.batch, drop_remainder=True)


def _augmenter(augment, seed, n, resolution, encoded=False):
  """The map of (position in the stream, example) to an augmented example.

  The random key is (seed, raw index) folded with the epoch, position // n.
  `encoded` ('imagenet' only): decode each image's crop window.
  """
  def augment_example(position, ex):
    key = tf.random.experimental.stateless_fold_in(
        tf.stack([tf.constant(seed, tf.int64), ex['index']]), position // n)
    image = ex['image']
    if encoded:
      image = images.decode_random_resized_crop_flip(image, resolution, key)
    elif augment == 'cifar':
      image = images.cifar_crop_flip(image, resolution, key)
    elif augment == 'imagenet':
      image = images.random_resized_crop_flip(image, resolution, key)
    else:
      image = images.fit(image, resolution)
    return _output(image, ex['label'], 1.0, resolution)

  return augment_example


def _eval_stream(ds, augment, shard, resolution, mean, num_epochs):
  """Fixed-order batches, the last one padded; `num_epochs` passes."""
  def preprocess(ex):
    image = ex['image']
    if augment == 'imagenet':
      image = images.center_crop(image, resolution)
    else:
      image = images.fit(image, resolution)
    return _output(image, ex['label'], 1.0, resolution)

  ds = ds.map(preprocess, num_parallel_calls=AUTOTUNE)
  total = -(-shard.most // shard.batch) * shard.batch
  ds = _pad(ds, total - len(shard.indices), resolution, mean)
  ds = ds.batch(shard.batch, drop_remainder=True)
  if num_epochs is not None and num_epochs > 1:
    ds = ds.repeat(num_epochs)
  return ds


def _normalize(ds, mean, std):
  """Scales whole batches to [0, 1] and normalizes (cheaper than per image)."""
  scale = tf.constant(1.0 / (255.0 * np.array(std)), tf.float32)
  shift = tf.constant(np.array(mean) / np.array(std), tf.float32)
  return ds.map(lambda batch: {**batch,
                               'image': batch['image'] * scale - shift},
                num_parallel_calls=AUTOTUNE)


def _output(image, label, mask, resolution):
  """One example before normalization: image float32 in 0..255."""
  return {'image': tf.ensure_shape(tf.cast(image, tf.float32),
                                   [resolution, resolution, 3]),
          'label': tf.cast(label, tf.int32),
          'mask': tf.constant(mask, tf.float32)}


def _pad(ds, count, resolution, mean):
  """Appends `count` padding examples: mask 0, label 0, image 0 once
  normalized."""
  if count <= 0:
    return ds
  image = tf.broadcast_to(tf.constant(mean, tf.float32) * 255.0,
                          [resolution, resolution, 3])
  padding = _output(image, 0, 0.0, resolution)
  return ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(count))


def as_numpy(ds):
  """An iterator of dicts of numpy arrays over a dataset."""
  return iter(tfds.as_numpy(ds))
