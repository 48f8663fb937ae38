"""Config validation, before any work starts.

Every error is a `ConfigError` naming the field, the value and what is
allowed. `validate` checks the fields on their own; `validate_against_problem`
checks what needs the dataset's size (a widths file's structure, a
feasible MACs target).
"""
from __future__ import annotations

import numbers

from wt_jax import architectures
from wt_jax import cost
from wt_jax import extrapolate
from wt_jax import projection
from wt_jax import widths as widths_lib
from wt_jax.errors import ConfigError


def _bad(field, value, allowed):
  raise ConfigError(f'config.{field}={value!r} is invalid; allowed: {allowed}')


def _number(cfg, field, lo=None, hi=None, *, lo_open=False, integer=False,
            prefix=''):
  value = cfg[field]
  name = prefix + field
  kind = numbers.Integral if integer else numbers.Real
  if isinstance(value, bool) or not isinstance(value, kind):
    _bad(name, value, 'an integer' if integer else 'a number')
  if lo is not None and (value <= lo if lo_open else value < lo):
    _bad(name, value, f'{"> " if lo_open else ">= "}{lo}' +
         (f' and <= {hi}' if hi is not None else ''))
  if hi is not None and value > hi:
    _bad(name, value, f'<= {hi}')


def _choice(cfg, field, allowed, prefix=''):
  if cfg[field] not in allowed:
    _bad(prefix + field, cfg[field], ', '.join(map(str, allowed)))


def validate(config) -> None:
  """Checks every field wt_jax reads; raises ConfigError on the first bad one."""
  # pylint: disable=g-import-not-at-top
  from wt_jax import data
  from wt_jax import optimizers
  from wt_jax import pipeline
  from wt_jax import train
  # pylint: enable=g-import-not-at-top
  _choice(config, 'arch', architectures.NAMES)
  _number(config, 'width_mult', 0, lo_open=True)
  try:
    architectures.get_arch(config.arch, tuple(config.depth) or None)
  except architectures.ArchError as e:
    raise ConfigError(f'config.depth: {e}') from e
  _choice(config, 'dtype', ('float32', 'bfloat16'))
  _number(config, 'seed', 0, integer=True)
  seeds = tuple(config.seeds)
  if not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                          and s >= 0 for s in seeds):
    _bad('seeds', config.seeds, 'a non-empty tuple of integers >= 0')
  stages = tuple(config.stages)
  unknown = [s for s in stages if s not in pipeline.STAGES]
  if unknown or not stages:
    _bad('stages', config.stages,
         f'a non-empty subset of {", ".join(pipeline.STAGES)}')

  data.validate(config.data)

  t = config.train
  p = 'train.'
  _number(t, 'batch_size', 1, integer=True, prefix=p)
  _number(t, 'eval_batch_size', 1, integer=True, prefix=p)
  _number(t, 'num_steps', 0, integer=True, prefix=p)
  _number(t, 'epochs', 0, prefix=p)
  if t.num_steps == 0 and not t.epochs > 0:
    _bad('train.epochs', t.epochs, '> 0 (or set train.num_steps > 0)')
  _number(t, 'base_lr', 0, lo_open=True, prefix=p)
  _choice(t, 'schedule', train.SCHEDULES, prefix=p)
  _number(t, 'warmup_epochs', 0, prefix=p)
  _number(t, 'momentum', 0, 1, prefix=p)
  _number(t, 'weight_decay', 0, prefix=p)
  _number(t, 'label_smoothing', 0, 1, prefix=p)
  for field in ('log_every', 'eval_every', 'checkpoint_every'):
    _number(t, field, 0, integer=True, prefix=p)
  _number(t, 'keep_checkpoints', 1, integer=True, prefix=p)

  _choice(config, 'optimizer', tuple(optimizers.OPTIMIZERS))
  m = config.morphnet
  p = 'morphnet.'
  _number(m, 'strength', 0, prefix=p)
  _number(m, 'strength_knob', 0, lo_open=True, prefix=p)
  _number(m, 'threshold', 0, lo_open=True, prefix=p)
  _number(m, 'epochs', 0, prefix=p)
  _number(m, 'num_steps', 0, integer=True, prefix=p)
  if m.num_steps == 0 and not m.epochs > 0:
    _bad('morphnet.epochs', m.epochs, '> 0 (or set morphnet.num_steps > 0)')
  _number(m, 'lr', 0, lo_open=True, prefix=p)
  _number(m, 'export_every', 1, integer=True, prefix=p)
  _number(m, 'shrink_to', 0, 1, prefix=p)
  _number(m, 'expand_to', 0, prefix=p)
  _number(m, 'min_width', 1, integer=True, prefix=p)
  if 'autoslim' in config:
    from wt_jax import autoslim  # pylint: disable=g-import-not-at-top
    autoslim.validate_config(config)

  projection.validate(config.projection)
  tr = config.transfer
  _choice(tr, 'stacking', extrapolate.STACKING_RULES, prefix='transfer.')
  _number(tr, 'target_macs', 0, integer=True, prefix='transfer.')
  _number(tr, 'divisor', 1, integer=True, prefix='transfer.')
  _number(tr, 'min_width', 1, integer=True, prefix='transfer.')
  if not isinstance(config.widths_file, str):
    _bad('widths_file', config.widths_file, 'a path to a JSON width file, '
         'or "" to run the optimizer')


def validate_against_problem(config, prob, proj) -> None:
  """Checks that need the problem: the widths file and the MACs target."""
  if config.widths_file:
    try:
      widths_lib.load(config.widths_file, expect_arch=proj.uniform.arch,
                      expect_depth=proj.uniform.depth)
    except widths_lib.WidthError as e:
      raise ConfigError(f'config.widths_file: {e} (it must be a width vector '
                        f'of the projected net: {proj.uniform.arch} with '
                        f'depth {list(proj.uniform.depth)})') from e
  target = int(config.transfer.target_macs)
  if target:
    floor = cost.macs(prob.uniform.replace(
        [config.transfer.min_width] * len(prob.uniform)), prob.resolution,
                      prob.num_classes)
    if target < floor:
      raise ConfigError(
          f'config.transfer.target_macs={target:,} is infeasible: the '
          f'smallest {prob.uniform.arch} (every group at '
          f'min_width={config.transfer.min_width}) costs {floor:,} MACs at '
          f'{prob.resolution}px; allowed: >= {floor:,}')
