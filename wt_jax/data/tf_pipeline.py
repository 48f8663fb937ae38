"""The tf.data path of `make_dataset`: TFDS data, uncached folders and the
'imagenet' augmentation (needs TensorFlow; `arrays` reads the rest).

Training order is a seeded full permutation of the shard (for sources read
at random: folder, cached TFDS), then a seeded `shuffle` (reshuffled every
epoch, the same sequence of orders for the same seed); augmentations use
stateless random ops keyed on (seed, example index, epoch). No global TF
seed is used. All maps run in parallel (AUTOTUNE) with deterministic output
order, then prefetch.
"""
import numpy as np

from wt_jax.data import images
from wt_jax.data import tf_support

tf = tf_support.tensorflow()
AUTOTUNE = tf.data.AUTOTUNE


def dataset(source, data_config, shard, *, split, train, seed, resolution,
            store, mean, std, num_epochs, drop_remainder):
  """The tf.data.Dataset `make_dataset` returns for this source and shard."""
  dc = data_config
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
  if train:
    ds = _train_stream(ds, dc, shard, seed, resolution, mean, num_epochs,
                       drop_remainder, encoded)
  else:
    ds = _eval_stream(ds, dc.augment, shard, resolution, mean, num_epochs)
  ds = _normalize(ds, mean, std)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(AUTOTUNE)


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
