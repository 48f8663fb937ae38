"""Default config: every field wt_jax reads, with its default.

Other configs call `get_config()` from here and override a few fields.
Validation of every field lives in `wt_jax.config_check`, run before any work.
"""
import ml_collections

from wt_jax import autoslim


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.seeds = (0,)  # final training arms run once per seed

  # Network: an architecture name from `wt_jax.architectures.NAMES`.
  c.arch = 'resnet20_cifar'
  c.width_mult = 1.0  # uniform width of the original (full) network
  c.depth = ()  # blocks per stage; () = the architecture's own depth
  c.widths_file = ''  # optional JSON width vector for the original network
  c.dtype = 'float32'  # compute dtype: 'float32' or 'bfloat16'

  # Data. source: a TFDS name ('cifar10', 'imagenet2012', ...),
  # 'folder:/path' (train/<class>/*, test|val/<class>/*) or 'digits'.
  c.data = ml_collections.ConfigDict()
  c.data.source = 'digits'
  c.data.data_dir = ''  # TFDS data_dir ('' = TFDS default / $TFDS_DATA_DIR)
  c.data.resolution = 0  # 0 = the dataset's native resolution
  c.data.sample_fraction = 1.0  # class-balanced subset of train, in (0, 1]
  c.data.val_fraction = 0.1  # held out from train for width decisions
  c.data.split_seed = 0  # fixes the val split and the sample_fraction subset
  c.data.augment = 'cifar'  # 'cifar', 'imagenet' or 'none'
  c.data.cache = True
  c.data.shuffle_buffer = 10_000

  # Training (final arms; width optimizers reuse it and override a few).
  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 128  # global batch
  c.train.epochs = 10.0
  c.train.num_steps = 0  # > 0 overrides epochs
  c.train.base_lr = 0.1  # per 256 examples; scaled by batch_size / 256
  c.train.schedule = 'cosine'  # 'cosine', 'linear' or 'constant'
  c.train.warmup_epochs = 1.0
  c.train.momentum = 0.9
  c.train.nesterov = True
  c.train.weight_decay = 5e-4
  c.train.decay_bn_and_bias = False
  c.train.label_smoothing = 0.0
  c.train.log_every = 50
  c.train.eval_every = 0  # 0 = only at the end
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 2
  c.train.eval_batch_size = 256

  # Multi-host: call jax.distributed.initialize() (also when the
  # environment variable WT_JAX_DISTRIBUTED=1 is set).
  c.distributed = False

  # Width optimizer: 'morphnet' or 'autoslim'.
  c.optimizer = 'morphnet'
  c.morphnet = ml_collections.ConfigDict()
  c.morphnet.strength = 0.0  # 0 = auto: strength_knob / starting MACs
  c.morphnet.strength_knob = 1.0
  c.morphnet.threshold = 1e-2
  c.morphnet.epochs = 5.0
  c.morphnet.num_steps = 0
  c.morphnet.lr = 0.05  # fixed learning rate during structure learning
  c.morphnet.export_every = 50  # steps between structure exports
  c.morphnet.shrink_to = 0.5  # stop once learned MACs <= this x start MACs
  c.morphnet.expand_to = 0.0  # > 0: FLOPs-match the result to this x start
  c.morphnet.min_width = 4  # no group is removed entirely
  # AutoSlim: slimmable training + greedy slimming; fields documented in
  # wt_jax/autoslim.py.
  c.autoslim = autoslim.default_config()

  # Projection of the problem to a cheap copy (all four compound).
  c.projection = ml_collections.ConfigDict()
  c.projection.width_mult = 1.0
  c.projection.depth_mult = 1.0
  c.projection.sample_fraction = 1.0
  c.projection.resolution = 0  # 0 = no change

  # Extrapolation back to the original network.
  c.transfer = ml_collections.ConfigDict()
  c.transfer.stacking = 'stack_last_block'  # or 'stack_average_block'
  c.transfer.target_macs = 0  # 0 = MACs of the original uniform network
  c.transfer.divisor = 8
  c.transfer.min_width = 8

  c.stages = ('optimize', 'transfer', 'train_transferred', 'train_uniform',
              'report')
  return c
