"""The raw sources of images (`config.data.source`) and `get_source`.

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
  and silently accepts an empty class folder. Only the images a run uses
  are decoded, each once per process (which validates it: an undecodable
  file raises `DataError` naming it), and, with `config.data.cache`, kept in
  memory as uint8 (resolution x resolution); without it, images are decoded
  again each epoch. Meant for small and medium datasets; use TFDS at ImageNet scale.
  A folder is decoded with Pillow (in parallel threads); only an uncached
  folder is streamed through tf.data and needs TensorFlow.
* 'digits': scikit-learn's bundled 8x8 handwritten digits (1,797 images,
  10 classes, no download), split once into train (1,437) and test (360) by a
  fixed stratified split (`random_state=0`). Pixel values 0..16 are scaled to
  uint8 0..255 and the gray channel is repeated to 3 channels, so every
  architecture's 3-channel stem works unchanged.

Every source yields 3-channel images (gray images are repeated to RGB) and
has the same interface:

* `class_names`: a tuple of names, the class id being the position;
* `native_resolution`: the side fed with `config.data.resolution=0` (TFDS:
  the image feature's static size, 224 where it has none; folder: the shorter
  side of the first train image; digits: 8);
* `labels(split)`: the int labels of a raw split ('train' or 'test') in its
  canonical order;
* `images(split, indices, size)`: the uint8 [len(indices), size, size, 3]
  numpy images of those raw indices, fitted to size x size (digits and
  folders: Pillow, `raw.fit_image`, no TensorFlow; decoded images are kept
  in memory, each decoded once per process);
* `examples(split, indices, size, cache)` (TensorFlow): a tf.data.Dataset of
  {'image': uint8 [H, W, 3], 'label': int32, 'index': int64 (raw index)} for
  the given raw indices; images fitted to size x size, or left at their own
  size when `size` is None (TFDS, uncached folders);
* `random_access(size, cache)`: True when `examples` yields the indices in
  the order given (else they must be sorted and come in file order).

A TFDS source also has `encoded_examples(split, indices)`: the same
examples with the images still encoded, for the 'imagenet' training crop
that decodes only its window of each JPEG.

Decoded images are cached in memory when `cache` is set and the decoded split
fits in half the host memory (digits always is). `get_source` memoizes the
source objects per process (`clear_cache()` forgets them). A TFDS name
needs `tensorflow_datasets` (a `DataError` names it when it is missing);
digits and folders need neither TensorFlow nor TFDS.
"""
import concurrent.futures
import os

import numpy as np
from PIL import Image
from sklearn import datasets as sk_datasets
from sklearn import model_selection

from wt_jax.data import fields
from wt_jax.data import raw
from wt_jax.data import tf_support
from wt_jax.data.raw import fits_in_memory
from wt_jax.data.raw import source_error
from wt_jax.errors import DataError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')  # those of tfds ImageFolder
DECODE_THREADS = min(16, os.cpu_count() or 1)  # Pillow decodes without the GIL


class DigitsSource:
  """scikit-learn's 8x8 digits: uint8 0..255, gray repeated to 3 channels."""

  native_resolution = 8

  def __init__(self):
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

  def random_access(self, size, cache) -> bool:
    del size, cache
    return True

  def in_memory(self, split, size, cache) -> bool:
    del split, size, cache
    return True

  def images(self, split, indices, size):
    size = size or self.native_resolution
    if (split, size) not in self._resized:
      self._resized[split, size] = raw.fit_array(self._images[split], size)
    return self._resized[split, size][np.asarray(indices, np.int64)]

  def examples(self, split, indices, size, cache):
    del cache  # always in memory
    return tf_support.in_memory_examples(
        self.images(split, np.arange(len(self._labels[split])), size),
        self._labels[split], indices)


class FolderSource:
  """Images in root/{train,test|val}/<class>/*.{jpg,jpeg,png}."""

  def __init__(self, source):
    self._source = source
    self.root = os.path.expanduser(source[len(fields.FOLDER_PREFIX):])
    split_dirs = self._split_dirs()
    listing = {split: self._list(os.path.join(self.root, d))
               for split, d in split_dirs.items()}
    self.class_names = tuple(sorted(listing['train']))
    unknown = sorted(set(listing['test']) - set(self.class_names))
    if unknown:
      raise source_error(
          source, f'classes {unknown} of '
          f'{os.path.join(self.root, split_dirs["test"])} have no train '
          f'folder in {os.path.join(self.root, "train")}; every test class '
          'must also be a train class')
    self._paths, self._labels = {}, {}
    for split, classes in listing.items():
      paths = [(path, self.class_names.index(c))
               for c in sorted(classes) for path in classes[c]]
      self._paths[split] = np.array([p for p, _ in paths])
      self._labels[split] = np.array([l for _, l in paths], np.int64)
    self.native_resolution = self._first_image_side()
    self._decoded = {}  # (split, size) -> (uint8 store, decoded mask)
    self._validated = {}  # split -> raw indices known to decode

  def _split_dirs(self):
    """{'train': 'train', 'test': 'test' or 'val'}; DataError if missing."""
    root = self.root
    expected = (f'expected {root}/train/<class>/<images> and '
                f'{root}/test/<class>/<images> (or {root}/val/<class>/...), '
                f'images being {", ".join(IMAGE_EXTENSIONS)} files')
    if not os.path.isdir(root):
      raise source_error(self._source,
                          f'folder {root} does not exist; {expected}')
    split_dirs = {'train': 'train'}
    for name in ('test', 'val'):
      if os.path.isdir(os.path.join(root, name)):
        split_dirs['test'] = name
        break
    if not os.path.isdir(os.path.join(root, 'train')):
      raise source_error(self._source, f'folder {root} has no train split '
                          f'folder {os.path.join(root, "train")}; {expected}')
    if 'test' not in split_dirs:
      raise source_error(self._source, f'folder {root} has neither a test '
                          f'split folder {os.path.join(root, "test")} nor '
                          f'{os.path.join(root, "val")}; {expected}')
    return split_dirs

  def _list(self, split_dir):
    """{class name: sorted image paths}; DataError for an empty layout."""
    classes = sorted(e.name for e in os.scandir(split_dir)
                     if e.is_dir() and not e.name.startswith('.'))
    if not classes:
      raise source_error(self._source, f'split folder {split_dir} has no '
                          'class folders; expected <split>/<class>/<image '
                          'files>')
    listing = {}
    for c in classes:
      class_dir = os.path.join(split_dir, c)
      paths = sorted(os.path.join(class_dir, e.name)
                     for e in os.scandir(class_dir)
                     if e.is_file() and e.name.lower().endswith(
                         IMAGE_EXTENSIONS))
      if not paths:
        raise source_error(self._source, f'class folder {class_dir} '
                            'contains no images; allowed image files: '
                            f'{", ".join(IMAGE_EXTENSIONS)}')
      listing[c] = paths
    return listing

  def _first_image_side(self):
    path = self._paths['train'][0]
    try:
      with Image.open(path) as im:
        return min(im.size)
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f'cannot read image file {path} (config.data.source='
                      f'{self._source!r}): {e}') from e

  def labels(self, split):
    return self._labels[split]

  def random_access(self, size, cache) -> bool:
    """Examples come in the order asked for, cached or streamed."""
    del size, cache
    return True

  def in_memory(self, split, size, cache) -> bool:
    """True when the split is (to be) decoded into memory: `cache` and it
    fits in half the host memory."""
    size = size or self.native_resolution
    return bool(cache) and fits_in_memory(
        len(self._paths[split]) * size * size * 3)

  def _read(self, path, size):
    """One file, fitted (None: undecodable)."""
    try:
      with Image.open(path) as image:
        return raw.fit_image(image, size)
    except Exception:  # pylint: disable=broad-except
      return None

  def _decode(self, split, indices, size):
    """Decodes the images `indices` of a raw split with Pillow; DataError
    names bad files. Returns uint8 [len(indices), size, size, 3]."""
    paths = self._paths[split][indices]
    images = np.empty((len(paths), size, size, 3), np.uint8)
    seen = np.zeros(len(paths), bool)
    with concurrent.futures.ThreadPoolExecutor(DECODE_THREADS) as pool:
      for i, image in enumerate(pool.map(lambda p: self._read(p, size),
                                         paths, chunksize=64)):
        if image is not None:
          images[i], seen[i] = image, True
    bad = paths[~seen]
    if len(bad):
      listed = ', '.join(bad[:5]) + (', ...' if len(bad) > 5 else '')
      raise DataError(f'cannot decode image file {bad[0]} (config.data.source'
                      f'={self._source!r}; {len(bad)} undecodable file(s): '
                      f'{listed})')
    return images

  def _cached(self, split, indices, size):
    """The split's uint8 store at `size`, with at least `indices` decoded.

    Only the images a run asks for are decoded (a 10% subset decodes 10% of
    the train split), each once per process.
    """
    key = (split, size)
    if key not in self._decoded:
      n = len(self._paths[split])
      self._decoded[key] = (np.empty((n, size, size, 3), np.uint8),
                            np.zeros(n, bool))
    store, have = self._decoded[key]
    missing = indices[~have[indices]]
    if len(missing):
      store[missing] = self._decode(split, missing, size)
      have[missing] = True
    return store

  def images(self, split, indices, size):
    size = size or self.native_resolution
    indices = np.asarray(indices, np.int64)
    return self._cached(split, indices, size)[indices]

  def examples(self, split, indices, size, cache):
    size = size or self.native_resolution
    indices = np.asarray(indices, np.int64)
    if self.in_memory(split, size, cache):
      return tf_support.in_memory_examples(
          self._cached(split, indices, size), self._labels[split], indices)
    unchecked = np.setdiff1d(indices, self._validated.get(split, []))
    if len(unchecked):  # validate once, then decode on the fly each epoch
      self._decode(split, unchecked, size)
      self._validated[split] = np.union1d(self._validated.get(split, []),
                                          unchecked)
    tf = tf_support.tensorflow()
    from wt_jax.data import images as image_ops  # pylint: disable=g-import-not-at-top

    def load(path):
      image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                 dtype=tf.uint8, expand_animations=False)
      return image_ops.fit(image, size)

    ds = tf.data.Dataset.from_tensor_slices(
        (self._paths[split][indices], self._labels[split][indices], indices))
    return ds.map(lambda p, l, i: {'image': load(p),
                                   'label': tf.cast(l, tf.int32),
                                   'index': tf.cast(i, tf.int64)},
                  num_parallel_calls=tf.data.AUTOTUNE)


_SOURCES = {}


def get_source(data_config):
  """The (memoized) source object of `config.data.source`."""
  key = (data_config.source, data_config.data_dir)
  if key not in _SOURCES:
    source = data_config.source
    if source == 'digits':
      _SOURCES[key] = DigitsSource()
    elif source.startswith(fields.FOLDER_PREFIX):
      _SOURCES[key] = FolderSource(source)
    else:
      tf_support.require('tensorflow_datasets',
                         f'config.data.source={source!r} (a TFDS name)')
      from wt_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
      _SOURCES[key] = tfds_source.TfdsSource(source, data_config.data_dir)
  return _SOURCES[key]


def clear_cache():
  """Forgets the memoized sources (and with them their decoded images)."""
  _SOURCES.clear()
