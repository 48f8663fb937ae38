"""What the raw sources share: their error, the memory test, Pillow's fit.

`fit_image` / `fit_array` give every in-memory image the fed resolution
once, with Pillow (no TensorFlow): shorter side to `size` (bilinear,
antialiased when shrinking), then the center size x size crop; an image
already size x size passes unchanged.
"""
import os

import numpy as np
from PIL import Image

from wt_jax.errors import DataError


def source_error(source, problem):
  """A DataError about the data behind `config.data.source`."""
  return DataError(f'config.data.source={source!r}: {problem}')


def host_memory_bytes():
  """This host's physical memory in bytes (None if unknown)."""
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return None


def fits_in_memory(num_bytes):
  """True if `num_bytes` fits in half the host memory."""
  total = host_memory_bytes()
  return total is None or num_bytes <= total // 2


def fit_image(image: Image.Image, size: int) -> np.ndarray:
  """An RGB Pillow image fitted to uint8 [size, size, 3] (module doc)."""
  image = image.convert('RGB')
  w, h = image.size
  if (w, h) != (size, size):
    scale = size / min(w, h)
    new_w = max(size, int(round(w * scale)))
    new_h = max(size, int(round(h * scale)))
    image = image.resize((new_w, new_h), Image.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
  return np.asarray(image, np.uint8)


def fit_array(images: np.ndarray, size: int) -> np.ndarray:
  """`fit_image` of every image of a uint8 [N, H, W, 3] array."""
  if images.shape[1:3] == (size, size):
    return images
  return np.stack([fit_image(Image.fromarray(x), size) for x in images])
