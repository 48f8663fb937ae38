"""What the raw sources share: their error, the memory test, in-memory
examples."""
import os

import numpy as np
# TensorFlow is imported only inside wt_jax/data/ (see __init__.py).
import tensorflow as tf

from wt_jax.errors import DataError


def source_error(source, problem):
  """A DataError about the data behind `config.data.source`."""
  return DataError(f'config.data.source={source!r}: {problem}')


def fits_in_memory(num_bytes):
  """True if `num_bytes` fits in half the host memory."""
  try:
    total = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return True
  return num_bytes <= total // 2


def in_memory_examples(images, labels, indices):
  """{'image', 'label', 'index'} examples of `indices` of a decoded array."""
  return tf.data.Dataset.from_tensor_slices({
      'image': images[indices],
      'label': labels[indices].astype(np.int32),
      'index': indices.astype(np.int64),
  })
