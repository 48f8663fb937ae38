"""Training and evaluation of one width vector (see `loop`)."""
# Transitional: the public names of the former train.py.
from wt_jax.train.loop import *  # noqa: F401,F403
from wt_jax.train.loop import _tc  # noqa: F401
from wt_jax.train.sharding import *  # noqa: F401,F403
