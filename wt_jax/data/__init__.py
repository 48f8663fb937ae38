"""Input pipelines: raw sources, splits and batches as numpy.

`config.data` names a source and how to cut and feed it; `dataset_info`
says what that gives, `make_dataset` yields this process's batches:

    info = data.dataset_info(config.data)   # classes, resolution, counts
    ds = data.make_dataset(config.data, 'train', batch_size=128, seed=0,
                           train=True)
    for batch in data.as_numpy(ds): ...      # {'image', 'label', 'mask'}

Modules, one concept each (each imports only those listed above it):

* `tf_support`: TensorFlow and TFDS, imported only by the paths that use
  them (GPUs hidden from TF), and the error when they are missing;
* `raw`: what the sources share (errors, memory, Pillow's fit);
* `fields`: the fields of `config.data`, and `validate`;
* `sources`: the raw sources ('digits', 'folder:/path', TFDS), `get_source`;
  `tfds_source` (TensorFlow): the TFDS one;
* `splits`: which raw examples form 'train', 'val' and 'test',
  `dataset_info`, and the per-channel statistics;
* `arrays`: batches of in-memory splits with numpy (no TensorFlow);
* `images`, `tf_pipeline` (TensorFlow): the tf.data path, for TFDS data,
  uncached folders and the 'imagenet' augmentation;
* `pipeline`: `make_dataset` (either path) and `as_numpy`;
* `placement`: `config.data.placement`, a training split held on the
  devices and gathered, cropped and flipped inside the train step.

Digits and cached folders need neither TensorFlow nor TFDS: nothing here
imports them until a path that needs them runs (this face is lazy too).

Everything is deterministic: the splits depend only on the data and
`config.data.split_seed`, the training order and augmentations only on the
`seed` of `make_dataset`. Decoded sources, splits and statistics are memoized
per process (`clear_caches()` forgets them).

Bad data or config fields raise `DataError` (a `ValueError`) naming the
field, the value and what is allowed.
"""
from wt_jax.util import lazy

_EXPORTS = {
    'AUGMENTS': 'wt_jax.data.fields',
    'DataError': 'wt_jax.errors',
    'DatasetInfo': 'wt_jax.data.splits',
    'KNOWN_STATS': 'wt_jax.data.splits',
    'SPLITS': 'wt_jax.data.splits',
    'as_numpy': 'wt_jax.data.pipeline',
    'clear_caches': 'wt_jax.data.splits',
    'dataset_info': 'wt_jax.data.splits',
    'get_source': 'wt_jax.data.sources',
    'make_dataset': 'wt_jax.data.pipeline',
    'preload': 'wt_jax.data.pipeline',
    'require_val_split': 'wt_jax.data.fields',
    'split_indices': 'wt_jax.data.splits',
    'validate': 'wt_jax.data.fields',
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy.face(__name__, _EXPORTS, globals())
