"""Facts of the machine a benchmark runs on, and the installed versions."""
from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Optional

YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'


def _cpuinfo(key: str) -> Optional[str]:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith(key):
          return line.split(':', 1)[1]
  except OSError:
    pass
  return None


def cpu_model() -> str:
  model = _cpuinfo('model name')
  return model.strip() if model else platform.processor() or 'unknown'


def cpu_flags(wanted=('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16')
              ) -> list[str]:
  """Which of the `wanted` instruction-set flags /proc/cpuinfo lists."""
  have = set((_cpuinfo('flags') or '').split())
  return [w for w in wanted if w in have]


def version(name: str) -> str:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return 'not installed'


def load_avg() -> str:
  try:
    return ' '.join(f'{x:.2f}' for x in os.getloadavg())
  except OSError:
    return 'n/a'


def memory() -> str:
  try:
    with open('/proc/meminfo') as f:
      return f'{int(f.readline().split()[1]) / 2**20:.1f} GiB'
  except (OSError, ValueError, IndexError):
    return ''


def facts(user_xla_flags: str) -> dict[str, str]:
  """Facts of this machine and the installed versions (`user_xla_flags`:
  XLA_FLAGS as the user set them)."""
  return {
      'nproc': str(os.cpu_count()), 'CPU': cpu_model(),
      'CPU flags': ', '.join(cpu_flags()) or
                   'none of avx2/avx512f/avx512_bf16',
      'memory': memory(), 'OS': f'{platform.system()} {platform.release()}',
      'Python': platform.python_version(),
      **{name: version(name) for name in (
          'jax', 'jaxlib', 'flax', 'optax', 'tensorflow-cpu', 'torch')},
      'XLA_FLAGS': (f'`{user_xla_flags}`' if user_xla_flags else '(unset)') +
                   ' + wt_jax\'s default `' + YNN_FLAG + '=` unless stated '
                   'otherwise',
  }
