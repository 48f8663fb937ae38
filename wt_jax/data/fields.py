"""The fields of `config.data`, what each allows, and `validate`.

| field | allowed |
|---|---|
| `source` | 'digits', 'folder:/path' (an existing folder) or a TFDS name |
| `data_dir` | a path string ('' = the TFDS default / $TFDS_DATA_DIR) |
| `resolution` | an integer >= 0 (0 = the source's native resolution) |
| `sample_fraction` | a number in (0, 1] |
| `val_fraction` | a number in [0, 1) |
| `split_seed` | an integer >= 0 |
| `augment` | one of `AUGMENTS` |
| `cache` | True or False |
| `shuffle_buffer` | an integer >= 1 (the tf.data path's shuffle buffer) |
| `placement` | 'auto', 'host' or 'device' (`placement`) |
| `device_memory_fraction` | a number in (0, 1]: the share of one device's memory a split placed there may take |

What this machine lacks is refused here too, before any work: a TFDS name
without `tensorflow_datasets`, and the paths that need TensorFlow (the
'imagenet' augmentation, an uncached folder) without `tensorflow`.

Messages follow `wt_jax.util.validation`'s one format, as `DataError`:
`config.data.val_fraction=1.5 is invalid; allowed: a number in [0, 1)`.
`require_val_split` is the one rule a width optimizer adds: it decides on
the held-out val split, never on test, so `val_fraction` must be > 0.
Defaults live in wt_jax/defaults.py.
"""
import os

from wt_jax.data import tf_support
from wt_jax.errors import DataError
from wt_jax.util import validation

AUGMENTS = ('cifar', 'imagenet', 'none')
PLACEMENTS = ('auto', 'host', 'device')
FOLDER_PREFIX = 'folder:'

_SOURCES_ALLOWED = "'digits', 'folder:/path' or a TFDS dataset name"


def source_name(source: str) -> str:
  """The dataset name of a source: 'cifar10' of 'cifar10:3.0.2' or 'a/b'."""
  return source.split(':')[0].split('/')[0]


def validate(data_config) -> None:
  """Raises DataError for a bad `config.data` field.

  No I/O except checking that a 'folder:' source directory exists (and, for
  a TFDS name, that TFDS knows it or `data_dir` has it); the folder's layout
  and images are checked when it is first read.
  """
  checks = validation.Fields(data_config, 'data', error=DataError)
  checks.string('data_dir', "a path string ('' = the TFDS default)")
  _check_source(checks)
  checks.number('resolution', 0, integer=True,
                note='0 = the native resolution')
  checks.number('sample_fraction', 0, 1, lo_open=True)
  checks.number('val_fraction', 0, 1, hi_open=True)
  checks.choice('augment', AUGMENTS)
  checks.boolean('cache')
  checks.number('shuffle_buffer', 1, integer=True)
  checks.number('split_seed', 0, integer=True)
  checks.choice('placement', PLACEMENTS)
  checks.number('device_memory_fraction', 0, 1, lo_open=True)
  _check_tensorflow(data_config)


def _check_tensorflow(data_config) -> None:
  """DataError when this config needs TensorFlow and it is not installed."""
  if tf_support.available('tensorflow'):
    return
  if data_config.augment == 'imagenet':
    tf_support.require('tensorflow', "config.data.augment='imagenet' (its "
                       'random resized crop runs in tf.data)')
  if (str(data_config.source).startswith(FOLDER_PREFIX) and
      not data_config.cache):
    tf_support.require('tensorflow', 'config.data.cache=False with a folder '
                       'source (streamed through tf.data; cache=True reads '
                       'it with Pillow)')


def require_val_split(data_config, user: str) -> None:
  """Raises DataError unless `data_config.val_fraction` > 0: a width
  optimizer decides on the held-out val split, never on test. `user` names
  what needs the split ('optimizer=dmcp', 'stage optimize / ...')."""
  value = data_config.val_fraction
  if not (validation.is_number(value) and value > 0):
    validation.fail('config.data.val_fraction', value,
                    f'a number in (0, 1) with {user} (a width optimizer '
                    'decides on the held-out val split, never on test)',
                    DataError)


def _check_source(checks: validation.Fields) -> None:
  """The source names digits, an existing folder or a TFDS dataset."""
  source = checks.string('source', _SOURCES_ALLOWED)
  if not source:
    checks.fail('source', _SOURCES_ALLOWED)
  if source.startswith(FOLDER_PREFIX):
    root = source[len(FOLDER_PREFIX):]
    if not root or not os.path.isdir(os.path.expanduser(root)):
      checks.fail('source', 'an existing directory with train/<class>/* and '
                  'test/<class>/* (or val/<class>/*) images; folder '
                  f'{root!r} does not exist')
  elif source != 'digits':
    tf_support.require('tensorflow_datasets',
                       f'config.data.source={source!r} (a TFDS name)')
    name = source_name(source)
    data_dir = checks.value('data_dir')
    prepared = data_dir and os.path.isdir(os.path.join(data_dir, name))
    if not prepared and name not in tf_support.tfds().list_builders(
        with_community_datasets=False):
      checks.fail('source', f"{_SOURCES_ALLOWED} (e.g. 'cifar10', "
                  "'imagenet2012', 'imagenette'; see tfds.list_builders())")
