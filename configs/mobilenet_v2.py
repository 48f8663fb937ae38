r"""MobileNetV2 1.0 on ImageNet at 224, MorphNet, compound projection.

  python -m wt_jax.main --config=configs/mobilenet_v2.py --workdir=gs://BUCKET/wt/mbv2

Projection: width 0.5 x depth 0.5 x 10% of the images x 112px. Needs
`imagenet2012` in TFDS_DATA_DIR. Result: not run here (CPU-only machine).
"""
from wt_jax import defaults


def get_config():
  c = defaults.sibling(__file__, 'resnet18').get_config()
  c.arch = 'mobilenet_v2'
  c.train.weight_decay = 4e-5
  c.train.epochs = 150.0
  c.train.base_lr = 0.2
  return c
