"""Every config field wt_jax reads, with its default.

Config files (configs/*.py, or a user's own anywhere) start from
`get_config()` here and override a few fields:

    from wt_jax import defaults

    def get_config():
      c = defaults.get_config()
      c.arch = 'resnet20_cifar'
      return c

This module imports only ml_collections, so a config file loads from any
directory without importing the library. Each block is checked by the stage
that owns it (`pipeline.validate`), before any work starts.
"""
import importlib.util
import os

import ml_collections


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
  # wt_jax/autoslim/.
  c.autoslim = autoslim()

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


def autoslim() -> ml_collections.ConfigDict:
  """The `config.autoslim` block (wt_jax/autoslim/ documents the method)."""
  c = ml_collections.ConfigDict()
  # Slimmable training (config.train's recipe otherwise: schedule, warm-up,
  # batch size, weight decay, label smoothing on the full width's loss).
  c.epochs = 5.0
  c.num_steps = 0  # > 0 overrides epochs
  c.lr = 0.0  # base_lr of slimmable training; 0 = config.train.base_lr
  # The width grid of each group: full width x (1 - j x step_fraction),
  # rounded, down to max(min_width, ceil(min_fraction x full width)).
  c.step_fraction = 0.1
  c.min_fraction = 0.1
  c.min_width = 4
  # Sandwich rule: full width + smallest + num_random random widths.
  c.num_random = 2
  c.inplace_distillation = True  # False: every width on the labels
  # Greedy slimming: stop once the MACs are <= target_macs, or, when that is
  # 0, <= target_fraction x the full network's MACs.
  c.target_macs = 0
  c.target_fraction = 0.5
  c.expand_to = 0.0  # > 0: FLOPs-match the result to this x the full MACs
  c.calib_batches = 10  # train batches (config.train.batch_size) for BN
  c.eval_batches = 10  # val batches (config.train.eval_batch_size); 0 = all
  c.candidate_batch = 0  # candidates per vmapped call; 0 = all units at once
  return c


def sibling(config_file: str, name: str):
  """The config module `name`.py beside `config_file` (a config's __file__).

  Lets a config file build on another one in its own directory, wherever
  that directory is: `base = defaults.sibling(__file__, 'resnet18')`.
  """
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)),
                      name + '.py')
  spec = importlib.util.spec_from_file_location(f'_wt_jax_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
