"""wt_jax: width transfer for JAX/Flax CNNs.

Importing wt_jax sets one XLA:CPU default before jax is first imported:
`--xla_cpu_experimental_ynn_fusion_type=` (empty: YNNPACK convolution
fusions off). jaxlib 0.10's default YNN fusions were measured slow in the
backward pass on this project's CPU (1.6-2.1x faster ResNet train steps
without them, as reported in the issue tracker); bench/train_throughput.py
re-measures it side by side every run, and on this project's shared CPU
its runs found 0.96-1.10x in wall time and 0.90-0.95x in CPU time
(results/bench.md): treat the default as unproven, not as a speed-up. The flag is merged into any XLA_FLAGS you
set; to keep XLA's default, set the flag yourself, e.g.
`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=default`, or set
WT_JAX_KEEP_XLA_FLAGS=1. It only affects XLA's CPU backend.
"""
import os as _os
import sys as _sys

__version__ = '0.1.0'

_CPU_FLAG = '--xla_cpu_experimental_ynn_fusion_type'


def _apply_cpu_default() -> bool:
  """Adds the CPU flag to XLA_FLAGS unless the user chose otherwise."""
  flags = _os.environ.get('XLA_FLAGS', '')
  if _os.environ.get('WT_JAX_KEEP_XLA_FLAGS') or _CPU_FLAG in flags:
    return False
  if 'jax' in _sys.modules:
    # Too late for this process: XLA has read its flags already.
    return False
  _os.environ['XLA_FLAGS'] = (flags + ' ' + _CPU_FLAG + '=').strip()
  return True


CPU_DEFAULT_APPLIED = _apply_cpu_default()

# Public entry points, imported on first use so that `import wt_jax` (which
# every config file does) stays light: the registration functions, and the
# modules of the README's library example under their short names.
_LAZY = {'register_optimizer': ('wt_jax.optimizers.registry', 'register'),
         'register_arch': ('wt_jax.nets.custom_archs', 'register')}
_MODULES = {'widths': 'wt_jax.nets.widths', 'models': 'wt_jax.nets.models',
            'extrapolate': 'wt_jax.transfer.extrapolate',
            'result': 'wt_jax.optimizers.result'}


def __getattr__(name):
  import importlib  # pylint: disable=g-import-not-at-top
  if name in _LAZY:
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
  if name in _MODULES:
    return importlib.import_module(_MODULES[name])
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
