"""AutoSlim's search: the config check, slimmable training, greedy slimming,
and the result (the package doc describes the method).
"""
from __future__ import annotations

import time

from absl import logging
import jax

from wt_jax import data
from wt_jax import train
from wt_jax.nets import cost
from wt_jax.nets import models
from wt_jax.optimizers import result
from wt_jax.optimizers.autoslim.evaluator import CandidateEvaluator
from wt_jax.optimizers.autoslim.slimming import greedy_slim
from wt_jax.optimizers.autoslim.slimming import sample_batches
from wt_jax.optimizers.autoslim.slimming import take_batches
from wt_jax.optimizers.autoslim.slimming import target_of
from wt_jax.optimizers.sandwich import make_sandwich_loss
from wt_jax.optimizers.sandwich import slimmable_train_config
from wt_jax.optimizers.sandwich import train_macs_per_example
from wt_jax.optimizers.slim_space import SlimSpace
from wt_jax.optimizers.slim_space import space_from_config
from wt_jax.transfer.problem import Problem
from wt_jax.util import files
from wt_jax.util import validation
from wt_jax.util import workdir as workdir_lib

FIELDS = ('epochs', 'num_steps', 'lr', 'step_fraction', 'min_fraction',
          'min_width', 'num_random', 'inplace_distillation', 'target_macs',
          'target_fraction', 'expand_to', 'calib_batches', 'eval_batches',
          'candidate_batch')


def validate(config) -> None:
  """Checks `config.autoslim` (and that autoslim has a val split to decide
  on); raises errors.ConfigError."""
  f = validation.Fields(config.autoslim, 'autoslim')
  f.known(FIELDS, required=FIELDS)
  f.training_length()
  f.number('lr', 0, note='0 = config.train.base_lr')
  f.number('step_fraction', 0, 1, lo_open=True, hi_open=True)
  f.number('min_fraction', 0, 1)
  f.number('min_width', 1, integer=True)
  f.number('num_random', 0, integer=True)
  f.boolean('inplace_distillation')
  f.number('target_macs', 0, integer=True, note='0 = use target_fraction')
  f.number('target_fraction', 0, 1, lo_open=True)
  f.number('expand_to', 0, note='0 = no FLOPs matching')
  f.number('calib_batches', 1, integer=True)
  f.number('eval_batches', 0, integer=True, note='0 = the whole val split')
  f.number('candidate_batch', 0, integer=True,
           note='0 = all units at once')
  if config.optimizer == 'autoslim':  # candidates are scored on val
    data.require_val_split(config.data, 'optimizer=autoslim')


def _train_slimmable(config, problem: Problem, space: SlimSpace, tc,
                     workdir: str):
  """Slimmable training (resumes from workdir/train): (metrics, variables)."""
  ac = config.autoslim
  captured = {}

  def capture(step, state):
    del step
    captured['variables'] = train.to_host(
        {'params': state.params, 'batch_stats': state.batch_stats})

  metrics = train.train_and_evaluate(
      config, problem.widths, workdir_lib.optimizer_train(workdir),
      data_config=problem.data, train_config=tc,
      loss_fn=make_sandwich_loss(space, int(ac.num_random),
                                 bool(ac.inplace_distillation)),
      callback=capture, callback_every=0, eval_split='val')
  return metrics, captured['variables']


def _build_evaluator(config, problem: Problem, space: SlimSpace, tc,
                     variables) -> CandidateEvaluator:
  """The evaluator of the trained weights: calibration batches from 'train',
  a fixed sample of 'val' to score on."""
  ac = config.autoslim
  pcount, pindex = jax.process_count(), jax.process_index()
  calib = take_batches(data.make_dataset(
      problem.data, 'train', batch_size=int(tc.batch_size),
      seed=train.epoch_seed(int(config.seed), 1_000_003), train=True,
      process_index=pindex, process_count=pcount, num_epochs=1,
      drop_remainder=True), int(ac.calib_batches))
  val = sample_batches(data.make_dataset(
      problem.data, 'val', batch_size=int(tc.eval_batch_size), seed=0,
      train=False, process_index=pindex, process_count=pcount),
                       int(ac.eval_batches))
  model = models.build_model(problem.widths, problem.num_classes,
                             config.dtype)
  return CandidateEvaluator(model, space, train.make_mesh(), variables,
                            calib, val, int(ac.candidate_batch))


def _slim(config, space: SlimSpace, scorer: CandidateEvaluator, target: int,
          tc, trained_steps: int, workdir: str) -> list:
  """Greedy slimming (replays workdir/history.json); the history."""
  ac = config.autoslim
  settings = dict(step_fraction=float(ac.step_fraction),
                  min_fraction=float(ac.min_fraction),
                  min_width=int(ac.min_width),
                  calib_batches=len(scorer.calib),
                  eval_batches=len(scorer.val),
                  batch_size=int(tc.batch_size),
                  eval_batch_size=int(tc.eval_batch_size),
                  trained_steps=int(trained_steps), seed=int(config.seed))
  path = workdir_lib.history(workdir)
  history = files.read_json(path) if files.exists(path) else None

  def save(h):
    if jax.process_index() == 0:
      files.write_json(path, h)

  history = greedy_slim(
      space, scorer.evaluate, target, history=history, settings=settings,
      eval_examples=scorer.calib_examples + scorer.val_examples, save=save)
  save(history)
  return history


def _costs(space: SlimSpace, scorer: CandidateEvaluator, history: list,
           examples: int, num_random: int) -> dict:
  """Both phases in MAC x examples, analytic and executed (module doc)."""
  per_example, per_example_executed = train_macs_per_example(space, num_random)
  full_macs = int(space.macs(space.widths.array()))
  eval_examples = scorer.calib_examples + scorer.val_examples
  # Executed: every candidate row (padding included) at the full width. The
  # rows of a replayed history are reconstructed from its candidate counts.
  rows = sum(-(-r['candidates'] // scorer.chunk) * scorer.chunk
             for r in history)
  train_executed = int(per_example_executed) * examples
  slim_executed = rows * full_macs * eval_examples
  return dict(
      sandwich_train_macs=int(round(per_example * examples)),
      sandwich_train_macs_executed=int(train_executed),
      slimming_macs=int(sum(r['eval_macs'] for r in history)),
      slimming_macs_executed=int(slim_executed),
      train_macs_executed=int(train_executed + slim_executed))


def _result(config, problem: Problem, space: SlimSpace,
            scorer: CandidateEvaluator, history: list, metrics: dict,
            target: int, slim_seconds: float) -> result.OptimizeResult:
  """The slimmed widths, the cost and every detail of the run."""
  p = problem
  full_macs = cost.macs(p.widths, p.resolution, p.num_classes)
  slimmed = p.widths.replace([history[-1]['widths'][n] for n in p.widths.names])
  slimmed_macs = cost.macs(slimmed, p.resolution, p.num_classes)
  examples = int(metrics['examples_seen'])
  num_random = int(config.autoslim.num_random)
  costs = _costs(space, scorer, history, examples, num_random)
  eval_seconds = sum(r['eval_seconds'] for r in history)
  details = dict(
      optimizer='autoslim', bn='recalibration',
      cost_convention='sub-network MACs (executed: full width)',
      start_macs=int(full_macs), target_macs=int(target),
      slimmed_macs=int(slimmed_macs), slimmed_widths=slimmed.as_dict(),
      reached_target=bool(slimmed_macs <= target),
      slimmed_val_top1=float(history[-1]['val_top1']),
      full_val_top1=float(history[0]['val_top1']),
      full_val_top1_running_stats=float(metrics['top1']),
      slimming_steps=len(history) - 1,
      candidate_evaluations=int(sum(r['candidates'] for r in history)),
      candidate_eval_seconds=float(eval_seconds),
      candidate_batch=int(scorer.chunk),
      calib_examples=int(scorer.calib_examples),
      val_examples_per_candidate=int(scorer.val_examples),
      slimming_seconds=float(slim_seconds),
      train_steps=int(metrics['steps']),
      train_wall_time_s=float(metrics['wall_time_s']),
      **costs,
      num_random=num_random, units=[list(u) for u in space.units],
      grids=[list(g) for g in space.grids],
      train_loss=float(metrics.get('train_loss', float('nan'))),
      # Candidate scoring runs on the val split and calibration batches,
      # whose sizes do not change with the training split's.
      macs_not_scaling_with_data=costs['slimming_macs'],
      time_parts=dict(metrics.get('time_parts', {}),
                      slimming_s=float(slim_seconds)))
  return result.OptimizeResult(
      widths=slimmed,
      train_macs=costs['sandwich_train_macs'] + costs['slimming_macs'],
      examples=examples, epochs=examples / p.num_train,
      wall_time_s=float(metrics['wall_time_s']) + eval_seconds,
      details=details)


def optimize(config, problem: Problem, workdir: str) -> result.OptimizeResult:
  """AutoSlim from `problem.widths` on `problem.data`; see the module doc.

  Returns the slimmed widths; a re-run in the same workdir resumes both
  phases.
  """
  p = problem
  space = space_from_config(config, p.widths, p.resolution, p.num_classes)
  full_macs = cost.macs(p.widths, p.resolution, p.num_classes)
  target = target_of(config, full_macs)
  logging.info('AutoSlim: %d units, grids %s; full %d MACs, target %d.',
               space.num_units, [len(g) for g in space.grids], full_macs,
               target)
  tc = slimmable_train_config(config)
  metrics, variables = _train_slimmable(config, p, space, tc, workdir)
  t0 = time.perf_counter()
  scorer = _build_evaluator(config, p, space, tc, variables)
  history = _slim(config, space, scorer, target, tc, int(metrics['steps']),
                  workdir)
  return _result(config, p, space, scorer, history, metrics, target,
                 time.perf_counter() - t0)
