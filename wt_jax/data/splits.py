"""Which raw examples form 'train', 'val' and 'test', and their statistics.

The three splits are defined by indices into the raw splits of a source
(deterministic; they depend only on the data and `config.data.split_seed`,
never on the training seed):

1. 'val' is carved from the *full* raw train split first: from each class,
   `round(val_fraction * n_class)` examples (at least 1 when
   val_fraction > 0 and the class has 2+ examples; never the whole class).
   It is therefore the same for every sample_fraction and resolution.
2. 'train' is the rest of the raw train split, subsampled per class to
   `max(1, round(sample_fraction * n_rest_class))` examples. The subsets are
   nested: a smaller fraction picks a prefix of the same per-class random
   order.
3. 'test' is the whole raw test split; it is never used for decisions.

`resolution` > 0 is the fed image side; 0 feeds the source's native one.

Images are normalized per channel with the known mean/std (`KNOWN_STATS`) of
cifar10 and ImageNet(-subsets); for other sources the mean/std are computed
(deterministically) from up to `STATS_EXAMPLES` evenly spaced examples of the
raw train split minus 'val', at the fed resolution.

Splits and statistics are memoized per process (`clear_caches()` forgets them
and the memoized sources).
"""
import dataclasses
import math

import numpy as np

from wt_jax.data import fields
from wt_jax.data import sources

SPLITS = ('train', 'val', 'test')
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


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  num_classes: int
  resolution: int  # after projection: the image side fed to the model
  channels: int  # always 3
  num_examples: dict  # {'train': n, 'val': n, 'test': n} after projection
  class_names: tuple


def _round(x):
  return int(math.floor(x + 0.5))


_SPLIT_INDICES = {}


def split_indices(data_config) -> dict:
  """Sorted raw indices {'train', 'val', 'test', 'pool'} (see module doc).

  'pool' is the raw train split minus 'val' (before sample_fraction).
  """
  dc = data_config
  key = (dc.source, dc.data_dir, float(dc.val_fraction),
         float(dc.sample_fraction), int(dc.split_seed))
  if key not in _SPLIT_INDICES:
    source = sources.get_source(dc)
    labels = source.labels('train')
    num_classes = len(source.class_names)
    by_class = np.split(np.argsort(labels, kind='stable'),
                        np.cumsum(np.bincount(labels, minlength=num_classes)))
    rng = np.random.default_rng(int(dc.split_seed))
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
    _SPLIT_INDICES[key] = {
        'train': np.sort(np.concatenate(train)),
        'val': np.sort(np.concatenate(val)),
        'test': np.arange(len(source.labels('test'))),
        'pool': np.sort(np.concatenate(pool)),
    }
  return _SPLIT_INDICES[key]


def fed_resolution(data_config, source) -> int:
  """The image side fed to the model: `resolution`, or the native one."""
  return data_config.resolution or source.native_resolution


def dataset_info(data_config) -> DatasetInfo:
  """Classes, fed resolution and per-split example counts after projection."""
  fields.validate(data_config)
  source = sources.get_source(data_config)
  if len(source.class_names) < 2:
    raise sources.source_error(
        data_config.source, f'{len(source.class_names)} class found '
        f'({", ".join(map(repr, source.class_names))}); allowed: a '
        'classification source with at least two classes')
  indices = split_indices(data_config)
  return DatasetInfo(
      num_classes=len(source.class_names),
      resolution=fed_resolution(data_config, source),
      channels=3,
      num_examples={s: len(indices[s]) for s in SPLITS},
      class_names=source.class_names)


_STATS = {}


def channel_stats(data_config, source, resolution):
  """Per-channel (mean, std) in [0, 1] units: known or computed."""
  name = fields.source_name(data_config.source)
  if name in KNOWN_STATS:
    return KNOWN_STATS[name]
  key = (data_config.source, data_config.data_dir,
         float(data_config.val_fraction), int(data_config.split_seed),
         resolution)
  if key not in _STATS:
    pool = split_indices(data_config)['pool']
    count = min(len(pool), STATS_EXAMPLES)
    picks = np.unique(np.linspace(0, len(pool) - 1, count).astype(int))
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for chunk in np.array_split(pool[picks], -(-len(picks) // 512)):
      pixels = source.images('train', chunk, resolution).reshape(-1, 3)
      pixels = pixels.astype(np.float64) / 255.0
      total += pixels.sum(0)
      total_sq += (pixels**2).sum(0)
      count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-6))
    _STATS[key] = (tuple(mean), tuple(std))
  return _STATS[key]


def clear_caches():
  """Forgets memoized sources, splits, decoded images and statistics.

  For tests (e.g. around `tfds.testing.mock_data`) or after a folder source
  changed on disk within the same process.
  """
  sources.clear_cache()
  for cache in (_SPLIT_INDICES, _STATS):
    cache.clear()
