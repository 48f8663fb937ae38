r"""Quickstart: the whole chain on scikit-learn's digits, on a CPU.

  python -m wt_jax.main --config=configs/quickstart.py --workdir=/tmp/wt_quickstart

ResNet-20 (CIFAR) on 16x16 digits (1,797 images, no download).
Projection: width 0.5 x depth 0.5 x half the training images x 8x8 images.
MorphNet on the projected problem, transfer, then the transferred and the
uniform network trained at equal MACs.

Result: see README.md (the table there comes from this command).
"""
from wt_jax import defaults


def get_config():
  c = defaults.get_config()
  c.arch = 'resnet20_cifar'
  c.data.source = 'digits'
  c.data.resolution = 16
  c.data.augment = 'none'
  c.train.batch_size = 64
  c.train.epochs = 10.0
  c.train.base_lr = 0.4
  c.train.warmup_epochs = 1.0
  c.train.weight_decay = 5e-4
  c.train.log_every = 20
  c.train.checkpoint_every = 100
  c.morphnet.epochs = 10.0
  c.morphnet.lr = 0.4
  c.morphnet.export_every = 10
  c.morphnet.strength_knob = 2.0
  c.projection.width_mult = 0.5
  c.projection.depth_mult = 0.5
  c.projection.sample_fraction = 0.5
  c.projection.resolution = 8
  c.transfer.divisor = 4
  c.transfer.min_width = 4
  c.seeds = (0, 1)
  return c
