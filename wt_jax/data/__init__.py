"""Input pipelines: raw sources, splits and tf.data batches as numpy.

`config.data` names a source and how to cut and feed it; `dataset_info`
says what that gives, `make_dataset` yields this process's batches:

    info = data.dataset_info(config.data)   # classes, resolution, counts
    ds = data.make_dataset(config.data, 'train', batch_size=128, seed=0,
                           train=True)
    for batch in data.as_numpy(ds): ...      # {'image', 'label', 'mask'}

Modules, one concept each (each imports only those listed above it):

* `fields`: the fields of `config.data`, and `validate`;
* `images`: the TF image ops (fit, crops, flips, resize);
* `sources`: the raw sources ('digits', 'folder:/path', TFDS), `get_source`;
* `splits`: which raw examples form 'train', 'val' and 'test',
  `dataset_info`, and the per-channel statistics;
* `pipeline`: `make_dataset` (shuffle, augment, pad, batch, normalize) and
  `as_numpy`.

This is the only wt_jax package that imports TensorFlow. GPUs are hidden from
TF right after the import, here, before any submodule runs, so TF never takes
accelerator memory from JAX.

Everything is deterministic: the splits depend only on the data and
`config.data.split_seed`, the training order and augmentations only on the
`seed` of `make_dataset`. Decoded sources, splits and statistics are memoized
per process (`clear_caches()` forgets them).

Bad data or config fields raise `DataError` (a `ValueError`) naming the
field, the value and what is allowed.
"""
import importlib.util
import os
import sys


def _import_tensorflow_without_keras():
  """`import tensorflow`, skipping the Keras import TF does eagerly.

  TF imports Keras 3 (and scikit-learn through it) at import time, ~2 s of
  every run's start-up, though wt_jax uses only tf.data and tf.image. TF
  skips that import when asked for the legacy Keras (`TF_USE_LEGACY_KERAS`)
  and `tf_keras` is not installed. So, only in that case, and only if TF is
  not imported yet and the user has not set the variable, it is set for the
  import and removed right after: `tf.keras` still loads Keras 3 lazily on
  first use.
  """
  if ('tensorflow' in sys.modules or 'TF_USE_LEGACY_KERAS' in os.environ or
      importlib.util.find_spec('tf_keras') is not None):
    return importlib.import_module('tensorflow')
  os.environ['TF_USE_LEGACY_KERAS'] = '1'
  try:
    return importlib.import_module('tensorflow')
  finally:
    del os.environ['TF_USE_LEGACY_KERAS']


# TensorFlow is imported only inside wt_jax/data/. Hide the GPUs from it at
# once, before any submodule (each imports TF too) can touch a device.
tf = _import_tensorflow_without_keras()
tf.config.set_visible_devices([], 'GPU')

# pylint: disable=g-import-not-at-top,g-bad-import-order
from wt_jax.data import fields
from wt_jax.data import images
from wt_jax.data import pipeline
from wt_jax.data import sources
from wt_jax.data import splits
from wt_jax.data.fields import AUGMENTS
from wt_jax.data.fields import require_val_split
from wt_jax.data.fields import validate
from wt_jax.data.pipeline import as_numpy
from wt_jax.data.pipeline import make_dataset
from wt_jax.data.pipeline import preload
from wt_jax.data.sources import get_source
from wt_jax.data.splits import clear_caches
from wt_jax.data.splits import dataset_info
from wt_jax.data.splits import DatasetInfo
from wt_jax.data.splits import KNOWN_STATS
from wt_jax.data.splits import split_indices
from wt_jax.data.splits import SPLITS
from wt_jax.errors import DataError
# pylint: enable=g-import-not-at-top,g-bad-import-order

__all__ = [
    'AUGMENTS',
    'DataError',
    'DatasetInfo',
    'KNOWN_STATS',
    'SPLITS',
    'as_numpy',
    'clear_caches',
    'dataset_info',
    'get_source',
    'make_dataset',
    'preload',
    'require_val_split',
    'split_indices',
    'validate',
]
