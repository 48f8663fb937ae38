r"""ResNet-20 on CIFAR-10: TFDS `cifar10`, or the local JPEGs through `folder:`.

  # TFDS (needs cifar10 prepared in TFDS_DATA_DIR):
  python -m wt_jax.main --config=configs/cifar10_resnet20.py --workdir=/tmp/wt_c10
  # the CIFAR-10 JPEGs of ../shared (unzip first):
  unzip -q ../shared/data/cifar10_jpeg.zip -d /tmp/cifar10_jpeg
  python -m wt_jax.main --config=configs/cifar10_resnet20.py \
    --config.data.source=folder:/tmp/cifar10_jpeg --workdir=/tmp/wt_c10

Projection: width 0.5 x depth 0.5 x 10% of the images x 16px.
Result: see results/ (experiments/) for the runs made with this config.
"""
from wt_jax import defaults


def get_config():
  c = defaults.get_config()
  c.arch = 'resnet20_cifar'
  c.data.source = 'cifar10'
  c.data.augment = 'cifar'
  c.data.val_fraction = 0.1
  c.train.batch_size = 128
  c.train.epochs = 30.0
  c.train.base_lr = 0.2
  c.train.warmup_epochs = 1.0
  c.train.weight_decay = 5e-4
  c.morphnet.epochs = 10.0
  c.morphnet.lr = 0.2
  c.morphnet.export_every = 50
  c.projection.width_mult = 0.5
  c.projection.depth_mult = 0.5
  c.projection.sample_fraction = 0.1
  c.projection.resolution = 16
  c.transfer.divisor = 4
  c.transfer.min_width = 4
  return c
