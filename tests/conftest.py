"""Test set-up: 8 simulated CPU devices, the fast XLA:CPU convolution path
and one compilation cache per run.

XLA_FLAGS must be set before jax is imported anywhere, so this runs first.
"""
import os

_FLAGS = ('--xla_force_host_platform_device_count=8',
          '--xla_cpu_experimental_ynn_fusion_type=')
os.environ['XLA_FLAGS'] = ' '.join(
    [os.environ.get('XLA_FLAGS', '')] +
    [f for f in _FLAGS if f.split('=')[0] not in os.environ.get('XLA_FLAGS', '')]
).strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

# One persistent JAX compilation cache for the whole test run, shared by the
# xdist workers and the CLI subprocesses the tests start (they inherit the
# environment): most tests compile the same tiny programs, so each is
# compiled once per run. A fresh directory per run, removed at its end
# (a JAX_COMPILATION_CACHE_DIR set by the user is used as it is and kept).
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  import tempfile  # pylint: disable=g-import-not-at-top
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(
      prefix='wt_jax_test_jit_cache_')
  os.environ['WT_JAX_TEST_CACHE_OWNER'] = str(os.getpid())
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')


def pytest_unconfigure(config):
  del config
  if os.environ.get('WT_JAX_TEST_CACHE_OWNER') == str(os.getpid()):
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)


def pytest_collection_modifyitems(config, items):
  """The long end-to-end tests (marked `slow`) first, in their order: spread
  over xdist workers, none of them starts late and runs alone at the end."""
  del config
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)
