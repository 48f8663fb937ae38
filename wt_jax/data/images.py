"""TensorFlow image ops of the tf.data input path (graph mode, uint8 in).

* `fit`: shorter side to `size`, center crop size x size. Every image is
  fitted to the fed resolution once, before caching (only variable-size TFDS
  images under 'imagenet' augmentation are kept whole for the random resized
  crop). Images held in memory as numpy were fitted by Pillow instead
  (`raw.fit_image`).
* `cifar_crop_flip` ('cifar' train): reflect-pad by round(size / 8) pixels
  (4 at 32) + random size x size crop + horizontal flip.
* `random_resized_crop_flip` ('imagenet' train): inception-style random
  resized crop (area 8%..100%, aspect 3/4..4/3) + horizontal flip;
  `decode_random_resized_crop_flip` does it from the encoded bytes,
  decoding only the crop of a JPEG (variable-size TFDS images, uncached).
* `center_crop` ('imagenet' eval): center crop of 87.5% of the shorter side,
  resized (= resize to size / 0.875, center crop).

Random ops are stateless, keyed on the `key` they are given. Resizing is
bilinear in float32 0..255, antialiased except for the train crop.
"""
from wt_jax.data import tf_support

tf = tf_support.tensorflow()

EVAL_CROP_FRACTION = 0.875  # 'imagenet' eval: center crop of the shorter side


def to_rgb(image):
  """Repeats a gray channel to 3 channels; 3-channel images pass unchanged."""
  if image.shape[-1] == 1:
    image = tf.image.grayscale_to_rgb(image)
  return image


def resize(image, height, width):
  """Bilinear (antialiased) resize; float32 output in 0..255."""
  return tf.image.resize(tf.cast(image, tf.float32), [height, width],
                         method='bilinear', antialias=True)


def fit(image, size):
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
    resized = resize(image, new_h, new_w)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    cropped = resized[top:top + size, left:left + size]
    return tf.cast(tf.round(tf.clip_by_value(cropped, 0, 255)), tf.uint8)

  fitted = tf.cond(tf.logical_and(h == size, w == size),
                   lambda: tf.cast(image, tf.uint8), resize_and_crop)
  return tf.ensure_shape(fitted, [size, size, 3])


def cifar_crop_flip(image, size, key):
  """Reflect-pad by round(size / 8), random size x size crop, random flip."""
  pad = max(1, round(size / 8))
  image = tf.pad(fit(image, size), [[pad, pad], [pad, pad], [0, 0]],
                 mode='REFLECT')
  crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key))
  offset = tf.random.stateless_uniform([2], seed=crop_key, minval=0,
                                       maxval=2 * pad + 1, dtype=tf.int32)
  image = tf.slice(image, [offset[0], offset[1], 0], [size, size, 3])
  return tf.image.stateless_random_flip_left_right(image, seed=flip_key)


def crop_window(shape, key):
  """(begin, size) of an inception-style crop (area 8..100%, aspect
  3/4..4/3) of an image of `shape`, drawn from `key`."""
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=key, min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.08, 1.0), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  return begin, crop_size


def _resize_flip(crop, size, key):
  """The crop to size x size (plain bilinear: a crop is rarely much larger
  than `size`, and antialiasing would double the pipeline's cost) + a
  random horizontal flip; float32 0..255."""
  image = tf.image.resize(tf.cast(crop, tf.float32), [size, size],
                          method='bilinear')
  return tf.image.stateless_random_flip_left_right(image, seed=key)


def random_resized_crop_flip(image, size, key):
  """Inception-style crop (area 8..100%, aspect 3/4..4/3) + random flip."""
  crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key))
  begin, crop_size = crop_window(tf.shape(image), crop_key)
  return _resize_flip(tf.slice(image, begin, crop_size), size, flip_key)


def decode_random_resized_crop_flip(encoded, size, key):
  """`random_resized_crop_flip` of an encoded image (string bytes): the same
  crop window and flip, but a JPEG decodes only the window's blocks
  (`tf.image.decode_and_crop_jpeg`, ~1.8x the images per core of a whole
  decode at ImageNet sizes: bench/input_pipeline.py); other formats are
  decoded whole, then cropped. Pixels along the window's edges can differ
  from a whole decode's by the JPEG's chroma upsampling."""
  crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key))

  def jpeg():
    begin, crop_size = crop_window(tf.image.extract_jpeg_shape(encoded),
                                    crop_key)
    window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

  def other():
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    begin, crop_size = crop_window(tf.shape(image), crop_key)
    return tf.slice(image, begin, crop_size)

  crop = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  return _resize_flip(crop, size, flip_key)


def center_crop(image, size):
  """Center crop of EVAL_CROP_FRACTION of the shorter side, resized."""
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  side = tf.cast(EVAL_CROP_FRACTION * tf.cast(tf.minimum(h, w), tf.float32),
                 tf.int32)
  side = tf.maximum(side, 1)
  top, left = (h - side) // 2, (w - side) // 2
  return resize(image[top:top + side, left:left + side], size, size)
