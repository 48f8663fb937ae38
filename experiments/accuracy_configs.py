r"""Configs of the CIFAR-10 reproduction grid (experiments/accuracy_grid.py).

One base config per budget preset (`base(budget)`) plus one override dict per
arm (`ARMS`). `get_config('BUDGET:ARM')` is the config file entry point, so a
single arm runs as

  python -m wt_jax.main --config=experiments/accuracy_configs.py:cpu:mn_compound \
      --workdir=/work/grid_cifar10/cpu/mn_compound

The claim under test (Chin, Marculescu, Morcos, CVPR-W 2021): widths
optimized on a projected problem, then extrapolated, match direct
optimization's accuracy gain over the uniform baseline at a fraction of the
cost. Every arm trains at the MACs of the uniform network
(`transfer.target_macs=0`); the optimizers shrink to 50% of the starting MACs
and the result is FLOPs-matched back, as in the paper.
"""
from __future__ import annotations

import copy
from typing import Optional

from configs import cifar10_resnet20
from experiments import invariance_configs

DATA_ZIP = '/work/shared/data/cifar10_jpeg.zip'
DATA_DIR = '/tmp/cifar10_jpeg'

NO_PROJECTION = dict(width_mult=1.0, depth_mult=1.0, sample_fraction=1.0,
                     resolution=0)
COMPOUND = dict(width_mult=0.5, depth_mult=0.5, sample_fraction=0.1,
                resolution=16)

TRANSFERRED_STAGES = ('optimize', 'transfer', 'train_transferred')
DIRECT_STAGES = ('optimize_direct', 'train_direct')


def _proj(**kw):
  return dict(NO_PROJECTION, **kw)


# name -> (label, final arm in the pipeline workdir, overrides). Overrides
# use dotted config paths. `share_optimize_from`: the arm whose finished
# `optimize/` result this arm reuses (same projected problem and optimizer;
# only the stacking rule differs), so the optimization runs once.
ARMS = {
    'uniform': dict(
        label='uniform baseline', final='uniform', optimizer=None,
        overrides={'stages': ('train_uniform', 'report')}),
    'mn_direct': dict(
        label='MorphNet direct', final='direct', optimizer='morphnet',
        overrides={'optimizer': 'morphnet', 'stages': DIRECT_STAGES}),
    'mn_compound': dict(
        label='MorphNet transferred: compound (w0.5 x d0.5 x 10% x 16px)',
        final='transferred', optimizer='morphnet',
        overrides={'optimizer': 'morphnet', 'stages': TRANSFERRED_STAGES,
                   'projection': dict(COMPOUND),
                   'transfer.stacking': 'stack_last_block'}),
    'as_direct': dict(
        label='AutoSlim direct', final='direct', optimizer='autoslim',
        overrides={'optimizer': 'autoslim', 'stages': DIRECT_STAGES}),
    'as_compound': dict(
        label='AutoSlim transferred: compound (w0.5 x d0.5 x 10% x 16px)',
        final='transferred', optimizer='autoslim',
        overrides={'optimizer': 'autoslim', 'stages': TRANSFERRED_STAGES,
                   'projection': dict(COMPOUND),
                   'transfer.stacking': 'stack_last_block'}),
    'mn_width': dict(
        label='MorphNet transferred: width 0.5', final='transferred',
        optimizer='morphnet',
        overrides={'optimizer': 'morphnet', 'stages': TRANSFERRED_STAGES,
                   'projection': _proj(width_mult=0.5)}),
    'mn_depth_last': dict(
        label='MorphNet transferred: depth 0.5, stack_last_block',
        final='transferred', optimizer='morphnet',
        overrides={'optimizer': 'morphnet', 'stages': TRANSFERRED_STAGES,
                   'projection': _proj(depth_mult=0.5),
                   'transfer.stacking': 'stack_last_block'}),
    'mn_depth_avg': dict(
        label='MorphNet transferred: depth 0.5, stack_average_block',
        final='transferred', optimizer='morphnet',
        share_optimize_from='mn_depth_last',
        overrides={'optimizer': 'morphnet', 'stages': TRANSFERRED_STAGES,
                   'projection': _proj(depth_mult=0.5),
                   'transfer.stacking': 'stack_average_block'}),
    'mn_samples': dict(
        label='MorphNet transferred: 10% of the samples', final='transferred',
        optimizer='morphnet',
        overrides={'optimizer': 'morphnet', 'stages': TRANSFERRED_STAGES,
                   'projection': _proj(sample_fraction=0.1)}),
    'mn_res': dict(
        label='MorphNet transferred: half resolution (16px)',
        final='transferred', optimizer='morphnet',
        overrides={'optimizer': 'morphnet', 'stages': TRANSFERRED_STAGES,
                   'projection': _proj(resolution=16)}),
}
ORDER = tuple(ARMS)  # the run order: the core comparison first


# Budget presets: overrides on top of the common base.
BUDGETS = {
    # The 2-core CPU grid (~60 min). ResNet-20 at width 0.5 (8/16/32
    # channels), 32px, 20% of the train split minus val (9,800 images, 980
    # per class), 2 epochs of final training per seed. val = 2% of the full
    # train split (1,000 images, 100 per class), all of it used by AutoSlim's
    # decisions: the val split is stored in class order, so a prefix of
    # `eval_batches` batches would hold one or two classes only. See
    # results/cifar10_accuracy.md for the measurements behind these numbers.
    'cpu': {
        'width_mult': 0.5,
        'data.sample_fraction': 0.2,
        'data.val_fraction': 0.02,
        'seeds': (0, 1, 2),
        'train.epochs': 2.0,
        'train.warmup_epochs': 0.5,
        'train.checkpoint_every': 1000,
        'train.log_every': 50,
        'morphnet.epochs': 20.0,  # a cap; runs stop at shrink_to
        'morphnet.strength_knob': 3.0,
        'morphnet.export_every': 10,
        'autoslim.epochs': 2.0,
        'autoslim.step_fraction': 0.2,
        'autoslim.calib_batches': 2,
        'autoslim.eval_batches': 0,  # all 1,000 val images
    },
    # A lent GPU: full width ResNet-20 at 32px, all the data, the paper-like
    # schedule of configs/cifar10_resnet20.py (30 epochs of final training).
    # The optimizers follow the invariance grid's rules (results/cifar10.md),
    # whose deciding nets are trained: MorphNet's fixed 5-epoch budget, never
    # stopped at a MACs target (`FIXED_BUDGET_MORPHNET`), AutoSlim 10 epochs
    # with full BN calibration / val sets. `accuracy_grid.py --plan` counts
    # its work.
    'gpu': {
        'width_mult': 1.0,
        'data.sample_fraction': 1.0,
        'seeds': (0, 1, 2),
        'train.epochs': 30.0,
        'train.warmup_epochs': 1.0,
        'train.checkpoint_every': 2000,
        'autoslim.epochs': 10.0,
        'autoslim.step_fraction': 0.1,
        'autoslim.calib_batches': 20,
        'autoslim.eval_batches': 0,
        'transfer.divisor': 8,
        'transfer.min_width': 8,
    },
    # End-to-end check of every arm: 1 seed, a few steps.
    'smoke': {
        'width_mult': 0.5,
        'data.sample_fraction': 0.05,
        'data.val_fraction': 0.02,
        'seeds': (0,),
        'train.num_steps': 3,
        'train.warmup_epochs': 0.0,
        'train.eval_batch_size': 1000,
        'morphnet.num_steps': 4,
        'morphnet.export_every': 2,
        'autoslim.num_steps': 2,
        'autoslim.step_fraction': 0.34,
        'autoslim.calib_batches': 1,
        'autoslim.eval_batches': 0,
    },
}


def _set(config, dotted, value):
  *parents, leaf = dotted.split('.')
  node = config
  for p in parents:
    node = node[p]
  if isinstance(value, dict):
    for k, v in value.items():
      node[leaf][k] = v
  else:
    node[leaf] = value


def base(budget: str = 'cpu'):
  """The common config of every arm under `budget`."""
  if budget not in BUDGETS:
    raise ValueError(f'budget={budget!r}; allowed: {", ".join(BUDGETS)}')
  c = cifar10_resnet20.get_config()
  c.arch = 'resnet20_cifar'
  c.data.source = f'folder:{DATA_DIR}'
  c.data.resolution = 32
  # Every arm trains at the uniform network's MACs.
  c.transfer.target_macs = 0
  c.transfer.divisor = 4
  c.transfer.min_width = 4
  # The optimizers' target: 50% of the starting MACs, then FLOPs-matched
  # back by the transfer (expand_to stays 0).
  c.morphnet.shrink_to = 0.5
  c.morphnet.expand_to = 0.0
  c.autoslim.target_fraction = 0.5
  c.autoslim.target_macs = 0
  c.autoslim.expand_to = 0.0
  # The optimizers may go down to 2 channels in every arm. The width-0.5
  # projection of this net is 8/8/16 channels (uniform widths are rounded to
  # multiples of 8), so a minimum of 4 would cap the multiplier of every
  # 8-channel group of a width-projected arm at >= 0.5, while the direct
  # arm's 16- and 32-channel groups could go down to 0.25 and 0.125.
  c.morphnet.min_width = 2
  c.autoslim.min_width = 2
  for k, v in BUDGETS[budget].items():
    _set(c, k, v)
  c.projection.width_mult = 1.0
  c.projection.depth_mult = 1.0
  c.projection.sample_fraction = 1.0
  c.projection.resolution = 0
  return c


# Budgets whose MorphNet arms use the invariance grid's fixed-budget rule
# (`invariance_configs.morphnet_rule`) instead of stopping at `shrink_to`.
FIXED_BUDGET_MORPHNET = frozenset({'gpu'})
# Budgets whose optimized arms run once per seed (`per_seed`).
PER_SEED_OPTIMIZATION = frozenset({'gpu'})
CIFAR10_TRAIN = 50_000  # images in CIFAR-10's train split (val comes out of it)


def train_examples(c) -> float:
  """The original training split: train minus val, times the data's sample
  fraction."""
  return CIFAR10_TRAIN * (1 - c.data.val_fraction) * c.data.sample_fraction


def optimization_examples(c) -> float:
  """Training images of the arm's width optimization: the original training
  split, times the projection's sample fraction for a projected one."""
  n = train_examples(c)
  return n * c.projection.sample_fraction if 'optimize' in c.stages else n


def per_seed(budget: str, arm: str) -> bool:
  """Whether the arm runs once per seed, each run its own optimization and
  one final training (so the spread of its accuracy includes the
  optimizer's own noise): an optimized arm under `PER_SEED_OPTIMIZATION`."""
  return budget in PER_SEED_OPTIMIZATION and ARMS[arm]['optimizer'] is not None


def runs(budget: str, arm: str) -> tuple[Optional[int], ...]:
  """The runs of an arm: (None,) for one run of all the budget's seeds, or
  its seeds, one run each (`per_seed`)."""
  return tuple(BUDGETS[budget]['seeds']) if per_seed(budget, arm) else (
      None,)


def arm_config(budget: str, arm: str, seed: Optional[int] = None):
  """The config of `arm` under `budget`; with `seed`, its run of that seed
  (optimizer and final training seeded by it, one final training)."""
  if arm not in ARMS:
    raise ValueError(f'arm={arm!r}; allowed: {", ".join(ARMS)}')
  c = base(budget)
  for k, v in copy.deepcopy(ARMS[arm]['overrides']).items():
    _set(c, k, v)
  if budget in FIXED_BUDGET_MORPHNET:
    invariance_configs.morphnet_rule(c, optimization_examples(c))
  if seed is not None:
    c.seed = int(seed)
    c.seeds = (int(seed),)
  return c


def get_config(arg: str = 'cpu:uniform'):
  """'BUDGET:ARM' or 'BUDGET:ARM:SEED' (a per-seed arm's run)."""
  budget, arm, *seed = arg.split(':') + ([] if ':' in arg else ['uniform'])
  return arm_config(budget, arm or 'uniform', int(seed[0]) if seed else None)
