r"""Configs of the width-invariance experiment on CIFAR-10 (issue 13).

The question (Chin, Marculescu, Morcos, CVPR-W 2021, Sec. 4): do widths
optimized on a projected problem agree with the widths optimized directly,
about as well as two direct runs with different seeds agree with each other?

One run = one width optimization (`optimize` + `transfer` stages):

  python -m wt_jax.main \
      --config=experiments/invariance_configs.py:morphnet:compound:0 \
      --workdir=/work/invariance/morphnet/compound/seed_0

`experiments/invariance_grid.py` runs every (optimizer, arm, seed), one
subprocess each, resumably; `experiments/invariance_results.py` writes
results/cifar10.{md,json} and results/cifar10_multipliers.png.

The original problem: real CIFAR-10 JPEGs (`folder:` of the unzipped
../shared/data/cifar10_jpeg.zip), ResNet-20 at width 0.5 (8/16/32
channels), 32px, the whole train split minus a class-balanced 10% val split
(45,000 / 5,000 images), the 10,000 test images unused (no final training
here). Arms: `direct` (no projection), `width` (x0.5: 4/8/16 channels),
`depth` (x0.5: 2 blocks per stage), `samples` (10% of the train split),
`resolution` (16px) and `compound` (all four).

The budget rule (the paper's accounting): every run trains for the same
number of epochs *of its own training split*, so a data projection runs
fewer steps. Each optimizer's deciding network must be a trained network:
its val top-1 (after BN recalibration) is reported per run.

MorphNet, following the MorphNet authors' advice (a fixed learning rate and
a strength such that the structure settles by the end of a fixed budget):
  * 5 epochs at the fixed learning rate 0.1, never stopped early
    (`shrink_to=0`); strength knob 1 (strength = 1 / the starting MACs);
    no group below one channel (`min_width=1`), so the 4-channel groups of
    the width-projected nets can shrink like the 8-channel ones of the
    original;
  * the structure is exported every quarter epoch, and the result is the
    mean alive count per group over the exports of the last epoch
    (`average_last=4`): a channel flickering around the threshold counts
    by the fraction of the last epoch it was alive;
  * the deciding net is measured on val after BN recalibration on 20
    training batches (`calib_batches=20`); running averages lag far behind
    weights that move at a constant high learning rate.
AutoSlim: 5 epochs of slimmable training (sandwich rule, in-place
distillation; 3 epochs left its direct supernet at 57.1% val top-1, below
the 60% a deciding net must reach), then greedy slimming to 50% of the MACs in 10% steps, each
candidate scored on a fixed 2,560-image sample of val after BN
recalibration; its deciding network is the full-width supernet.

Both rules keep the learned widths before FLOPs matching; the invariance
table compares the dimension- and depth-matched multipliers
(`widths/transferred.json: multipliers`).
"""
from __future__ import annotations

from wt_jax import defaults

DATA_ZIP = '/work/shared/data/cifar10_jpeg.zip'
DATA_DIR = '/tmp/cifar10_jpeg'

OPTIMIZERS = ('morphnet', 'autoslim')
IDENTITY = dict(width_mult=1.0, depth_mult=1.0, sample_fraction=1.0,
                resolution=0)
ARMS = {
    'direct': dict(IDENTITY),
    'width': dict(IDENTITY, width_mult=0.5),
    'depth': dict(IDENTITY, depth_mult=0.5),
    'samples': dict(IDENTITY, sample_fraction=0.1),
    'resolution': dict(IDENTITY, resolution=16),
    'compound': dict(width_mult=0.5, depth_mult=0.5, sample_fraction=0.1,
                     resolution=16),
}
LABELS = {
    'direct': 'direct (no projection)',
    'width': 'width 0.5',
    'depth': 'depth 0.5',
    'samples': '10% of the samples',
    'resolution': 'half resolution (16px)',
    'compound': 'compound (w0.5 x d0.5 x 10% x 16px)',
}


def base(optimizer: str):
  """The config every arm of `optimizer` shares (projection: identity)."""
  c = defaults.get_config()
  c.arch = 'resnet20_cifar'
  c.width_mult = 0.5
  c.data.source = f'folder:{DATA_DIR}'
  c.data.augment = 'cifar'
  c.data.val_fraction = 0.1
  c.train.batch_size = 128
  c.train.log_every = 50
  c.train.checkpoint_every = 0  # one checkpoint, at the end: short runs
  c.optimizer = optimizer
  morphnet_rule(c)
  c.morphnet.min_width = 1  # a 4-channel group of the width arms can shrink
  c.autoslim.epochs = 5.0
  c.autoslim.min_width = 1
  c.autoslim.lr = 0.2
  c.autoslim.step_fraction = 0.1
  c.autoslim.target_fraction = 0.5
  c.autoslim.calib_batches = 10
  c.autoslim.eval_batches = 10  # x 256: a fixed, class-mixed val sample
  c.train.eval_batch_size = 256 if optimizer == 'autoslim' else 500
  c.transfer.divisor = 4
  c.transfer.min_width = 4
  c.stages = ('optimize', 'transfer')
  return c


def morphnet_rule(c, train_examples: int = 0) -> None:
  """Sets MorphNet's fixed-budget rule (the module doc) on config `c`: 5
  epochs at a fixed learning rate, strength knob 1, never stopped at a MACs
  target, the mean alive counts of the last epoch's 4 exports, the deciding
  net measured after BN recalibration. `train_examples` > 0 also sets the
  export cadence to a quarter epoch of that training split."""
  c.morphnet.epochs = 5.0
  c.morphnet.lr = 0.2  # x batch/256: 0.1 per step at batch 128
  c.morphnet.strength_knob = 1.0
  c.morphnet.shrink_to = 0.0  # a fixed budget: never stop at a target
  c.morphnet.average_last = 4
  c.morphnet.calib_batches = 20
  if train_examples > 0:
    c.morphnet.export_every = quarter_epoch(train_examples,
                                            c.train.batch_size)


def quarter_epoch(train_examples: float, batch_size: int) -> int:
  """Steps per quarter epoch of a training split (at least 1)."""
  return max(1, int(train_examples // batch_size) // 4)


def export_every(optimizer: str, arm: str) -> int:
  """Steps per quarter epoch of the arm's own training split."""
  del optimizer
  return quarter_epoch(45_000 * ARMS[arm]['sample_fraction'], 128)


def get_config(spec: str = 'morphnet:direct:0'):
  """`optimizer:arm:seed`, e.g. 'morphnet:compound:2'."""
  parts = spec.split(':')
  if len(parts) != 3 or parts[0] not in OPTIMIZERS or parts[1] not in ARMS:
    raise ValueError(f'config spec {spec!r}: expected optimizer:arm:seed '
                     f'with optimizer in {OPTIMIZERS}, arm in {tuple(ARMS)}')
  optimizer, arm, seed = parts[0], parts[1], int(parts[2])
  c = base(optimizer)
  for k, v in ARMS[arm].items():
    c.projection[k] = v
  c.morphnet.export_every = export_every(optimizer, arm)
  c.seed = seed
  c.seeds = (seed,)
  return c
