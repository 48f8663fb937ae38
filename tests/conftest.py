"""Test set-up: 8 simulated CPU devices and the fast XLA:CPU convolution path.

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
