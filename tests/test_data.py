"""Tests of wt_jax.data: digits, TFDS (mocked and tiny), folders, errors."""
import collections
import hashlib
import io
import os

import chex
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from wt_jax import data
from wt_jax import defaults
from wt_jax.data import images


def _config(**overrides):
  config = defaults.get_config().data
  config.update(overrides)
  return config


def _batches(config, split, *, batch_size=64, seed=0, train=False, **kwargs):
  ds = data.make_dataset(config, split, batch_size=batch_size, seed=seed,
                         train=train, **kwargs)
  return list(data.as_numpy(ds))


def _hash(image):
  return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def _real(batches):
  """(hashes, labels) of the examples with mask 1."""
  hashes, labels = [], []
  for batch in batches:
    keep = batch['mask'] > 0
    hashes += [_hash(im) for im in batch['image'][keep]]
    labels += list(batch['label'][keep])
  return hashes, np.array(labels)


@pytest.fixture(autouse=True)
def _fresh_caches():
  data.clear_caches()
  yield
  data.clear_caches()


# ----------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------


def test_digits_info_shapes_and_dtypes():
  config = _config(source='digits', augment='cifar')
  info = data.dataset_info(config)
  assert info.num_classes == 10 and info.channels == 3
  assert info.resolution == 8
  assert info.class_names == tuple(str(i) for i in range(10))
  assert info.num_examples['train'] + info.num_examples['val'] == 1437
  assert info.num_examples['test'] == 360
  assert 130 <= info.num_examples['val'] <= 160  # val_fraction 0.1, per class

  batch = next(data.as_numpy(data.make_dataset(
      config, 'train', batch_size=32, seed=0, train=True)))
  chex.assert_shape(batch['image'], (32, 8, 8, 3))
  chex.assert_shape([batch['label'], batch['mask']], (32,))
  assert batch['image'].dtype == np.float32
  assert batch['label'].dtype == np.int32
  assert batch['mask'].dtype == np.float32
  np.testing.assert_array_equal(batch['mask'], 1.0)
  assert batch['label'].min() >= 0 and batch['label'].max() < 10
  assert np.isfinite(batch['image']).all()


def test_digits_split_counts_and_normalization():
  config = _config(source='digits', augment='none')
  info = data.dataset_info(config)
  for split in data.SPLITS:
    hashes, labels = _real(_batches(config, split, batch_size=100))
    assert len(hashes) == info.num_examples[split]
    assert len(set(hashes)) == len(hashes)  # every example exactly once
    assert labels.min() >= 0 and labels.max() < 10
  train = np.concatenate([b['image'] for b in _batches(config, 'train')])
  # Computed per-channel stats: normalized train images ~ zero mean, unit std.
  np.testing.assert_allclose(train.mean((0, 1, 2)), 0.0, atol=0.05)
  np.testing.assert_allclose(train.std((0, 1, 2)), 1.0, atol=0.05)


def test_val_is_disjoint_from_train_and_fixed_across_projections():
  config = _config(source='digits', augment='none')
  train, _ = _real(_batches(config, 'train'))
  val, val_labels = _real(_batches(config, 'val'))
  test, _ = _real(_batches(config, 'test'))
  assert not set(train) & set(val)
  assert not set(test) & (set(train) | set(val))
  assert len(set(train) | set(val)) == 1437
  # val is class balanced: 10% of each class.
  counts = np.bincount(val_labels, minlength=10)
  assert counts.min() >= 13 and counts.max() <= 19
  # val does not depend on sample_fraction.
  small = _config(source='digits', augment='none', sample_fraction=0.3)
  assert _real(_batches(small, 'val'))[0] == val


def test_sample_fraction_is_class_balanced_nested_and_deterministic():
  full = _config(source='digits', augment='none')
  _, full_labels = _real(_batches(full, 'train'))
  half = _config(source='digits', augment='none', sample_fraction=0.5)
  quarter = _config(source='digits', augment='none', sample_fraction=0.25)
  half_hashes, half_labels = _real(_batches(half, 'train'))
  quarter_hashes, quarter_labels = _real(_batches(quarter, 'train'))
  full_counts = np.bincount(full_labels, minlength=10)
  for labels, fraction in ((half_labels, 0.5), (quarter_labels, 0.25)):
    counts = np.bincount(labels, minlength=10)
    np.testing.assert_allclose(counts, fraction * full_counts, atol=0.51)
  assert data.dataset_info(quarter).num_examples['train'] == len(quarter_labels)
  assert set(quarter_hashes) <= set(half_hashes)  # nested subsets
  data.clear_caches()
  assert _real(_batches(quarter, 'train'))[0] == quarter_hashes


def test_same_seed_same_batches_different_seed_different_order():
  config = _config(source='digits', augment='cifar')

  def first(seed, count=3):
    it = data.as_numpy(data.make_dataset(config, 'train', batch_size=64,
                                         seed=seed, train=True))
    return [next(it) for _ in range(count)]

  a, b, c = first(0), first(0), first(1)
  for x, y in zip(a, b):
    chex.assert_trees_all_equal(x, y)  # same order and same augmentations
  assert not np.array_equal(a[0]['label'], c[0]['label'])


def test_train_reshuffles_each_epoch_and_covers_the_split():
  config = _config(source='digits', augment='none', sample_fraction=0.05)
  n = data.dataset_info(config).num_examples['train']
  epochs = _batches(config, 'train', batch_size=n, train=True, num_epochs=2)
  assert len(epochs) == 2
  first, second = (_real([e])[0] for e in epochs)
  assert sorted(first) == sorted(second) and len(set(first)) == n
  assert first != second


def test_augmentation_changes_images_but_keeps_shape():
  config = _config(source='digits', augment='cifar', sample_fraction=0.05)
  n = data.dataset_info(config).num_examples['train']
  aug = _batches(config, 'train', batch_size=n, train=True, num_epochs=1)[0]
  plain = _batches(_config(source='digits', augment='none',
                           sample_fraction=0.05), 'train', batch_size=n,
                   train=True, num_epochs=1)[0]
  chex.assert_equal_shape([aug['image'], plain['image']])
  assert set(_real([aug])[0]) != set(_real([plain])[0])


@pytest.mark.parametrize('augment', ['cifar', 'imagenet', 'none'])
def test_resolution_projection(augment):
  config = _config(source='digits', augment=augment, resolution=16)
  assert data.dataset_info(config).resolution == 16
  for train in (True, False):
    batch = next(data.as_numpy(data.make_dataset(
        config, 'train', batch_size=16, seed=0, train=train)))
    chex.assert_shape(batch['image'], (16, 16, 16, 3))
    assert np.isfinite(batch['image']).all()


@pytest.mark.parametrize('batch_size', [7, 64, 1000])
def test_eval_padding_mask_counts_every_example_once(batch_size):
  config = _config(source='digits')
  n = data.dataset_info(config).num_examples['test']
  batches = _batches(config, 'test', batch_size=batch_size)
  assert len(batches) == -(-n // batch_size)
  for batch in batches:
    chex.assert_shape(batch['image'], (batch_size, 8, 8, 3))
    chex.assert_shape(batch['mask'], (batch_size,))
  masks = np.concatenate([b['mask'] for b in batches])
  assert masks.sum() == n and set(np.unique(masks)) <= {0.0, 1.0}
  np.testing.assert_array_equal(masks[:n], 1.0)  # padding only at the end
  images = np.concatenate([b['image'] for b in batches])
  labels = np.concatenate([b['label'] for b in batches])
  np.testing.assert_allclose(images[n:], 0.0, atol=1e-5)
  np.testing.assert_array_equal(labels[n:], 0)


def test_finite_training_stream_pads_with_drop_remainder_false():
  config = _config(source='digits', sample_fraction=0.05)
  n = data.dataset_info(config).num_examples['train']
  batches = _batches(config, 'train', batch_size=n - 1, train=True,
                     num_epochs=1, drop_remainder=False)
  assert len(batches) == 2
  assert sum(b['mask'].sum() for b in batches) == n
  dropped = _batches(config, 'train', batch_size=n - 1, train=True,
                     num_epochs=1, drop_remainder=True)
  assert len(dropped) == 1 and dropped[0]['mask'].sum() == n - 1


# ----------------------------------------------------------------------------
# multi-host sharding
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('process_count', [2, 3])
def test_eval_shards_are_disjoint_and_cover_the_split(process_count):
  config = _config(source='digits')
  batch_size = 30
  whole, whole_labels = _real(_batches(config, 'test', batch_size=batch_size))
  shards = [_batches(config, 'test', batch_size=batch_size,
                     process_index=i, process_count=process_count)
            for i in range(process_count)]
  assert len({len(s) for s in shards}) == 1  # same number of batches
  for shard in shards:
    chex.assert_shape(shard[0]['image'],
                      (batch_size // process_count, 8, 8, 3))
  hashes = [_real(s)[0] for s in shards]
  union = collections.Counter(h for hs in hashes for h in hs)
  assert union == collections.Counter(whole)
  assert sum(len(h) for h in hashes) == len(whole) == 360
  labels = np.concatenate([_real(s)[1] for s in shards])
  np.testing.assert_array_equal(np.sort(labels), np.sort(whole_labels))


def test_train_shards_are_disjoint():
  config = _config(source='digits', augment='none')
  n = data.dataset_info(config).num_examples['train']
  shards = [_real(_batches(config, 'train', batch_size=64, train=True,
                           num_epochs=1, drop_remainder=False,
                           process_index=i, process_count=2))[0]
            for i in range(2)]
  assert not set(shards[0]) & set(shards[1])
  assert len(set(shards[0]) | set(shards[1])) == n


# ----------------------------------------------------------------------------
# TFDS (mocked: no download)
# ----------------------------------------------------------------------------


def test_mock_cifar10_pipeline():
  with tfds.testing.mock_data(num_examples=50):
    config = _config(source='cifar10', augment='cifar', resolution=16)
    info = data.dataset_info(config)
    assert info.num_classes == 10 and info.resolution == 16
    assert len(info.class_names) == 10  # mocked: names not loaded
    assert info.num_examples['test'] == 50
    assert info.num_examples['train'] + info.num_examples['val'] == 50
    batch = next(data.as_numpy(data.make_dataset(
        config, 'train', batch_size=8, seed=0, train=True)))
    chex.assert_shape(batch['image'], (8, 16, 16, 3))
    assert batch['image'].dtype == np.float32 and np.isfinite(
        batch['image']).all()
    batches = _batches(config, 'test', batch_size=16, process_index=1,
                       process_count=2)
    assert sum(b['mask'].sum() for b in batches) == 25
    train, _ = _real(_batches(config, 'train', batch_size=8))
    assert len(train) == info.num_examples['train']


def test_mock_imagenet2012_pipeline():
  with tfds.testing.mock_data(num_examples=12):
    config = _config(source='imagenet2012', augment='imagenet', resolution=64,
                     val_fraction=0.0)
    info = data.dataset_info(config)
    assert info.num_classes == 1000 and info.resolution == 64
    assert info.num_examples['train'] == 12
    for train, split in ((True, 'train'), (False, 'test')):
      batch = next(data.as_numpy(data.make_dataset(
          config, split, batch_size=4, seed=0, train=train)))
      chex.assert_shape(batch['image'], (4, 64, 64, 3))
      assert np.isfinite(batch['image']).all()
    with pytest.raises(data.DataError, match='val_fraction'):
      data.make_dataset(config, 'val', batch_size=4, seed=0, train=False)


class WtJaxTestImages(tfds.core.GeneratorBasedBuilder):
  """A tiny real TFDS dataset (3 shard files per split), built offline.

  Example i has constant pixel value i and label i % 4.
  """

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 3)),
            'label': tfds.features.ClassLabel(num_classes=4)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(0, 90),
            'test': self._generate_examples(100, 30)}

  def _generate_examples(self, start, count):
    for i in range(start, start + count):
      yield i, {'image': np.full((8, 8, 3), i, np.uint8), 'label': i % 4}


@pytest.fixture(scope='module')
def tiny_tfds_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  WtJaxTestImages(data_dir=data_dir).download_and_prepare(
      download_config=tfds.download.DownloadConfig(num_shards=3))
  return data_dir


@pytest.mark.parametrize('cache', [True, False])
def test_real_tfds_reader_with_shards_and_slices(tiny_tfds_dir, cache):
  config = _config(source='wt_jax_test_images', data_dir=tiny_tfds_dir,
                   augment='none', val_fraction=0.2, cache=cache)
  info = data.dataset_info(config)
  assert info.num_classes == 4 and info.resolution == 8
  assert info.num_examples == {'train': 72, 'val': 18, 'test': 30}
  # Raw examples of every process block (TFDS slices across shard files)
  # carry the right index and label.
  source = data.get_source(config)
  labels = source.labels('train')
  indices = data.split_indices(config)['train']
  seen = []
  for block in np.array_split(indices, 3):
    for ex in tfds.as_numpy(source.examples('train', block, 8, False)):
      assert ex['label'] == labels[ex['index']] == ex['image'][0, 0, 0] % 4
      seen.append(ex['index'])
    assert sorted(seen[-len(block):]) == list(block)
  # Public API: eval shards are disjoint and cover the split.
  for split in ('train', 'val', 'test'):
    whole, _ = _real(_batches(config, split, batch_size=12))
    assert len(set(whole)) == len(whole) == info.num_examples[split]
    shards = [_real(_batches(config, split, batch_size=12, process_index=i,
                             process_count=3))[0] for i in range(3)]
    assert sorted(h for s in shards for h in s) == sorted(whole)
  batch = next(data.as_numpy(data.make_dataset(
      config, 'train', batch_size=8, seed=0, train=True, process_index=1,
      process_count=2)))
  chex.assert_shape(batch['image'], (4, 8, 8, 3))


def _smooth_image(rng, height, width):
  """A photo-like image: upscaled noise (JPEG blocks are not all edges)."""
  small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3),
                       dtype=np.uint8)
  return np.asarray(Image.fromarray(small).resize((width, height),
                                                  Image.BICUBIC))


class WtJaxTestJpegs(tfds.core.GeneratorBasedBuilder):
  """A tiny real TFDS dataset of variable-size JPEGs (ImageNet's kind)."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3),
                                         encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(num_classes=2)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(0, 24),
            'test': self._generate_examples(100, 8)}

  def _generate_examples(self, start, count):
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
      h, w = (int(x) for x in rng.integers(40, 120, 2))
      yield i, {'image': _smooth_image(rng, h, w), 'label': i % 2}


@pytest.mark.parametrize('fmt', ['JPEG', 'PNG'])
def test_crop_from_encoded_bytes_is_the_crop_of_the_decoded_image(fmt):
  """The same window and flip; a JPEG's window may differ only along its
  edges (chroma upsampling), a PNG's not at all."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for i in range(12):
    h, w = (int(x) for x in rng.integers(40, 300, 2))
    buf = io.BytesIO()
    Image.fromarray(_smooth_image(rng, h, w)).save(buf, fmt, quality=90)
    encoded = tf.constant(buf.getvalue())
    key = tf.constant([7, i], tf.int64)
    fused = images.decode_random_resized_crop_flip(encoded, 32, key).numpy()
    whole = images.random_resized_crop_flip(
        tf.io.decode_image(encoded, channels=3, expand_animations=False), 32,
        key).numpy()
    chex.assert_shape(fused, (32, 32, 3))
    diff = np.abs(fused - whole)
    if fmt == 'PNG':
      np.testing.assert_array_equal(fused, whole)
    else:
      assert diff.mean() < 1.0 and np.mean(diff > 8) < 0.02, (
          i, diff.mean(), diff.max())


def test_imagenet_training_on_variable_size_tfds_jpegs_decodes_crops_only(
    tmp_path, monkeypatch):
  data_dir = str(tmp_path / 'tfds')
  WtJaxTestJpegs(data_dir=data_dir).download_and_prepare()
  fused_calls = []
  real = images.decode_random_resized_crop_flip
  monkeypatch.setattr(images, 'decode_random_resized_crop_flip',
                      lambda *a: fused_calls.append(1) or real(*a))
  batches = {}
  for cache in (False, True):  # uncached: encoded; cached: decoded whole
    config = _config(source='wt_jax_test_jpegs', data_dir=data_dir,
                     augment='imagenet', resolution=32, val_fraction=0.0,
                     cache=cache)
    data.clear_caches()
    before = len(fused_calls)
    batches[cache] = _batches(config, 'train', batch_size=8, seed=3,
                              train=True, num_epochs=2)
    assert (len(fused_calls) > before) == (not cache), cache
  assert len(batches[False]) == len(batches[True]) == 6
  for a, b in zip(batches[False], batches[True]):
    np.testing.assert_array_equal(a['label'], b['label'])
    # Normalized images: a pixel's edge difference is a few 1/255 / std.
    assert np.abs(a['image'] - b['image']).mean() < 0.03


# ----------------------------------------------------------------------------
# image folders
# ----------------------------------------------------------------------------


def _write_images(directory, count, size=12, ext='png', seed=0):
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(count):
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(os.path.join(directory, f'{i:03d}.{ext}'))


def _make_folder(root, test_name='test', classes=('cat', 'dog'), n_train=10,
                 n_test=3):
  for k, c in enumerate(classes):
    _write_images(os.path.join(root, 'train', c), n_train, seed=k)
    _write_images(os.path.join(root, test_name, c), n_test, ext='jpg',
                  seed=100 + k)
  return f'folder:{root}'


@pytest.mark.parametrize('cache', [True, False])
@pytest.mark.parametrize('test_name', ['test', 'val'])
def test_folder_source_reads(tmp_path, test_name, cache):
  source = _make_folder(str(tmp_path), test_name=test_name)
  config = _config(source=source, augment='cifar', val_fraction=0.2,
                   cache=cache)
  info = data.dataset_info(config)
  assert info.class_names == ('cat', 'dog') and info.num_classes == 2
  assert info.resolution == 12
  assert info.num_examples == {'train': 16, 'val': 4, 'test': 6}
  batch = next(data.as_numpy(data.make_dataset(
      config, 'train', batch_size=8, seed=0, train=True)))
  chex.assert_shape(batch['image'], (8, 12, 12, 3))
  hashes, labels = _real(_batches(config, 'test', batch_size=4))
  assert len(set(hashes)) == 6
  np.testing.assert_array_equal(np.bincount(labels), [3, 3])


def test_folder_missing_root(tmp_path):
  missing = str(tmp_path / 'nowhere')
  with pytest.raises(data.DataError, match='nowhere') as e:
    data.validate(_config(source=f'folder:{missing}'))
  assert 'config.data.source' in str(e.value)


def test_folder_missing_train_split(tmp_path):
  _write_images(str(tmp_path / 'test' / 'cat'), 2)
  with pytest.raises(data.DataError, match='train') as e:
    data.dataset_info(_config(source=f'folder:{tmp_path}'))
  assert str(tmp_path) in str(e.value)


def test_folder_missing_test_split(tmp_path):
  _write_images(str(tmp_path / 'train' / 'cat'), 2)
  with pytest.raises(data.DataError, match='test') as e:
    data.dataset_info(_config(source=f'folder:{tmp_path}'))
  assert str(tmp_path / 'val') in str(e.value)


def test_folder_empty_class(tmp_path):
  source = _make_folder(str(tmp_path))
  empty = tmp_path / 'train' / 'empty_class'
  empty.mkdir()
  (empty / 'notes.txt').write_text('not an image')
  with pytest.raises(data.DataError, match='contains no images') as e:
    data.dataset_info(_config(source=source))
  assert str(empty) in str(e.value)


@pytest.mark.parametrize('cache', [True, False])
def test_folder_corrupted_image(tmp_path, cache):
  source = _make_folder(str(tmp_path))
  bad = tmp_path / 'train' / 'dog' / 'zzz_bad.jpg'
  bad.write_bytes(np.random.default_rng(0).bytes(300))
  config = _config(source=source, cache=cache)
  with pytest.raises(data.DataError, match='cannot decode') as e:
    data.make_dataset(config, 'train', batch_size=4, seed=0, train=True)
  assert str(bad) in str(e.value)


# ----------------------------------------------------------------------------
# bad config fields
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('field,value', [
    ('sample_fraction', 0.0),
    ('sample_fraction', 1.5),
    ('resolution', -1),
    ('augment', 'autoaugment'),
    ('val_fraction', 1.0),
    ('source', 'no_such_dataset_xyz'),
    ('shuffle_buffer', 0),
])
def test_bad_config_fields(field, value):
  config = _config(**{field: value})
  with pytest.raises(data.DataError) as e:
    data.validate(config)
  assert f'config.data.{field}={value!r}' in str(e.value)
  with pytest.raises(ValueError):
    data.dataset_info(config)


def test_bad_make_dataset_arguments():
  config = _config(source='digits')
  with pytest.raises(data.DataError, match='split'):
    data.make_dataset(config, 'validation', batch_size=8, seed=0, train=False)
  with pytest.raises(data.DataError, match='batch_size'):
    data.make_dataset(config, 'train', batch_size=9, seed=0, train=True,
                      process_index=0, process_count=2)
  with pytest.raises(data.DataError, match='process_index'):
    data.make_dataset(config, 'train', batch_size=8, seed=0, train=True,
                      process_index=2, process_count=2)


@pytest.mark.parametrize('cache', [True, False])
def test_class_sorted_folder_trains_on_mixed_batches(tmp_path, cache):
  """Folder splits are stored class by class; with a shuffle buffer far
  smaller than a class, batches must still mix the classes (a full seeded
  permutation first), or a net trains on one class at a time."""
  root = str(tmp_path)
  classes = ('a', 'b', 'c', 'd')
  for k, c in enumerate(classes):
    _write_images(os.path.join(root, 'train', c), 30, size=8, seed=k)
    _write_images(os.path.join(root, 'test', c), 2, size=8, seed=50 + k)
  config = _config(source=f'folder:{root}', augment='none', val_fraction=0.0,
                   shuffle_buffer=4, cache=cache)
  for seed in (0, 1):
    batch = next(data.as_numpy(data.make_dataset(
        config, 'train', batch_size=16, seed=seed, train=True)))
    counts = np.bincount(batch['label'], minlength=4)
    assert (counts > 0).sum() >= 3 and counts.max() <= 10, counts


def test_unprepared_imagenet_names_the_data_dir_and_the_manual_download(
    tmp_path):
  config = _config(source='imagenet2012', data_dir=str(tmp_path))
  with pytest.raises(data.DataError) as e:
    data.dataset_info(config)
  message = str(e.value)
  assert "config.data.source='imagenet2012'" in message
  assert str(tmp_path) in message and 'TFDS_DATA_DIR' in message
  assert 'ILSVRC2012_img_train.tar' in message and '--manual_dir' in message


def test_tensorflow_is_imported_without_keras_and_keras_still_works():
  """wt_jax.data skips TF's eager Keras import (start-up time) and leaves
  the environment as it was: tf.keras still loads on first use."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ('import os, sys\n'
          'import wt_jax.data\n'
          'print("keras.src.optimizers" in sys.modules,'
          ' "TF_USE_LEGACY_KERAS" in os.environ)\n'
          'import tensorflow as tf\n'
          'print(tf.keras.layers.Dense.__module__.startswith("keras"))\n')
  env = {k: v for k, v in os.environ.items() if k != 'TF_USE_LEGACY_KERAS'}
  out = subprocess.run([sys.executable, '-c', code], env=env, check=True,
                       capture_output=True, text=True).stdout.split()
  assert out == ['False', 'False', 'True']
