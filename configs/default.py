"""The default config: every field, with its default (wt_jax/defaults.py).

  python -m wt_jax.main --config=configs/default.py
"""
from wt_jax import defaults


def get_config():
  return defaults.get_config()
