"""Input pipelines: tensorflow-datasets + tf.data, yielding numpy batches.

This is the only wt_jax module that imports TensorFlow. GPUs are hidden from
TF right after the import, so TF never takes accelerator memory from JAX.

Sources (`config.data.source`)
------------------------------
* A TFDS name ('cifar10', 'imagenet2012', 'imagenette', ...), read from
  `config.data.data_dir` ('' = the TFDS default / $TFDS_DATA_DIR). The raw
  test split is the dataset's 'test' split, or 'validation' where it has no
  'test' (ImageNet). The dataset must be prepared already (nothing downloads).
  At first use each process makes one label-only pass over the raw splits
  (image bytes are read but not decoded) to build the class-balanced splits;
  for ImageNet that is a read of the whole train split.
* 'folder:/path': `/path/train/<class>/*` plus `/path/test/<class>/*` (or
  `/path/val/<class>/*`, used as the test split when there is no `test/`),
  the layout and file types (.jpg, .jpeg, .png) of
  `tfds.folder_dataset.ImageFolder`. Class ids are the sorted names of the
  train class folders. The folder is listed here rather than through
  `ImageFolder`, whose public API can only list labels by reading every file
  and silently accepts an empty class folder. Every image of a raw split is
  decoded once per process (which validates it: an undecodable file raises
  `DataError` naming it) and, with `config.data.cache`, kept in memory as
  uint8 (resolution x resolution); without it, images are decoded again each
  epoch. Meant for small and medium datasets; use TFDS at ImageNet scale.
* 'digits': scikit-learn's bundled 8x8 handwritten digits (1,797 images,
  10 classes, no download), split once into train (1,437) and test (360) by a
  fixed stratified split (`random_state=0`). Pixel values 0..16 are scaled to
  uint8 0..255 and the gray channel is repeated to 3 channels, so every
  architecture's 3-channel stem works unchanged.

Every source yields 3-channel images (gray images are repeated to RGB).

Splits and projection
---------------------
`make_dataset` serves three splits, all defined by indices into the raw
splits (deterministic; they depend only on the data and the split seed
`config.data.get('split_seed', 0)`, never on the training seed):

1. 'val' is carved from the *full* raw train split first: from each class,
   `round(val_fraction * n_class)` examples (at least 1 when
   val_fraction > 0 and the class has 2+ examples; never the whole class).
   It is therefore the same for every sample_fraction and resolution.
2. 'train' is the rest of the raw train split, subsampled per class to
   `max(1, round(sample_fraction * n_rest_class))` examples. The subsets are
   nested: a smaller fraction picks a prefix of the same per-class random
   order.
3. 'test' is the whole raw test split; it is never used for decisions.

`resolution` > 0 resizes to resolution x resolution; 0 keeps the native side
(TFDS: the image feature's static size, 224 where it has none; folder: the
shorter side of the first train image; digits: 8). Images that are not
square or not of that size are resized (shorter side) and center-cropped
once, before caching; only variable-size TFDS images under 'imagenet'
augmentation are kept whole for the random resized crop.

Augmentation and normalization
------------------------------
* 'cifar': train = reflect-pad by round(resolution / 8) pixels (4 at 32) +
  random crop + horizontal flip; eval = the image itself.
* 'imagenet': train = inception-style random resized crop (area 8%..100%,
  aspect 3/4..4/3) + horizontal flip; eval = center crop of 87.5% of the
  shorter side, resized (= resize to resolution / 0.875, center crop).
* 'none': no augmentation.
Images are then scaled to [0, 1] and normalized per channel with the known
mean/std of cifar10 and ImageNet(-subsets); for other sources the mean/std
are computed (deterministically) from up to 4,096 evenly spaced examples of
the raw train split minus 'val', at the fed resolution.

Determinism and throughput
--------------------------
Images are decoded once and cached (in memory) when `config.data.cache` is
set and the decoded split fits in half the host memory (digits always is).
Decoded sources, splits and statistics are memoized per process
(`clear_caches()` forgets them). Training order is a
seeded `shuffle` (reshuffled every epoch, the same sequence of orders for the
same seed); augmentations use stateless random ops keyed on
(seed, example index, epoch). No global TF seed is used. All maps run in
parallel (AUTOTUNE) with deterministic output order, then prefetch.

Multi-host
----------
Each process reads its own contiguous block of the split's examples
(`process_index` of `process_count`; blocks differ by at most one example)
and yields per-process batches of `batch_size // process_count`. All
processes yield the same number of batches for evaluation and for finite
training streams. Assembling global jax.Arrays is the training code's job.

Every batch is a dict {'image': float32 [B, R, R, 3], 'label': int32 [B],
'mask': float32 [B]}; 'mask' is 1 for real examples and 0 for padding.
Evaluation pads its last batch (padding: label 0, image 0 after
normalization), so `sum(mask)` over all processes and batches is exactly the
number of examples.

Bad data or config fields raise `DataError` (a `ValueError`) naming the
field, the value and what is allowed.
"""
import dataclasses
import math
import os

import numpy as np
import tensorflow as tf

tf.config.set_visible_devices([], 'GPU')

import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

from wt_jax.errors import DataError  # pylint: disable=g-import-not-at-top

AUGMENTS = ('cifar', 'imagenet', 'none')
SPLITS = ('train', 'val', 'test')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')  # those of tfds ImageFolder
VARIABLE_SIZE_RESOLUTION = 224  # native resolution of variable-size TFDS data
EVAL_CROP_FRACTION = 0.875  # 'imagenet' eval: center crop of the shorter side
STATS_EXAMPLES = 4096  # examples used to compute a source's mean/std

_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
KNOWN_STATS = {
    'cifar10': _CIFAR10_STATS,
    'imagenet2012': _IMAGENET_STATS,
    'imagenet2012_subset': _IMAGENET_STATS,
    'imagenette': _IMAGENET_STATS,
    'imagewang': _IMAGENET_STATS,
    'imagenet_v2': _IMAGENET_STATS,
}

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  num_classes: int
  resolution: int  # after projection: the image side fed to the model
  channels: int  # always 3
  num_examples: dict  # {'train': n, 'val': n, 'test': n} after projection
  class_names: tuple


# ----------------------------------------------------------------------------
# Config validation.
# ----------------------------------------------------------------------------


def _bad(field, value, allowed):
  return DataError(f'config.data.{field}={value!r} is invalid: {allowed}.')


def _is_int(x):
  return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_number(x):
  return isinstance(x, (int, float, np.integer, np.floating)) and not (
      isinstance(x, bool))


def validate_data_config(data_config) -> None:
  """Raises DataError for a bad `config.data` field.

  No I/O except checking that a 'folder:' source directory exists; the
  folder's layout and images are checked when it is first read.
  """
  dc = data_config
  source = dc.source
  if not isinstance(dc.data_dir, str):
    raise _bad('data_dir', dc.data_dir, "expected a path string ('' = TFDS "
               'default)')
  if not isinstance(source, str) or not source:
    raise _bad('source', source, "expected 'digits', 'folder:/path' or a "
               'TFDS dataset name')
  if source.startswith('folder:'):
    root = source[len('folder:'):]
    if not root or not os.path.isdir(os.path.expanduser(root)):
      raise _bad('source', source, f'folder {root!r} does not exist; expected '
                 'a directory with train/<class>/* and test/<class>/* (or '
                 'val/<class>/*) images')
  elif source != 'digits':
    name = source.split('/')[0].split(':')[0]
    prepared = dc.data_dir and os.path.isdir(os.path.join(dc.data_dir, name))
    if not prepared and name not in tfds.list_builders(
        with_community_datasets=False):
      raise _bad('source', source, "expected 'digits', 'folder:/path' or a "
                 "TFDS dataset name (e.g. 'cifar10', 'imagenet2012', "
                 "'imagenette'); see tfds.list_builders()")
  if not _is_int(dc.resolution) or dc.resolution < 0:
    raise _bad('resolution', dc.resolution, 'expected an int >= 0 (0 = the '
               'native resolution)')
  if not _is_number(dc.sample_fraction) or not 0 < dc.sample_fraction <= 1:
    raise _bad('sample_fraction', dc.sample_fraction, 'expected a number in '
               '(0, 1]')
  if not _is_number(dc.val_fraction) or not 0 <= dc.val_fraction < 1:
    raise _bad('val_fraction', dc.val_fraction, 'expected a number in [0, 1)')
  if dc.augment not in AUGMENTS:
    raise _bad('augment', dc.augment, f'expected one of {AUGMENTS}')
  if not isinstance(dc.cache, bool):
    raise _bad('cache', dc.cache, 'expected True or False')
  if not _is_int(dc.shuffle_buffer) or dc.shuffle_buffer < 1:
    raise _bad('shuffle_buffer', dc.shuffle_buffer, 'expected an int >= 1')
  if not _is_int(_split_seed(dc)):
    raise _bad('split_seed', _split_seed(dc), 'expected an int')


def _split_seed(data_config):
  return data_config.get('split_seed', 0)


# ----------------------------------------------------------------------------
# Image helpers (graph mode; uint8 in, float32 or uint8 out).
# ----------------------------------------------------------------------------


def _to_rgb(image):
  if image.shape[-1] == 1:
    image = tf.image.grayscale_to_rgb(image)
  return image


def _resize(image, height, width):
  """Bilinear (antialiased) resize; float32 output in 0..255."""
  return tf.image.resize(tf.cast(image, tf.float32), [height, width],
                         method='bilinear', antialias=True)


def _fit(image, size):
  """Shorter side to `size`, center crop size x size; uint8 in and out."""
  if image.shape[:2] == (size, size):
    return image
  shape = tf.shape(image)
  h, w = shape[0], shape[1]

  def resize_and_crop():
    scale = size / tf.cast(tf.minimum(h, w), tf.float32)
    new_h = tf.maximum(size, tf.cast(tf.round(tf.cast(h, tf.float32) * scale),
                                     tf.int32))
    new_w = tf.maximum(size, tf.cast(tf.round(tf.cast(w, tf.float32) * scale),
                                     tf.int32))
    resized = _resize(image, new_h, new_w)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    cropped = resized[top:top + size, left:left + size]
    return tf.cast(tf.round(tf.clip_by_value(cropped, 0, 255)), tf.uint8)

  fitted = tf.cond(tf.logical_and(h == size, w == size),
                   lambda: tf.cast(image, tf.uint8), resize_and_crop)
  return tf.ensure_shape(fitted, [size, size, 3])


def _cifar_crop_flip(image, size, key):
  """Reflect-pad by round(size / 8), random size x size crop, random flip."""
  pad = max(1, round(size / 8))
  image = tf.pad(_fit(image, size), [[pad, pad], [pad, pad], [0, 0]],
                 mode='REFLECT')
  crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key))
  offset = tf.random.stateless_uniform([2], seed=crop_key, minval=0,
                                       maxval=2 * pad + 1, dtype=tf.int32)
  image = tf.slice(image, [offset[0], offset[1], 0], [size, size, 3])
  return tf.image.stateless_random_flip_left_right(image, seed=flip_key)


def _random_resized_crop_flip(image, size, key):
  """Inception-style crop (area 8..100%, aspect 3/4..4/3) + random flip."""
  crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key))
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=crop_key, min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.08, 1.0), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  image = tf.slice(image, begin, crop_size)
  image = _resize(image, size, size)
  return tf.image.stateless_random_flip_left_right(image, seed=flip_key)


def _center_crop(image, size):
  """Center crop of EVAL_CROP_FRACTION of the shorter side, resized."""
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  side = tf.cast(EVAL_CROP_FRACTION * tf.cast(tf.minimum(h, w), tf.float32),
                 tf.int32)
  side = tf.maximum(side, 1)
  top, left = (h - side) // 2, (w - side) // 2
  return _resize(image[top:top + side, left:left + side], size, size)


# ----------------------------------------------------------------------------
# Sources. Each one has `class_names`, `native_resolution`, `labels(split)`
# (the int labels of a raw split, 'train' or 'test', in its canonical order)
# and `examples(split, indices, size, cache)`: a tf.data.Dataset of
# {'image': uint8 [H, W, 3], 'label': int32, 'index': int64 (raw index)} for
# the given sorted raw indices; images fitted to size x size, or left at
# their own size when `size` is None.
# ----------------------------------------------------------------------------


def _fits_in_memory(num_bytes):
  try:
    total = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return True
  return num_bytes <= total // 2


def _resize_array(images, size):
  """Fits a uint8 [N, H, W, 3] numpy array to size x size."""
  if images.shape[1:3] == (size, size):
    return images
  ds = tf.data.Dataset.from_tensor_slices(images)
  ds = ds.map(lambda image: _fit(image, size), num_parallel_calls=AUTOTUNE)
  return np.concatenate(list(ds.batch(1024).as_numpy_iterator()))


def _in_memory_examples(images, labels, indices):
  return tf.data.Dataset.from_tensor_slices({
      'image': images[indices],
      'label': labels[indices].astype(np.int32),
      'index': indices.astype(np.int64),
  })


class _DigitsSource:
  """scikit-learn's 8x8 digits: uint8 0..255, gray repeated to 3 channels."""

  native_resolution = 8

  def __init__(self):
    # pylint: disable=g-import-not-at-top
    from sklearn import datasets as sk_datasets
    from sklearn import model_selection
    # pylint: enable=g-import-not-at-top
    digits = sk_datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(images[..., None], 3, axis=-1)
    train, test = model_selection.train_test_split(
        np.arange(len(images)), test_size=0.2, stratify=digits.target,
        random_state=0)
    self.class_names = tuple(str(i) for i in range(10))
    self._images = {'train': images[np.sort(train)],
                    'test': images[np.sort(test)]}
    self._labels = {'train': digits.target[np.sort(train)],
                    'test': digits.target[np.sort(test)]}
    self._resized = {}

  def labels(self, split):
    return self._labels[split]

  def examples(self, split, indices, size, cache):
    del cache  # always in memory
    size = size or self.native_resolution
    if (split, size) not in self._resized:
      self._resized[split, size] = _resize_array(self._images[split], size)
    return _in_memory_examples(self._resized[split, size], self._labels[split],
                               indices)


class _FolderSource:
  """Images in root/{train,test|val}/<class>/*.{jpg,jpeg,png}."""

  def __init__(self, source):
    self._source = source
    self.root = os.path.expanduser(source[len('folder:'):])
    root = self.root
    expected = (f'expected {root}/train/<class>/<images> and '
                f'{root}/test/<class>/<images> (or {root}/val/<class>/...), '
                f'images being {", ".join(IMAGE_EXTENSIONS)} files')
    if not os.path.isdir(root):
      raise _bad('source', source, f'folder {root} does not exist; {expected}')
    split_dirs = {'train': 'train'}
    for name in ('test', 'val'):
      if os.path.isdir(os.path.join(root, name)):
        split_dirs['test'] = name
        break
    if not os.path.isdir(os.path.join(root, 'train')):
      raise _bad('source', source, f'folder {root} has no train split folder '
                 f'{os.path.join(root, "train")}; {expected}')
    if 'test' not in split_dirs:
      raise _bad('source', source, f'folder {root} has neither a test split '
                 f'folder {os.path.join(root, "test")} nor '
                 f'{os.path.join(root, "val")}; {expected}')
    listing = {split: self._list(os.path.join(root, d))
               for split, d in split_dirs.items()}
    self.class_names = tuple(sorted(listing['train']))
    unknown = sorted(set(listing['test']) - set(self.class_names))
    if unknown:
      raise _bad('source', source, f'classes {unknown} of '
                 f'{os.path.join(root, split_dirs["test"])} have no train '
                 f'folder in {os.path.join(root, "train")}; every test class '
                 'must also be a train class')
    self._paths, self._labels = {}, {}
    for split, classes in listing.items():
      paths = [(path, self.class_names.index(c))
               for c in sorted(classes) for path in classes[c]]
      self._paths[split] = np.array([p for p, _ in paths])
      self._labels[split] = np.array([l for _, l in paths], np.int64)
    self.native_resolution = self._first_image_side()
    self._decoded = {}  # (split, size) -> uint8 array of the whole raw split
    self._validated = set()

  def _list(self, split_dir):
    """{class name: sorted image paths}; DataError for an empty layout."""
    classes = sorted(e.name for e in os.scandir(split_dir)
                     if e.is_dir() and not e.name.startswith('.'))
    if not classes:
      raise _bad('source', self._source, f'split folder {split_dir} has no '
                 'class folders; expected <split>/<class>/<image files>')
    listing = {}
    for c in classes:
      class_dir = os.path.join(split_dir, c)
      paths = sorted(os.path.join(class_dir, e.name)
                     for e in os.scandir(class_dir)
                     if e.is_file() and e.name.lower().endswith(
                         IMAGE_EXTENSIONS))
      if not paths:
        raise _bad('source', self._source, f'class folder {class_dir} '
                   f'contains no images; allowed image files: '
                   f'{", ".join(IMAGE_EXTENSIONS)}')
      listing[c] = paths
    return listing

  def _first_image_side(self):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    path = self._paths['train'][0]
    try:
      with Image.open(path) as im:
        return min(im.size)
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f'cannot read image file {path} (config.data.source='
                      f'{self._source!r}): {e}') from e

  def labels(self, split):
    return self._labels[split]

  def _load(self, path, size):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                               dtype=tf.uint8, expand_animations=False)
    return image if size is None else _fit(image, size)

  def _decode_all(self, split, size, keep):
    """Decodes every image of a raw split once; DataError names bad files."""
    paths = self._paths[split]
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
    ds = ds.map(lambda i, p: (i, self._load(p, size)),
                num_parallel_calls=AUTOTUNE)
    ds = ds.ignore_errors().batch(1024).prefetch(2)
    images = np.empty((len(paths), size, size, 3), np.uint8) if keep else None
    seen = np.zeros(len(paths), bool)
    for index, batch in ds.as_numpy_iterator():
      seen[index] = True
      if keep:
        images[index] = batch
    bad = paths[~seen]
    if len(bad):
      listed = ', '.join(bad[:5]) + (', ...' if len(bad) > 5 else '')
      raise DataError(f'cannot decode image file {bad[0]} (config.data.source'
                      f'={self._source!r}; {len(bad)} undecodable file(s): '
                      f'{listed})')
    self._validated.add(split)
    return images

  def examples(self, split, indices, size, cache):
    size = size or self.native_resolution
    num_bytes = len(self._paths[split]) * size * size * 3
    if cache and _fits_in_memory(num_bytes):
      if (split, size) not in self._decoded:
        self._decoded[split, size] = self._decode_all(split, size, keep=True)
      return _in_memory_examples(self._decoded[split, size],
                                 self._labels[split], indices)
    if split not in self._validated:
      self._decode_all(split, size, keep=False)
    ds = tf.data.Dataset.from_tensor_slices(
        (self._paths[split][indices], self._labels[split][indices], indices))
    return ds.map(lambda p, l, i: {'image': self._load(p, size),
                                   'label': tf.cast(l, tf.int32),
                                   'index': tf.cast(i, tf.int64)},
                  num_parallel_calls=AUTOTUNE)


def _tfds_index(tfds_id, shard_offsets):
  """Global raw index from a tfds_id '<prefix>-00012-of-01024__345'."""
  shard = tf.strings.regex_replace(tfds_id, r'^.*-(\d+)-of-\d+__\d+$', r'\1')
  record = tf.strings.regex_replace(tfds_id, r'^.*__(\d+)$', r'\1')
  return (tf.gather(shard_offsets, tf.strings.to_number(shard, tf.int32)) +
          tf.strings.to_number(record, tf.int64))


class _TfdsSource:
  """A prepared TFDS image classification dataset ('image', 'label')."""

  def __init__(self, name, data_dir):
    self._name = name
    try:
      self.builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as e:  # pylint: disable=broad-except
      raise _bad('source', name, f'cannot load TFDS dataset {name!r} '
                 f'(data_dir={data_dir!r}): {e}') from e
    features = self.builder.info.features
    if 'image' not in features or 'label' not in features:
      raise _bad('source', name, 'expected a TFDS image classification '
                 "dataset with 'image' and 'label' features")
    self.class_names = tuple(features['label'].names)
    height, width = features['image'].shape[:2]
    self.fixed_size = bool(height and width)
    self.native_resolution = (min(height, width) if self.fixed_size
                              else VARIABLE_SIZE_RESOLUTION)
    splits = self.builder.info.splits
    test = 'test' if 'test' in splits or not splits else 'validation'
    if splits and ('train' not in splits or test not in splits):
      raise _bad('source', name, f'TFDS dataset {name!r} has splits '
                 f'{sorted(splits)}; expected train and test (or validation)')
    self._splits = {'train': 'train', 'test': test}
    self._labels = {}
    self._decoded = {}  # (split, size) -> uint8 array of the whole raw split

  def _shard_offsets(self, split):
    """Start index of every shard file (a single shard when unknown)."""
    try:
      lengths = list(self.builder.info.splits[split].shard_lengths)
    except (KeyError, AttributeError):
      lengths = []
    return tf.constant(np.concatenate([[0], np.cumsum(lengths)[:-1]])
                       .astype(np.int64) if lengths else [0], tf.int64)

  def _read(self, split, start=None, stop=None):
    """Undecoded examples of a raw split (or slice), with their raw index."""
    tfds_split = self._splits[split]
    if start is not None:
      tfds_split = f'{tfds_split}[{start}:{stop}]'
    try:
      ds = self.builder.as_dataset(
          split=tfds_split, shuffle_files=False,
          read_config=tfds.ReadConfig(add_tfds_id=True),
          decoders={'image': tfds.decode.SkipDecoding()})
    except AssertionError as e:  # TFDS: 'could not find data in ...'
      raise _bad('source', self._name, f'TFDS dataset is not prepared: {e}') \
          from e
    offsets = self._shard_offsets(self._splits[split])
    return ds.map(lambda ex: {
        'image': ex['image'],
        'label': tf.cast(ex['label'], tf.int32),
        'index': _tfds_index(ex['tfds_id'], offsets)},
                  num_parallel_calls=AUTOTUNE)

  def labels(self, split):
    """One label-only pass over the raw split (images are not decoded)."""
    if split not in self._labels:
      ds = self._read(split).map(lambda ex: (ex['index'], ex['label']))
      index, labels = [], []
      for i, l in ds.batch(65536).prefetch(2).as_numpy_iterator():
        index.append(i)
        labels.append(l)
      index, labels = np.concatenate(index), np.concatenate(labels)
      if not np.array_equal(np.sort(index), np.arange(len(index))):
        raise DataError(f'TFDS dataset {self._name!r}: example ids of split '
                        f'{self._splits[split]!r} are not 0..n-1')
      self._labels[split] = np.empty_like(labels)
      self._labels[split][index] = labels
    return self._labels[split]

  def _decode_fit(self, size):
    decode = self.builder.info.features['image'].decode_example

    def decode_fit(ex):
      image = _to_rgb(decode(ex['image']))
      return {**ex, 'image': image if size is None else _fit(image, size)}

    return decode_fit

  def examples(self, split, indices, size, cache):
    """From memory when it fits, else a read of the slice covering indices.

    With `cache` and a fixed `size`, the whole raw split is decoded once per
    process into a uint8 array (like a folder source), so repeated calls
    (e.g. one per epoch) decode nothing. Otherwise each call reads the
    smallest TFDS slice covering `indices`, keeps those examples and decodes
    them; whole variable-size images are then cached by tf.data if they fit.
    """
    n_raw = len(self.labels(split))
    if cache and size is not None and _fits_in_memory(n_raw * size * size * 3):
      if (split, size) not in self._decoded:
        images = np.empty((n_raw, size, size, 3), np.uint8)
        ds = self._read(split).map(self._decode_fit(size),
                                   num_parallel_calls=AUTOTUNE)
        ds = ds.map(lambda ex: (ex['index'], ex['image'])).batch(1024)
        for index, batch in ds.prefetch(2).as_numpy_iterator():
          images[index] = batch
        self._decoded[split, size] = images
      return _in_memory_examples(self._decoded[split, size],
                                 self.labels(split), indices)
    start, stop = (int(indices[0]), int(indices[-1]) + 1) if len(indices) else (
        0, 1)
    keep = np.zeros(stop, bool)
    keep[indices] = True
    keep = tf.constant(keep)
    ds = self._read(split, start, stop)
    ds = ds.filter(lambda ex: tf.gather(keep, ex['index']))
    ds = ds.map(self._decode_fit(size), num_parallel_calls=AUTOTUNE)
    side = size or 500  # a guess for variable-size images
    if cache and _fits_in_memory(len(indices) * side * side * 3):
      ds = ds.cache()
    return ds


_SOURCES = {}


def _get_source(data_config):
  """The (memoized) source object of `config.data.source`."""
  key = (data_config.source, data_config.data_dir)
  if key not in _SOURCES:
    source = data_config.source
    if source == 'digits':
      _SOURCES[key] = _DigitsSource()
    elif source.startswith('folder:'):
      _SOURCES[key] = _FolderSource(source)
    else:
      _SOURCES[key] = _TfdsSource(source, data_config.data_dir)
  return _SOURCES[key]


# ----------------------------------------------------------------------------
# Projection: which raw examples form 'train', 'val' and 'test'.
# ----------------------------------------------------------------------------


def _round(x):
  return int(math.floor(x + 0.5))


_PROJECTIONS = {}


def _projection(data_config):
  """Sorted raw indices {'train', 'val', 'test', 'pool'} (see module doc).

  'pool' is the raw train split minus 'val' (before sample_fraction).
  """
  dc = data_config
  key = (dc.source, dc.data_dir, float(dc.val_fraction),
         float(dc.sample_fraction), int(_split_seed(dc)))
  if key not in _PROJECTIONS:
    source = _get_source(dc)
    labels = source.labels('train')
    num_classes = len(source.class_names)
    by_class = np.split(np.argsort(labels, kind='stable'),
                        np.cumsum(np.bincount(labels, minlength=num_classes)))
    rng = np.random.default_rng(int(_split_seed(dc)))
    val, pool, train = [], [], []
    for c in range(num_classes):
      order = rng.permutation(by_class[c])
      n_val = 0
      if dc.val_fraction > 0 and len(order) >= 2:
        n_val = min(max(1, _round(dc.val_fraction * len(order))),
                    len(order) - 1)
      rest = order[n_val:]
      n_train = min(len(rest), max(1, _round(dc.sample_fraction * len(rest))))
      val.append(order[:n_val])
      pool.append(rest)
      train.append(rest[:n_train])
    _PROJECTIONS[key] = {
        'train': np.sort(np.concatenate(train)),
        'val': np.sort(np.concatenate(val)),
        'test': np.arange(len(source.labels('test'))),
        'pool': np.sort(np.concatenate(pool)),
    }
  return _PROJECTIONS[key]


def _resolution(data_config, source):
  return data_config.resolution or source.native_resolution


def dataset_info(data_config) -> DatasetInfo:
  """Classes, fed resolution and per-split example counts after projection."""
  validate_data_config(data_config)
  source = _get_source(data_config)
  projection = _projection(data_config)
  return DatasetInfo(
      num_classes=len(source.class_names),
      resolution=_resolution(data_config, source),
      channels=3,
      num_examples={s: len(projection[s]) for s in SPLITS},
      class_names=source.class_names)


_STATS = {}


def _channel_stats(data_config, source, resolution):
  """Per-channel (mean, std) in [0, 1] units: known or computed."""
  name = data_config.source.split(':')[0].split('/')[0]
  if name in KNOWN_STATS:
    return KNOWN_STATS[name]
  key = (data_config.source, data_config.data_dir,
         float(data_config.val_fraction), int(_split_seed(data_config)),
         resolution)
  if key not in _STATS:
    pool = _projection(data_config)['pool']
    count = min(len(pool), STATS_EXAMPLES)
    picks = np.unique(np.linspace(0, len(pool) - 1, count).astype(int))
    ds = source.examples('train', pool[picks], resolution, data_config.cache)
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for batch in ds.map(lambda ex: ex['image']).batch(512).as_numpy_iterator():
      pixels = batch.reshape(-1, 3).astype(np.float64) / 255.0
      total += pixels.sum(0)
      total_sq += (pixels**2).sum(0)
      count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-6))
    _STATS[key] = (tuple(mean), tuple(std))
  return _STATS[key]


# ----------------------------------------------------------------------------
# The pipeline.
# ----------------------------------------------------------------------------


def make_dataset(data_config, split: str, *, batch_size: int, seed: int,
                 train: bool, process_index: int = 0, process_count: int = 1,
                 num_epochs=None, drop_remainder: bool = True):
  """This process's batches of a split as a tf.data.Dataset.

  Args:
    data_config: `config.data`.
    split: 'train', 'val' or 'test' (see the module docstring).
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
  validate_data_config(dc)
  if split not in SPLITS:
    raise DataError(f'split={split!r} is invalid: expected one of {SPLITS}.')
  if not (_is_int(process_count) and process_count >= 1 and
          _is_int(process_index) and 0 <= process_index < process_count):
    raise DataError(f'process_index={process_index!r}, process_count='
                    f'{process_count!r} are invalid: expected 0 <= '
                    'process_index < process_count.')
  if not _is_int(batch_size) or batch_size < process_count or (
      batch_size % process_count):
    raise DataError(f'batch_size={batch_size!r} is invalid: expected a '
                    f'positive multiple of process_count={process_count}.')
  if num_epochs is not None and (not _is_int(num_epochs) or num_epochs < 1):
    raise DataError(f'num_epochs={num_epochs!r} is invalid: expected None or '
                    'an int >= 1.')
  source = _get_source(dc)
  resolution = _resolution(dc, source)
  indices = _projection(dc)[split]
  if not len(indices):
    raise DataError(f'split {split!r} of config.data.source={dc.source!r} is '
                    f'empty (config.data.val_fraction={dc.val_fraction!r}); '
                    'use val_fraction > 0 for a val split.')
  blocks = np.array_split(indices, process_count)
  mine = blocks[process_index]
  n_min, n_max = min(map(len, blocks)), max(map(len, blocks))
  if train and n_min == 0:
    raise DataError(f'split {split!r} has {len(indices)} examples, fewer than '
                    f'process_count={process_count}: some process would have '
                    'no training data.')
  per_process = batch_size // process_count

  # Images decoded once (and cached): fitted to the fed resolution, except
  # full images for the 'imagenet' random resized crop of variable-size TFDS.
  store = resolution
  if dc.augment == 'imagenet' and isinstance(source, _TfdsSource):
    store = None if not source.fixed_size else source.native_resolution
  ds = source.examples('test' if split == 'test' else 'train', mine, store,
                       dc.cache)
  mean, std = _channel_stats(dc, source, resolution)

  if train:
    n = len(mine)
    ds = ds.shuffle(min(dc.shuffle_buffer, n), seed=seed,
                    reshuffle_each_iteration=True)
    ds = ds.repeat(num_epochs).enumerate()

    def augment(position, ex):
      key = tf.random.experimental.stateless_fold_in(
          tf.stack([tf.constant(seed, tf.int64), ex['index']]), position // n)
      image = ex['image']
      if dc.augment == 'cifar':
        image = _cifar_crop_flip(image, resolution, key)
      elif dc.augment == 'imagenet':
        image = _random_resized_crop_flip(image, resolution, key)
      else:
        image = _fit(image, resolution)
      return _output(image, ex['label'], 1.0, resolution)

    ds = ds.map(augment, num_parallel_calls=AUTOTUNE)
    if num_epochs is None:
      ds = ds.batch(per_process, drop_remainder=True)
    elif drop_remainder:
      ds = ds.batch(per_process, drop_remainder=True)
      ds = ds.take(num_epochs * n_min // per_process)
    else:
      total = -(-num_epochs * n_max // per_process) * per_process
      ds = _pad(ds, total - num_epochs * len(mine), resolution, mean)
      ds = ds.batch(per_process, drop_remainder=True)
  else:

    def preprocess(ex):
      image = ex['image']
      if dc.augment == 'imagenet':
        image = _center_crop(image, resolution)
      else:
        image = _fit(image, resolution)
      return _output(image, ex['label'], 1.0, resolution)

    ds = ds.map(preprocess, num_parallel_calls=AUTOTUNE)
    total = -(-n_max // per_process) * per_process
    ds = _pad(ds, total - len(mine), resolution, mean)
    ds = ds.batch(per_process, drop_remainder=True)
    if num_epochs is not None and num_epochs > 1:
      ds = ds.repeat(num_epochs)

  # Normalize whole batches (cheaper than per example).
  scale = tf.constant(1.0 / (255.0 * np.array(std)), tf.float32)
  shift = tf.constant(np.array(mean) / np.array(std), tf.float32)
  ds = ds.map(lambda batch: {**batch, 'image': batch['image'] * scale - shift},
              num_parallel_calls=AUTOTUNE)

  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(AUTOTUNE)


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


def clear_caches():
  """Forgets memoized sources, splits, decoded images and statistics.

  For tests (e.g. around `tfds.testing.mock_data`) or after a folder source
  changed on disk within the same process.
  """
  for cache in (_SOURCES, _PROJECTIONS, _STATS):
    cache.clear()


def as_numpy(ds):
  """An iterator of dicts of numpy arrays over a dataset."""
  return iter(tfds.as_numpy(ds))


validate = validate_data_config  # transitional
