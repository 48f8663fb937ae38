"""Shared test helpers: the tiny pipeline config and the repository root."""
import os

from wt_jax import defaults

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**over):
  """resnet_tiny on 8x8 digits, a few steps per stage."""
  c = defaults.get_config()
  c.arch = 'resnet_tiny'
  c.data.source = 'digits'
  c.data.augment = 'none'
  c.train.batch_size = 64
  c.train.num_steps = 12
  c.train.base_lr = 0.4
  c.train.warmup_epochs = 0.0
  c.train.log_every = 4
  c.train.checkpoint_every = 4
  c.morphnet.num_steps = 10
  c.morphnet.export_every = 5
  c.morphnet.lr = 0.4
  c.autoslim.num_steps = 6
  c.autoslim.eval_batches = 1
  c.autoslim.calib_batches = 1
  c.projection.width_mult = 0.5
  c.projection.depth_mult = 0.5
  c.projection.sample_fraction = 0.5
  c.projection.resolution = 6
  c.transfer.divisor = 2
  c.transfer.min_width = 2
  c.seeds = (0,)
  for k, v in over.items():
    node = c
    *path, leaf = k.split('.')
    for p in path:
      node = node[p]
    node[leaf] = v
  return c
