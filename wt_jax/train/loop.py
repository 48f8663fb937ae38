"""The training loop: `train_and_evaluate(config, widths, workdir, ...)`.

Set-up first: the data's facts, the mesh, the run's `Plan` (batch sizes,
steps, when to log, evaluate, call back and save), the `TrainStep`, and the
state (the latest checkpoint of `workdir`, or a fresh one). Then one
`for step` loop whose body reads in order: the train step; at log steps the
train metrics (and the sums reset); at eval steps an evaluation; the
callback; at checkpoint steps a save. After the last step: the non-finite
check, the final evaluation and the 'final' record.

Callback
--------
`callback(step, state) -> dict | None` runs on the host every
`callback_every` steps and after the last step (MorphNet exports its
structure from `state.params`); a returned dict is logged, and
`stop_training: True` in it ends training after this step (a checkpoint is
saved and marked, so a re-run does not train on). Under multi-host, every
process runs the callback and must return the same `stop_training`. A
re-run of a finished (or stopped) run trains no step and calls the
callback once with the restored state.

Non-finite loss
---------------
The step records the first non-finite loss on device; the host reads it
(`TrainStep.check_finite`) at log steps, before every checkpoint save and
after the last step, so training stops at most `log_every` steps after the
event with `NonFiniteLossError` (a `FloatingPointError`) naming the exact
step and value; no checkpoint with a non-finite loss behind it is written.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, Optional

from absl import logging
import jax

from wt_jax import console
from wt_jax import cost
from wt_jax import data
from wt_jax import models
from wt_jax import validation
from wt_jax.train import batches
from wt_jax.train import checkpoints
from wt_jax.train import evaluator
from wt_jax.train import recipe
from wt_jax.train import records
from wt_jax.train.sharding import make_mesh
from wt_jax.train.sharding import to_host
from wt_jax.train.step import ExtraLoss
from wt_jax.train.step import ExtraParams
from wt_jax.train.step import LossFn
from wt_jax.train.step import TrainState
from wt_jax.train.step import TrainStep
from wt_jax.widths import Widths

Callback = Callable[[int, TrainState], Optional[dict]]


@dataclasses.dataclass(frozen=True)
class Plan:
  """The numbers of one run: batch sizes, steps, and what happens when."""
  batch_size: int
  eval_batch_size: int
  steps_per_epoch: int
  total_steps: int
  log_every: int
  eval_every: int
  checkpoint_every: int
  callback_every: int

  @classmethod
  def create(cls, train_config, num_train: int, num_devices: int,
             callback_every: int) -> 'Plan':
    pcount = jax.process_count()
    batch_size = batches.check_batch_size(
        'batch_size', int(train_config.batch_size), num_devices, pcount)
    eval_batch_size = batches.check_batch_size(
        'eval_batch_size', int(train_config.eval_batch_size), num_devices,
        pcount)
    per_epoch = batches.steps_per_epoch(num_train, batch_size, pcount)
    if per_epoch < 1:
      validation.fail('config.train.batch_size', batch_size,
                      f'at most the training split ({num_train} examples)')
    return cls(batch_size=batch_size, eval_batch_size=eval_batch_size,
               steps_per_epoch=per_epoch,
               total_steps=recipe.num_train_steps(train_config, per_epoch),
               log_every=max(1, int(train_config.log_every)),
               eval_every=int(train_config.eval_every),
               checkpoint_every=int(train_config.checkpoint_every),
               callback_every=int(callback_every))

  def is_log(self, step: int, is_last: bool) -> bool:
    return step % self.log_every == 0 or is_last

  def is_eval(self, step: int, is_last: bool) -> bool:
    return self.eval_every > 0 and step % self.eval_every == 0 and not is_last

  def is_callback(self, step: int, is_last: bool) -> bool:
    return is_last or (self.callback_every > 0 and
                       step % self.callback_every == 0)

  def is_checkpoint(self, step: int, is_last: bool, stopped: bool) -> bool:
    return is_last or stopped or (self.checkpoint_every > 0 and
                                  step % self.checkpoint_every == 0)


def train_and_evaluate(config, widths: Widths, workdir: Optional[str], *,
                       data_config=None, train_config=None, seed=None,
                       extra_loss: Optional[ExtraLoss] = None,
                       loss_fn: Optional[LossFn] = None,
                       extra_params: Optional[ExtraParams] = None,
                       callback: Optional[Callback] = None, callback_every=0,
                       eval_split: str = 'test') -> dict[str, Any]:
  """Trains `build_model(widths)` and returns its final metrics.

  `workdir` holds checkpoints, metrics.jsonl and TensorBoard summaries (a
  re-run resumes; None: none). `data_config`, `train_config` (the full
  block) and `seed` default to `config.data`, `config.train`,
  `config.seed`; `extra_loss`, `loss_fn` and `extra_params` are the step's
  hooks; `callback` runs every `callback_every` steps (see the module
  docstring; the state is donated to the next step: copy what you keep).
  Returns top1, top5, eval_loss on `eval_split`, num_eval_examples, the
  last logged train metrics, steps, examples_seen, wall_time_s (the loop
  without evaluations, all runs), img_per_s, train_macs, macs, params, lr,
  stopped_early and time_parts (`records.Clock.time_parts`).
  """
  t_enter = time.perf_counter()
  data_config = config.data if data_config is None else data_config
  seed = int(config.seed if seed is None else seed)
  info, plan, train_step = build(
      config, widths, data_config, train_config, seed, callback_every,
      loss_fn=loss_fn, extra_loss=extra_loss, extra_params=extra_params)
  model, mesh = train_step.model, train_step.mesh
  ckpts = checkpoints.for_workdir(workdir,
                                  train_step.train_config.keep_checkpoints)
  state, progress = checkpoints.restore_or_init(ckpts, train_step, widths,
                                                info.num_classes)
  start_step = int(to_host(state.step))
  last_step = last_step_of(start_step, plan.total_steps,
                           progress.stopped_early)
  records.log_start(widths, plan, mesh.size, train_step.abstract_state.params)
  evaluate = evaluator.Evaluator(model, mesh, data_config, eval_split,
                                 plan.eval_batch_size)
  inputs = batches.device_batches(mesh, data_config, plan.batch_size, seed,
                                  start_step)
  setup_s = time.perf_counter() - t_enter
  clock = records.Clock(start_step, plan.batch_size)
  bar = console.Progress(plan.total_steps, start_step)
  with contextlib.closing(records.Records(workdir, start_step)) as writer, \
      contextlib.closing(bar):
    loop = _Loop(train_step, plan, ckpts, evaluate, writer, clock, bar,
                 callback, eval_split)
    with ckpts or contextlib.nullcontext():
      state = loop.run(state, progress, inputs, start_step, last_step)
      clock.stop()
      if ckpts:
        # The last save commits before the final evaluation reads data:
        # under tfds.testing.mock_data an overlapping evaluation made orbax
        # lose that checkpoint's array metadata.
        ckpts.wait()
      with clock.part('eval'):
        results = _after_last_step(
            state, train_step, evaluate,
            callback if last_step <= start_step else None)
    if ckpts:  # the wait for the last (asynchronous) save
      clock.parts['checkpoint'] += ckpts.close_seconds
    final = final_metrics(results, eval_split, progress, widths, info,
                           train_step, int(to_host(state.step)), clock)
    final['time_parts'] = clock.time_parts(setup_s)
    writer.write('final', final['steps'], final)
  records.log_final(final)
  return final


def build(config, widths: Widths, data_config, train_config, seed: int,
          callback_every: int = 0, **hooks) -> tuple[Any, Plan, TrainStep]:
  """(the data's `dataset_info`, the `Plan`, the `TrainStep`) of a run on
  all devices; `train_config` None: `config.train`; `hooks`: the step's
  `loss_fn`, `extra_loss`, `extra_params`."""
  train_config = config.train if train_config is None else train_config
  info, mesh = data.dataset_info(data_config), make_mesh()
  plan = Plan.create(train_config, info.num_examples['train'], mesh.size,
                     callback_every)
  model = models.build_model(widths, info.num_classes,
                             recipe.compute_dtype(config))
  train_step = TrainStep(
      model, train_config, mesh, seed=seed,
      image_shape=(info.resolution, info.resolution, info.channels),
      total_steps=plan.total_steps, steps_per_epoch=plan.steps_per_epoch,
      **hooks)
  return info, plan, train_step


@dataclasses.dataclass
class _Loop:
  """The `for step` loop of one run, and what its body uses."""
  train_step: TrainStep
  plan: Plan
  ckpts: Optional[checkpoints.Checkpoints]
  evaluate: evaluator.Evaluator
  writer: records.Records
  clock: records.Clock
  bar: console.Progress
  callback: Optional[Callback]
  eval_split: str

  def log_train(self, state, step):
    return _log_train(self.train_step, self.writer, self.clock, self.bar,
                      state, step)

  def run(self, state: TrainState, progress: checkpoints.Progress, inputs,
          start_step: int, last_step: int) -> TrainState:
    """Steps start_step + 1 .. last_step (fewer if the callback stops)."""
    plan, step = self.plan, start_step
    try:
      for step in range(start_step + 1, last_step + 1):
        with self.clock.part('first_step', when=step == start_step + 1):
          state = self.train_step(state, next(inputs))
        progress.examples_seen += plan.batch_size
        is_last = step == last_step
        if logged := plan.is_log(step, is_last):
          state, progress.last_train = self.log_train(state, step)
        if plan.is_eval(step, is_last):
          with self.clock.paused():
            self.writer.write('eval', step, self.evaluate(state),
                              prefix=self.eval_split)
        if self.callback is not None and plan.is_callback(step, is_last):
          progress.stopped_early = _call_back(self.callback, step, state,
                                              self.writer)
          if progress.stopped_early and not logged:
            state, progress.last_train = self.log_train(state, step)
        if self.ckpts and plan.is_checkpoint(step, is_last,
                                             progress.stopped_early):
          self.train_step.check_finite(state, step)
          with self.clock.part('checkpoint'):
            self.ckpts.save(step, state, progress, self.clock.loop_seconds())
        if progress.stopped_early:
          logging.info('Stopped at step %d by the callback.', step)
          break
    except KeyboardInterrupt as e:
      e.wt_jax_step = step  # for the CLI's one-line message
      raise
    return state


def last_step_of(start_step: int, total_steps: int, stopped: bool) -> int:
  """The step this run trains to: `total_steps`, or none after a stop."""
  if start_step > total_steps:
    logging.warning('The checkpoint (step %d) is past this run\'s last step '
                    '(%d): evaluating it as it is.', start_step, total_steps)
  return start_step if stopped else total_steps


def _log_train(train_step: TrainStep, writer: records.Records,
               clock: records.Clock, bar: console.Progress, state: TrainState,
               step: int) -> tuple[TrainState, dict[str, float]]:
  """Logs the means since the last log step and resets the sums."""
  train_step.check_finite(state, step)
  train = train_step.mean_metrics(state)
  img_s, per_step_s = clock.lap(step)
  lr = float(train_step.schedule(step - 1))
  writer.write('train', step, {**train, 'lr': lr, 'img_per_s': img_s})
  records.log_train(step, train_step.total_steps, train['train_loss'], lr,
                    img_s, per_step_s)
  bar.update(step, {'loss': train['train_loss'], 'img/s': img_s})
  clock.start_lap(step)
  return train_step.reset_sums(state), train


def _call_back(callback: Callback, step: int, state: TrainState,
               writer: records.Records) -> bool:
  """Runs the callback and records what it returns; True: stop training."""
  extra = callback(step, state) or {}
  if extra:
    writer.write('callback', step, extra)
  return bool(extra.get('stop_training', False))


def _after_last_step(state: TrainState, train_step: TrainStep,
                     evaluate: evaluator.Evaluator,
                     callback: Optional[Callback]) -> dict[str, float]:
  """The final non-finite check, `callback` (given when this run trained no
  step: it resumed a finished run) and the final evaluation."""
  step = int(to_host(state.step))
  train_step.check_finite(state, step)
  if callback is not None:
    extra = callback(step, state)
    if extra and jax.process_index() == 0:
      logging.info('callback at step %d: %s', step, extra)
  return evaluate(state)


def final_metrics(results: dict[str, float], eval_split: str,
                   progress: checkpoints.Progress, widths: Widths, info,
                   train_step: TrainStep, steps_done: int,
                   clock: records.Clock) -> dict[str, Any]:
  """The returned (and 'final'-recorded) metrics of the run (`info`: the
  data's `dataset_info`)."""
  run_seconds = clock.loop_seconds()
  res, classes = info.resolution, info.num_classes
  batch_size = int(train_step.train_config.batch_size)
  wall_time = progress.wall_time_s + run_seconds
  ran = steps_done - clock.start_step
  return {
      **results, 'eval_split': eval_split, **progress.last_train,
      'steps': steps_done, 'examples_seen': progress.examples_seen,
      'wall_time_s': wall_time,
      'img_per_s': (ran * batch_size / run_seconds if ran and run_seconds > 0
                    else progress.examples_seen / wall_time if wall_time > 0
                    else 0.0),
      'train_macs': (cost.train_macs_per_example(widths, res, classes) *
                     progress.examples_seen),
      'macs': cost.macs(widths, res, classes),
      'params': cost.params(widths, res, classes),
      'lr': float(train_step.schedule(max(steps_done - 1, 0))),
      'stopped_early': progress.stopped_early,
  }
