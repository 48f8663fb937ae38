"""TensorFlow and TFDS, for the input paths that use them, and only there.

wt_jax needs TensorFlow only for TFDS datasets and for streaming a folder
that is not cached in memory (`pipeline`'s tf.data path, `images`,
`tfds_source`); digits and cached folders are read with numpy and Pillow
(`arrays`). Those modules get TensorFlow through `tensorflow()`, which
imports it once with the GPUs hidden from it (so it never takes accelerator
memory from JAX) and without its eager Keras import; on a machine without
TensorFlow (a JAX-only GPU or TPU image) `require` turns the missing package
into a `DataError` (exit 2) naming what to install.
"""
import importlib
import importlib.util
import os
import sys

from wt_jax.errors import DataError

INSTALL = "pip install 'wt_jax[tfds]' (tensorflow-cpu and tensorflow-datasets)"


def available(module: str) -> bool:
  """True if `module` can be imported (a blocked or absent one cannot)."""
  if module in sys.modules:
    return sys.modules[module] is not None
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):
    return False


def require(module: str, needed_for: str) -> None:
  """DataError naming `module` and what needs it, if it cannot be imported."""
  if not available(module):
    raise DataError(f'{needed_for} needs the Python package {module!r}, which '
                    f'is not installed here; install it with {INSTALL} '
                    "(config.data.source='digits' and 'folder:/path' with "
                    "cache=True and augment='cifar' or 'none' need neither)")


def tensorflow():
  """`import tensorflow` (once), GPUs hidden, Keras not imported eagerly.

  TF imports Keras 3 (and scikit-learn through it) at import time, ~2 s of
  every run's start-up, though wt_jax uses only tf.data and tf.image. TF
  skips that import when asked for the legacy Keras (`TF_USE_LEGACY_KERAS`)
  and `tf_keras` is not installed. So, only in that case, and only if TF is
  not imported yet and the user has not set the variable, it is set for the
  import and removed right after: `tf.keras` still loads Keras 3 lazily on
  first use.
  """
  if 'tensorflow' in sys.modules:
    return sys.modules['tensorflow']
  require('tensorflow', 'this input path (TFDS or an uncached folder)')
  legacy = not ('TF_USE_LEGACY_KERAS' in os.environ or available('tf_keras'))
  if legacy:
    os.environ['TF_USE_LEGACY_KERAS'] = '1'
  try:
    tf = importlib.import_module('tensorflow')
  finally:
    if legacy:
      del os.environ['TF_USE_LEGACY_KERAS']
  tf.config.set_visible_devices([], 'GPU')
  return tf


def tfds():
  """`import tensorflow_datasets` (TensorFlow first, as `tensorflow()`)."""
  require('tensorflow_datasets', 'a TFDS source')
  tensorflow()
  return importlib.import_module('tensorflow_datasets')


def in_memory_examples(images, labels, indices):
  """tf.data {'image', 'label', 'index'} examples of `indices` of a decoded
  uint8 array (`images` holds the whole raw split)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return tensorflow().data.Dataset.from_tensor_slices({
      'image': images[indices],
      'label': labels[indices].astype(np.int32),
      'index': indices.astype(np.int64),
  })
