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


def get_config() -> ml_collections.ConfigDict:
  """The whole default config: top-level fields and one block per stage."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.seeds = (0,)  # final training arms run once per seed

  # Network: an architecture name from `wt_jax.nets.architectures.NAMES`, or one
  # that `arch_module` registers (`wt_jax.register_arch`) when imported.
  c.arch = 'resnet20_cifar'
  c.arch_module = ''
  c.width_mult = 1.0  # uniform width of the original (full) network
  c.depth = ()  # blocks per stage; () = the architecture's own depth
  # Optional: a JSON width vector of the *projected* network (its arch and
  # depth after config.projection), used instead of running the optimizer;
  # stage transfer extrapolates it to the original network as usual.
  c.widths_file = ''
  c.dtype = 'float32'  # compute dtype: 'float32' or 'bfloat16'
  # Multi-host: call jax.distributed.initialize() (also when the
  # environment variable WT_JAX_DISTRIBUTED=1 is set).
  c.distributed = False

  c.data = data()
  c.train = train()
  # Width optimizer: a name of the registry (`wt_jax.optimizers.registry`);
  # `optimizer_module` is imported first, to register a user's own.
  c.optimizer = 'morphnet'
  c.optimizer_module = ''
  c.morphnet = morphnet()
  c.autoslim = autoslim()
  c.dmcp = dmcp()
  c.projection = projection()
  c.transfer = transfer()
  c.stages = ('optimize', 'transfer', 'train_transferred', 'train_uniform',
              'report')
  return c


def data() -> ml_collections.ConfigDict:
  """`config.data`. source: a TFDS name ('cifar10', 'imagenet2012', ...),
  'folder:/path' (train/<class>/*, test|val/<class>/*) or 'digits'."""
  c = ml_collections.ConfigDict()
  c.source = 'digits'
  c.data_dir = ''  # TFDS data_dir ('' = TFDS default / $TFDS_DATA_DIR)
  c.resolution = 0  # 0 = the dataset's native resolution
  c.sample_fraction = 1.0  # class-balanced subset of train, in (0, 1]
  c.val_fraction = 0.1  # held out from train for width decisions
  c.split_seed = 0  # fixes the val split and the sample_fraction subset
  c.augment = 'cifar'  # 'cifar', 'imagenet' or 'none'
  c.cache = True
  c.shuffle_buffer = 10_000  # tf.data path only
  # 'auto' | 'host' | 'device': a training split that fits in
  # device_memory_fraction of one device's memory lives there (data/placement.py)
  c.placement = 'auto'
  c.device_memory_fraction = 0.25
  return c


def train() -> ml_collections.ConfigDict:
  """`config.train`: the final arms' recipe (width optimizers reuse it and
  override a few fields)."""
  c = ml_collections.ConfigDict()
  c.batch_size = 128  # global batch
  c.epochs = 10.0
  c.num_steps = 0  # > 0 overrides epochs
  c.base_lr = 0.1  # per 256 examples; scaled by batch_size / 256
  c.schedule = 'cosine'  # 'cosine', 'linear' or 'constant'
  c.warmup_epochs = 1.0
  c.momentum = 0.9
  c.nesterov = True
  c.weight_decay = 5e-4
  c.decay_bn_and_bias = False
  c.label_smoothing = 0.0
  c.log_every = 50
  c.eval_every = 0  # 0 = only at the end
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.eval_batch_size = 256
  # Train all of an arm's seeds in one jitted step (vmapped over the seed
  # axis; wt_jax/train/seeds.py): on an accelerator, CIFAR-sized nets.
  c.batch_seeds = False
  # Train steps per jitted call (a lax.scan; log, eval, callback and
  # checkpoint steps stay exact): 0 = auto, 1 on CPU, 16 on a GPU or TPU.
  c.steps_per_call = 0
  return c


def morphnet() -> ml_collections.ConfigDict:
  """`config.morphnet` (wt_jax/optimizers/morphnet.py documents the method)."""
  c = ml_collections.ConfigDict()
  c.strength = 0.0  # 0 = auto: strength_knob / starting MACs
  c.strength_knob = 1.0
  c.threshold = 1e-2
  c.epochs = 5.0
  c.num_steps = 0
  c.lr = 0.05  # fixed learning rate during structure learning
  c.export_every = 50  # steps between structure exports
  c.shrink_to = 0.5  # stop once learned MACs <= this x start MACs
  c.expand_to = 0.0  # > 0: FLOPs-match the result to this x start
  c.min_width = 4  # no group is removed entirely
  c.average_last = 1  # the result: mean alive counts of the last k exports
  c.calib_batches = 0  # > 0: the deciding net's val top-1 after BN recalib.
  return c


def projection() -> ml_collections.ConfigDict:
  """`config.projection`: the cheap copy (all four knobs compound)."""
  c = ml_collections.ConfigDict()
  c.width_mult = 1.0
  c.depth_mult = 1.0
  c.sample_fraction = 1.0
  c.resolution = 0  # 0 = no change
  return c


def transfer() -> ml_collections.ConfigDict:
  """`config.transfer`: extrapolation back to the original network."""
  c = ml_collections.ConfigDict()
  c.stacking = 'stack_last_block'  # or 'stack_average_block'
  c.target_macs = 0  # 0 = MACs of the original uniform network
  c.divisor = 8
  c.min_width = 8
  return c


def _slimmable_training() -> ml_collections.ConfigDict:
  """The weight training AutoSlim and DMCP share (config.train's recipe
  otherwise: schedule, warm-up, batch size, weight decay, label smoothing
  on the full width's loss): the sandwich rule, full width + smallest +
  `num_random` random sub-networks, with in-place distillation."""
  c = ml_collections.ConfigDict()
  c.epochs = 5.0
  c.num_steps = 0  # > 0 overrides epochs
  c.lr = 0.0  # base_lr of the weights; 0 = config.train.base_lr
  c.min_fraction = 0.1  # no sub-network below this fraction of a width ...
  c.min_width = 4  # ... or this many channels
  c.num_random = 2
  c.inplace_distillation = True  # False: every width on the labels
  return c


def autoslim() -> ml_collections.ConfigDict:
  """The `config.autoslim` block (wt_jax/optimizers/autoslim/ documents the method)."""
  c = _slimmable_training()
  # The width grid of each group: full width x (1 - j x step_fraction),
  # rounded, down to max(min_width, ceil(min_fraction x full width)).
  c.step_fraction = 0.1
  # Greedy slimming: stop once the MACs are <= target_macs, or, when that is
  # 0, <= target_fraction x the full network's MACs.
  c.target_macs = 0
  c.target_fraction = 0.5
  c.expand_to = 0.0  # > 0: FLOPs-match the result to this x the full MACs
  c.calib_batches = 10  # train batches (config.train.batch_size) for BN
  c.eval_batches = 10  # val batches (config.train.eval_batch_size); 0 = all
  c.candidate_batch = 0  # candidates per vmapped call; 0 = all units at once
  return c


def dmcp() -> ml_collections.ConfigDict:
  """The `config.dmcp` block (wt_jax/optimizers/dmcp/ documents the method)."""
  c = _slimmable_training()
  # Sub-groups per unit: int(group_fraction x its width) channels each (at
  # least 1), the first max(min_width, ceil(min_fraction x width)) or more
  # channels always kept (the reference: 10% steps, 10% minimum).
  c.group_fraction = 0.1
  # A random sub-network is drawn uniformly from the grid with a probability
  # that is 1 in the warm-up and then multiplied by uniform_decay every 10
  # architecture steps per random sub-network (first at the first one), else
  # from the Markov chain (the reference: 0.9999; 1 = always uniform, 0 =
  # always from the chain after the warm-up).
  c.uniform_decay = 0.9999
  # The first warmup_fraction of the steps trains the weights only; then
  # every step also updates the architecture parameters (the reference: 0.5).
  c.warmup_fraction = 0.5
  # The architecture parameters' SGD: arch_lr (absolute, not scaled by the
  # batch size), cosine to arch_min_lr over the architecture phase; the
  # train recipe's momentum and Nesterov, no weight decay.
  c.arch_lr = 0.5
  c.arch_min_lr = 0.1
  # FLOPs loss: flops_loss_weight x the two-sided log loss of the expected
  # MACs toward target_fraction x the starting MACs.
  c.flops_loss_weight = 0.1
  c.target_fraction = 0.5
  c.expand_to = 0.0  # > 0: FLOPs-match the result to this x the start MACs
  c.export_every = 50  # steps between records of the chain (history.json)
  c.calib_batches = 10  # > 0: the deciding net's val top-1 after BN recalib.
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
