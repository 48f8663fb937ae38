r"""The paper's setting: ResNet-18 on ImageNet at 224, MorphNet, compound projection.

  python -m wt_jax.main --config=configs/resnet18.py --workdir=gs://BUCKET/wt/resnet18
  (on a TPU pod: launch/tpu_pod.sh configs/resnet18.py; on GPUs:
   launch/multi_gpu.sh configs/resnet18.py WORKDIR)

Projection: width 0.5 x depth 0.5 x 10% of the training images x 112px,
the compound that Chin et al. report at 320x less optimization cost. Our
exact MAC count of that compound is 272x (`python -m wt_jax.nets.cost`; see the
README: the nominal 4 x 2 x 10 x 4 assumes every layer scales ideally).

Needs `imagenet2012` prepared in TFDS_DATA_DIR (manual download).
Result: not run here (CPU-only development machine); no figure to quote yet.
"""
from wt_jax import defaults


def get_config():
  c = defaults.get_config()
  c.arch = 'resnet18'
  c.data.source = 'imagenet2012'
  c.data.resolution = 224
  c.data.augment = 'imagenet'
  c.data.val_fraction = 0.01  # 12.8k images held out from train
  c.data.cache = False
  c.train.batch_size = 1024
  c.train.epochs = 90.0
  c.train.base_lr = 0.1
  c.train.warmup_epochs = 5.0
  c.train.weight_decay = 1e-4
  c.train.label_smoothing = 0.1
  c.train.log_every = 100
  c.train.checkpoint_every = 2000
  c.dtype = 'bfloat16'
  c.morphnet.epochs = 30.0
  c.morphnet.lr = 0.1
  c.morphnet.export_every = 500
  c.morphnet.shrink_to = 0.5
  c.projection.width_mult = 0.5
  c.projection.depth_mult = 0.5
  c.projection.sample_fraction = 0.1
  c.projection.resolution = 112
  c.transfer.stacking = 'stack_last_block'
  c.seeds = (0, 1, 2)
  return c
