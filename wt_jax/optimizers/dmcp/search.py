"""DMCP's search: the config check, training weights and architecture
parameters, the exports, and the result (the package doc: the method).
"""
from __future__ import annotations

import time

from absl import logging
import jax
import numpy as np

from wt_jax import data
from wt_jax import train
from wt_jax.nets import cost
from wt_jax.nets import models
from wt_jax.optimizers import result
from wt_jax.optimizers.dmcp.chain import Chain
from wt_jax.optimizers.dmcp.chain import chain_from_config
from wt_jax.optimizers.dmcp.history import Exporter
from wt_jax.optimizers.dmcp.history import train_costs
from wt_jax.optimizers.dmcp.loss import arch_params
from wt_jax.optimizers.dmcp.loss import FixedMasks
from wt_jax.optimizers.dmcp.loss import make_dmcp_loss
from wt_jax.optimizers.dmcp.loss import skips_by_cond
from wt_jax.train.length import run_length
from wt_jax.transfer.problem import Problem
from wt_jax.util import validation
from wt_jax.util import workdir as workdir_lib

FIELDS = ('epochs', 'num_steps', 'lr', 'group_fraction', 'min_fraction',
          'min_width', 'num_random', 'inplace_distillation', 'uniform_decay',
          'warmup_fraction', 'arch_lr', 'arch_min_lr', 'flops_loss_weight',
          'target_fraction', 'expand_to', 'export_every', 'calib_batches')


def validate(config) -> None:
  """Checks `config.dmcp` (and that dmcp has a val split to measure on);
  raises errors.ConfigError naming the field."""
  f = validation.Fields(config.dmcp, 'dmcp')
  f.known(FIELDS, required=FIELDS)
  f.training_length()
  f.number('lr', 0, note='0 = config.train.base_lr')
  f.number('group_fraction', 0, 1, lo_open=True, hi_open=True)
  f.number('min_fraction', 0, 1, hi_open=True)
  f.number('min_width', 1, integer=True)
  f.number('num_random', 0, integer=True)
  f.boolean('inplace_distillation')
  f.number('uniform_decay', 0, 1)
  f.number('warmup_fraction', 0, 1, hi_open=True)
  f.number('arch_lr', 0, lo_open=True)
  f.number('arch_min_lr', 0, float(config.dmcp.arch_lr)
           if validation.is_number(config.dmcp.arch_lr) else None,
           note='at most arch_lr')
  f.number('flops_loss_weight', 0)
  f.number('target_fraction', 0, 1, lo_open=True)
  f.number('expand_to', 0, note='0 = no FLOPs matching')
  f.number('export_every', 1, integer=True)
  f.number('calib_batches', 0, integer=True,
           note='0: no deciding-net measurement')
  if config.optimizer == 'dmcp':  # it evaluates on val
    data.require_val_split(config.data, 'optimizer=dmcp')


def dmcp_train_config(config):
  """`config.train` with DMCP's length and weight learning rate."""
  dc = config.dmcp
  lr = {'base_lr': float(dc.lr)} if dc.lr > 0 else {}
  return train.derive_train_config(config.train, epochs=float(dc.epochs),
                                   num_steps=int(dc.num_steps), **lr)


def _deciding_net(config, problem: Problem, chain: Chain, learned,
                  variables) -> dict:
  """The learned widths as a masked sub-network of the trained weights, on
  'val' after BN recalibration (`calib_batches` train batches)."""
  n = int(config.dmcp.calib_batches)
  if not n or variables is None:
    return {}
  masks = chain.space.masks(np.asarray(learned.values, np.int32))
  model = FixedMasks(models.build_model(problem.widths, problem.num_classes,
                                        config.dtype),
                     {k: np.asarray(v) for k, v in masks.items()})
  tc = config.train
  sizes = dict(batch_size=int(tc.batch_size),
               eval_batch_size=int(tc.eval_batch_size), seed=int(config.seed))
  metrics = train.evaluate_recalibrated(model, train.make_mesh(), variables,
                                        problem.data, calib_batches=n, **sizes)
  return {'val_top1_recalibrated': metrics['top1'],
          'val_loss_recalibrated': metrics['eval_loss']}


def _plan(config, problem: Problem, tc) -> tuple[int, int]:
  """(total steps, warm-up steps) of the run (as the train loop plans it)."""
  info = data.dataset_info(problem.data)
  total = run_length(tc, info.num_examples['train'],
                     jax.process_count()).total_steps
  return total, int(total * float(config.dmcp.warmup_fraction))


def _train(config, problem: Problem, chain: Chain, workdir: str):
  """DMCP's training (resumes from workdir/train): (metrics, exporter,
  warm-up steps)."""
  dc = config.dmcp
  tc = dmcp_train_config(config)
  total, warmup = _plan(config, problem, tc)
  exporter = Exporter(chain, problem, total, workdir)
  loss_fn = make_dmcp_loss(
      chain, num_random=int(dc.num_random),
      inplace_distillation=bool(dc.inplace_distillation),
      warmup_steps=warmup, uniform_decay=float(dc.uniform_decay),
      flops_loss_weight=float(dc.flops_loss_weight),
      target_fraction=float(dc.target_fraction))
  metrics = train.train_and_evaluate(
      config, problem.widths, workdir_lib.optimizer_train(workdir),
      data_config=problem.data, train_config=tc, loss_fn=loss_fn,
      extra_params=arch_params(chain, float(dc.arch_lr),
                               float(dc.arch_min_lr), warmup, total, tc),
      callback=exporter, callback_every=int(dc.export_every),
      eval_split='val')
  return metrics, exporter, warmup


def _chain_details(chain: Chain, alpha) -> dict:
  """The learned chain per unit: alphas, marginals, expected channels."""
  alpha = np.asarray(alpha, np.float64)
  marginals = chain.marginals(alpha, np)
  expected = chain.expected_channels(alpha, np)
  units = []
  for u, unit in enumerate(chain.space.units):
    n = chain.num_groups[u]
    units.append(dict(
        groups=list(unit), min_channels=chain.min_channels[u],
        group_size=chain.group_size[u], num_groups=n,
        alphas=[round(float(a), 5) for a in alpha[u, :n]],
        marginals=[round(float(m), 5) for m in marginals[u, :n]],
        expected_channels=round(float(expected[u]), 4)))
  return dict(units=units, expected_macs=float(chain.expected_macs(alpha,
                                                                  np)))


def optimize(config, problem: Problem, workdir: str) -> result.OptimizeResult:
  """DMCP from `problem.widths` on `problem.data`; see the module doc.

  Returns the learned chain's width vector; a re-run in the same workdir
  resumes training from its checkpoints.
  """
  p, dc = problem, config.dmcp
  chain = chain_from_config(config, p.widths, p.resolution, p.num_classes)
  start = cost.macs(p.widths, p.resolution, p.num_classes)
  logging.info('DMCP: %d units, sub-groups %s; start %d MACs, target %.3g.',
               chain.num_units, list(chain.num_groups), start,
               float(dc.target_fraction) * start)
  metrics, exporter, warmup = _train(config, p, chain, workdir)
  t0 = time.perf_counter()
  learned = chain.widths_of(exporter.alpha)
  deciding = _deciding_net(config, p, chain, learned, exporter.variables)
  deciding_s = time.perf_counter() - t0
  costs = train_costs(chain, exporter.history, int(metrics['steps']),
                      int(config.train.batch_size), warmup,
                      int(dc.num_random), float(dc.uniform_decay),
                      skips_by_cond())
  return _result(config, p, chain, exporter, metrics, costs, warmup,
                 dict(deciding, deciding_eval_s=deciding_s))


def _result(config, problem: Problem, chain: Chain, exporter: Exporter,
            metrics: dict, costs: dict, warmup: int,
            deciding: dict) -> result.OptimizeResult:
  """The learned widths, the cost and every detail of the run."""
  dc = config.dmcp
  learned = chain.widths_of(exporter.alpha)
  start = exporter.start_macs
  learned_macs = exporter.macs(learned)
  target = float(dc.target_fraction) * start
  examples = int(metrics['examples_seen'])
  seconds = deciding.pop('deciding_eval_s')
  details = dict(
      optimizer='dmcp', bn='recalibration',
      cost_convention='sub-network MACs; architecture pass 2 x full MACs',
      start_macs=int(start), target_macs=int(target),
      learned_macs=int(learned_macs), learned_widths=learned.as_dict(),
      learned_macs_fraction=learned_macs / start,
      reached_target=bool(learned_macs <= target),
      **_chain_details(chain, exporter.alpha), **deciding,
      full_val_top1_running_stats=float(metrics['top1']),
      train_steps=int(metrics['steps']), warmup_steps=int(warmup),
      train_wall_time_s=float(metrics['wall_time_s']),
      exports=len(exporter.history), **costs,
      num_random=int(dc.num_random),
      train_loss=float(metrics.get('train_loss', float('nan'))),
      time_parts=dict(metrics.get('time_parts', {}),
                      deciding_eval_s=float(seconds)))
  return result.OptimizeResult(
      widths=learned, train_macs=costs['train_macs'], examples=examples,
      epochs=examples / problem.num_train,
      wall_time_s=float(metrics['wall_time_s']), details=details)
