"""A prepared TFDS image classification dataset as a raw source.

Read from `config.data.data_dir` ('' = the TFDS default / $TFDS_DATA_DIR);
the raw test split is 'test', or 'validation' where there is none
(ImageNet); nothing downloads. Labels come from one label-only pass (image
bytes read, not decoded). With `cache` and a fixed size the whole raw split
is decoded once per process into memory; otherwise each call reads the
smallest TFDS slice covering the requested indices.
"""
import numpy as np

from wt_jax.data import images as image_ops
from wt_jax.data import tf_support
from wt_jax.data.raw import fits_in_memory
from wt_jax.data.raw import source_error

tf = tf_support.tensorflow()
tfds = tf_support.tfds()

# Datasets TFDS cannot download: their archives must be fetched by hand.
MANUAL_DOWNLOAD = {
    'imagenet2012': 'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar '
                    'from https://image-net.org',
}

VARIABLE_SIZE_RESOLUTION = 224  # native resolution of variable-size TFDS data
AUTOTUNE = tf.data.AUTOTUNE


def _not_prepared(name: str, error: Exception) -> str:
  """What to do when a TFDS dataset has no prepared data."""
  base = name.split('/')[0].split(':')[0]
  how = (f'download {MANUAL_DOWNLOAD[base]} into a manual_dir, then `tfds '
         f'build {base} --manual_dir=<dir> --data_dir=<TFDS_DATA_DIR>`'
         if base in MANUAL_DOWNLOAD else
         f'prepare it with `tfds build {base} --data_dir=<TFDS_DATA_DIR>` on '
         'a machine with internet access')
  return (f'TFDS dataset is not prepared ({error}); {how}, and point '
          'config.data.data_dir (or the TFDS_DATA_DIR environment variable) '
          'at that data_dir')


class TfdsSource:
  """A prepared TFDS image classification dataset ('image', 'label')."""

  def __init__(self, name, data_dir):
    self._name = name
    try:
      self.builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as e:  # pylint: disable=broad-except
      raise source_error(name, f'cannot load TFDS dataset {name!r} '
                          f'(data_dir={data_dir!r}): {e}') from e
    features = self.builder.info.features
    if 'image' not in features or 'label' not in features:
      raise source_error(name, 'expected a TFDS image classification '
                          "dataset with 'image' and 'label' features")
    self.class_names = tuple(features['label'].names)
    height, width = features['image'].shape[:2]
    self.fixed_size = bool(height and width)
    self.native_resolution = (min(height, width) if self.fixed_size
                              else VARIABLE_SIZE_RESOLUTION)
    splits = self.builder.info.splits
    test = 'test' if 'test' in splits or not splits else 'validation'
    if splits and ('train' not in splits or test not in splits):
      raise source_error(name, f'TFDS dataset {name!r} has splits '
                          f'{sorted(splits)}; expected train and test (or '
                          'validation)')
    self._splits = {'train': 'train', 'test': test}
    self._labels = {}
    self._decoded = {}  # (split, size) -> uint8 array of the whole raw split

  def _read(self, split, start=None, stop=None):
    """Undecoded examples of a raw split (or slice), with their raw index.

    Files are read one after the other in their order (no interleaving), so
    an example's position in the read is its raw index, the index TFDS
    slicing (`split[start:stop]`) uses; nothing depends on the dataset
    info's shard lengths (which describe the prepared data, not a mock or a
    partial copy).
    """
    tfds_split = self._splits[split]
    if start is not None:
      tfds_split = f'{tfds_split}[{start}:{stop}]'
    try:
      ds = self.builder.as_dataset(
          split=tfds_split, shuffle_files=False,
          read_config=tfds.ReadConfig(interleave_cycle_length=1),
          decoders={'image': tfds.decode.SkipDecoding()})
    except AssertionError as e:  # TFDS: 'could not find data in ...'
      raise source_error(self._name, _not_prepared(self._name, e)) from e
    if start is not None:  # a mock (tfds.testing.mock_data) ignores slices
      ds = ds.take(stop - start)
    return ds.enumerate(start or 0).map(lambda i, ex: {
        'image': ex['image'], 'label': tf.cast(ex['label'], tf.int32),
        'index': tf.cast(i, tf.int64)}, num_parallel_calls=AUTOTUNE)

  def labels(self, split):
    """One label-only pass over the raw split (images are not decoded)."""
    if split not in self._labels:
      ds = self._read(split).map(lambda ex: ex['label'])
      self._labels[split] = np.concatenate(list(
          ds.batch(65536).prefetch(2).as_numpy_iterator()))
    return self._labels[split]

  def _decode_fit(self, size):
    decode = self.builder.info.features['image'].decode_example

    def decode_fit(ex):
      image = image_ops.to_rgb(decode(ex['image']))
      if size is not None:
        image = image_ops.fit(image, size)
      return {**ex, 'image': image}

    return decode_fit

  def _decode_split(self, split, size):
    """Decodes a whole raw split once into a uint8 [N, size, size, 3]."""
    if (split, size) not in self._decoded:
      images = np.empty((len(self.labels(split)), size, size, 3), np.uint8)
      ds = self._read(split).map(self._decode_fit(size),
                                 num_parallel_calls=AUTOTUNE)
      ds = ds.map(lambda ex: (ex['index'], ex['image'])).batch(1024)
      for index, batch in ds.prefetch(2).as_numpy_iterator():
        images[index] = batch
      self._decoded[split, size] = images
    return self._decoded[split, size]

  def in_memory(self, split, size, cache) -> bool:
    """True when the raw split is decoded whole into memory: `cache`, a
    fixed `size` and it fits in half the host memory."""
    n_raw = len(self.labels(split))
    return bool(cache and size is not None and
                fits_in_memory(n_raw * size * size * 3))

  def random_access(self, size, cache) -> bool:
    """In memory, any order; a read of TFDS slices comes in file order."""
    return self.in_memory('train', size, cache)

  def examples(self, split, indices, size, cache):
    """From memory when it fits, else a read of the slice covering indices.

    With `cache` and a fixed `size`, the whole raw split is decoded once per
    process into a uint8 array (like a folder source), so repeated calls
    (e.g. one per epoch) decode nothing. Otherwise each call reads the
    smallest TFDS slice covering `indices`, keeps those examples and decodes
    them; whole variable-size images are then cached by tf.data if they fit.
    """
    if self.in_memory(split, size, cache):
      return tf_support.in_memory_examples(self._decode_split(split, size),
                                            self.labels(split), indices)
    ds = self.encoded_examples(split, indices)
    ds = ds.map(self._decode_fit(size), num_parallel_calls=AUTOTUNE)
    side = size or 500  # a guess for variable-size images
    if cache and fits_in_memory(len(indices) * side * side * 3):
      ds = ds.cache()
    return ds

  def images(self, split, indices, size):
    """uint8 [len(indices), size, size, 3] of those raw indices: from the
    decoded split when it is in memory, else decoded now."""
    indices = np.asarray(indices, np.int64)
    if self.in_memory(split, size, True):
      return self._decode_split(split, size)[indices]
    ds = self.examples(split, indices, size, False).map(lambda ex: ex['image'])
    return np.concatenate(list(ds.batch(1024).as_numpy_iterator()))

  def encoded_examples(self, split, indices):
    """`examples` of `indices` with 'image' the encoded bytes (undecoded):
    a read of the smallest TFDS slice covering them ('imagenet' training
    decodes each crop window itself)."""
    start, stop = (int(indices[0]), int(indices[-1]) + 1) if len(indices) else (
        0, 1)
    keep = np.zeros(stop, bool)
    keep[indices] = True
    keep = tf.constant(keep)
    ds = self._read(split, start, stop)
    return ds.filter(lambda ex: tf.gather(keep, ex['index']))
