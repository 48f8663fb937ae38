"""AutoSlim (Yu & Huang 2019): slimmable training, then greedy slimming.

A width optimizer: `optimize(config, problem, workdir) -> OptimizeResult`,
configured by `config.autoslim` (fields and defaults: `defaults.autoslim()`,
checked by `validate`). Both phases work on the problem's full widths (the
starting `Widths`, `problem.widths`):

1. **Slimmable training** (`sandwich`: `make_sandwich_loss`, run by
   `train.train_and_evaluate` as its `loss_fn`, in `workdir/train`). One set
   of weights serves every narrower sub-network of the slimming space
   (`space`: a sub-network keeps the first k channels of each group, on a
   grid per unit of tied groups, implemented with channel masks). Each step
   trains the full, the smallest and `num_random` random widths (the
   sandwich rule, with in-place distillation).

2. **Greedy slimming** (`slimming`: `greedy_slim`). From the full width,
   remove one grid step from the unit whose removal keeps the best val
   top-1, until the MACs reach the target. Each candidate's BN statistics
   are recalibrated on training batches, then it is scored on the held-out
   'val' split, many candidates per jitted, vmapped call (`evaluator`:
   `CandidateEvaluator`). The path goes to `history.json`; a re-run resumes
   training from its checkpoints and slimming from that history.

`optimize` returns the slimmed widths (`details['slimmed_widths']` too); a
FLOPs match to `expand_to` x the full MACs is the registry's, not this
package's.

Cost accounting (`OptimizeResult.train_macs`)
---------------------------------------------
In MAC x examples, the unit of MorphNet's count: training is
`cost.TRAIN_MACS_FACTOR` (3) x forward MACs per example, forward-only
evaluation (BN calibration and val evaluation) 1 x. `train_macs` counts each
sub-network at *its own* MACs (the analytic cost of the algorithm, as if each
width ran as a narrower network): per training example 3 x (MACs(full) +
MACs(smallest) + num_random x E[MACs(random)]), the expectation taken in
closed form over the sampling distribution (the draws live inside the jitted
step; the realized sum per step, relative to the full MACs, is logged as the
train metric `sandwich_macs`), plus, per candidate evaluation, MACs(candidate)
x (calibration + val examples). What the masked implementation actually
executes is every pass at the full width (and the padding rows of the last
candidate chunk); that count is in `details` as `train_macs_executed`.
Sub-network MACs are those of the masked structure (the full network's layer
graph with fewer channels), which equals `cost.macs` of the candidate's
`Widths` for every candidate greedy slimming evaluates (see the shortcut rule
in `slimming`). The training loop's own final full-width evaluation on 'val'
is not counted, as for MorphNet.
"""
from __future__ import annotations

import time

from absl import logging
import jax

from wt_jax import cost
from wt_jax import data
from wt_jax import files
from wt_jax import models
from wt_jax import result
from wt_jax import train
from wt_jax import validation
from wt_jax import workdir as workdir_lib
from wt_jax.autoslim.evaluator import BN_MOMENTUM
from wt_jax.autoslim.evaluator import CandidateEvaluator
from wt_jax.autoslim.sandwich import make_sandwich_loss
from wt_jax.autoslim.sandwich import slimmable_train_config
from wt_jax.autoslim.sandwich import train_macs_per_example
from wt_jax.autoslim.slimming import candidates
from wt_jax.autoslim.slimming import greedy_slim
from wt_jax.autoslim.slimming import sample_batches
from wt_jax.autoslim.slimming import take_batches
from wt_jax.autoslim.slimming import target_of
from wt_jax.autoslim.space import SlimSpace
from wt_jax.autoslim.space import make_space
from wt_jax.autoslim.space import space_from_config
from wt_jax.autoslim.space import width_grid
from wt_jax.problem import Problem

__all__ = [
    'BN_MOMENTUM', 'CandidateEvaluator', 'FIELDS', 'SlimSpace',
    'candidates', 'greedy_slim', 'make_sandwich_loss', 'make_space',
    'optimize', 'sample_batches', 'slimmable_train_config',
    'space_from_config', 'take_batches', 'target_of', 'train_macs_per_example',
    'validate', 'width_grid',
]

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
