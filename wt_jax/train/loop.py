"""The training loop: `train_and_evaluate(config, widths, workdir, ...)`.

Set-up first: the data's facts, the mesh, the run's `Plan` (batch sizes,
steps, when to log, evaluate, call back and save), the `TrainStep`, and the
state (the latest checkpoint of `workdir`, or a fresh one). Then one
`for step` loop whose body reads in order: the train step; at log steps the
train metrics (and the sums reset); at eval steps an evaluation; the
callback; at checkpoint steps a save. After the last step: the non-finite
check, the final evaluation and the 'final' record.

One loop, over a step object
----------------------------
`Program.train` is that loop for one seed or several: its step object is
the plain `TrainStep` (`train_and_evaluate`), or a `seeds.SeedsStep`, the
step vmapped over a seed axis of the state
(`seeds.train_and_evaluate_seeds`). The step object says what a state is
per seed (`stack`, `unstack`, `seed_means`); the `Program` holds one
workdir per seed, and the loop keeps per seed its checkpoints, records and
`Progress`, each in the single-seed format (either mode resumes the
other's).

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
import functools
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import logging
import jax
import numpy as np

from wt_jax import data
from wt_jax.data import placement
from wt_jax.nets import cost
from wt_jax.nets import models
from wt_jax.nets.widths import Widths
from wt_jax.train import batches
from wt_jax.train import checkpoints
from wt_jax.train import evaluator
from wt_jax.train import recipe
from wt_jax.train import records
from wt_jax.train.plan import Plan
from wt_jax.train.sharding import make_mesh
from wt_jax.train.sharding import to_host
from wt_jax.train.step import ExtraLoss
from wt_jax.train.step import ExtraParams
from wt_jax.train.step import LossFn
from wt_jax.train.step import TrainState
from wt_jax.train.step import TrainStep
from wt_jax.util import console

Callback = Callable[[int, TrainState], Optional[dict]]


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
  program = Program(
      train_step, train_step, plan, (workdir,),
      evaluator.Evaluator(model, mesh, data_config, eval_split,
                          plan.eval_batch_size),
      functools.partial(batches.device_batches, mesh, data_config,
                        plan.batch_size, seed,
                        positions=train_step.feed is not None),
      eval_split, callback)
  (final,) = program.train(widths, info, t_enter)
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
      feed=placement.place_train_split(mesh, data_config), **hooks)
  return info, plan, train_step


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
  """What one loop trains: the seeds of `step_fn`, one workdir each.

  `step_fn` is the step object: `base` itself (one seed), or a
  `seeds.SeedsStep` of `base` (several seeds stacked in one state). Besides
  `__call__`, `reset_sums`, `check_finite` and `init`, the loop uses its
  view of a state as seeds: `stack` (restored single-seed states -> the
  state), `unstack` (-> the state a seed's checkpoint holds), `seed_means`
  (each seed's train metrics). `evaluate.each` gives each seed's eval
  metrics; `batches(start_step)` the `batches.Feeder` of the device batches
  from that step on;
  `callback` (one seed only) as in the module docstring; `final_extra` is
  added to each seed's final metrics.
  """
  base: TrainStep
  step_fn: Any
  plan: Plan
  workdirs: Sequence[Optional[str]]
  evaluate: evaluator.Evaluator
  batches: Callable[[int], batches.Feeder]
  eval_split: str = 'test'
  callback: Optional[Callback] = None
  final_extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def train(self, widths: Widths, info,
            t_enter: float) -> Optional[list[dict[str, Any]]]:
    """Each seed's final metrics (`info`: the data's `dataset_info`;
    `t_enter`: when set-up began); None (nothing trained) when the seeds'
    checkpoints are not all at the same step."""
    plan = self.plan
    ckpts = [checkpoints.for_workdir(w, self.base.train_config.keep_checkpoints)
             for w in self.workdirs]
    restored = restore(ckpts, self.step_fn, self.base, widths,
                       info.num_classes)
    if restored is None:
      return None
    state, progress, start_step = restored
    last_step = last_step_of(start_step, plan.total_steps,
                             all(p.stopped_early for p in progress))
    records.log_start(widths, plan, self.base.mesh.size,
                      self.base.abstract_state.params)
    inputs = self.batches(start_step)
    setup_s = time.perf_counter() - t_enter
    clock = records.Clock(start_step, plan.batch_size * len(self.workdirs))
    with contextlib.ExitStack() as stack:
      writers = [stack.enter_context(contextlib.closing(
          records.Records(w, start_step))) for w in self.workdirs]
      bar = stack.enter_context(contextlib.closing(
          console.Progress(plan.total_steps, start_step)))
      loop = _Loop(self, ckpts, writers, clock, bar, progress)
      state, results = loop.run_and_evaluate(state, start_step, last_step,
                                             inputs)
      finals = loop.finals(results, widths, info,
                           [int(s) for s in np.ravel(to_host(state.step))],
                           setup_s)
    for final in finals:
      records.log_final(final)
    return finals


def restore(ckpts: Sequence[Optional[checkpoints.Checkpoints]], step_fn,
            base: TrainStep, widths: Widths, num_classes: int):
  """(the state, each seed's `Progress`, the start step): every seed's
  latest intact checkpoint (`step_fn.stack`), or `step_fn.init()`; None
  (the managers closed) when the seeds are not all at the same step."""
  structure = checkpoints.state_structure(widths, num_classes,
                                          base.abstract_state)
  restored = [c.restore(base.abstract_state, structure) if c else
              (None, checkpoints.Progress()) for c in ckpts]
  states = [s for s, _ in restored]
  steps = sorted({int(to_host(s.step)) if s is not None else 0
                  for s in states})
  if len(steps) > 1:  # (a fresh seed counts as step 0)
    for c in ckpts:
      if c:
        c.close()
    logging.warning('The seeds\' checkpoints are at different steps (%s): '
                    'training them one by one.', steps)
    return None
  state = step_fn.init() if states[0] is None else step_fn.stack(states)
  return state, [p for _, p in restored], steps[0]


@dataclasses.dataclass
class _Loop:
  """The `for step` loop of a `Program`, and what its body uses (per seed:
  `ckpts`, `writers`, `progress`)."""
  program: Program
  ckpts: list
  writers: list
  clock: records.Clock
  bar: console.Progress
  progress: list

  def run_and_evaluate(self, state: TrainState, start_step: int,
                       last_step: int, inputs):
    """(the state after `run`, each seed's final evaluation), the
    checkpoints closed (their wait timed as checkpointing)."""
    ckpts = [c for c in self.ckpts if c]
    with contextlib.ExitStack() as saving:
      for c in ckpts:
        saving.enter_context(c)
      state = self.run(state, inputs, start_step, last_step)
      self.clock.stop()
      for c in ckpts:
        # The last save commits before the final evaluation reads data:
        # under tfds.testing.mock_data an overlapping evaluation made orbax
        # lose that checkpoint's array metadata.
        c.wait()
      with self.clock.part('eval'):
        results = self.after_last_step(
            state, trained=last_step > start_step)
    for c in ckpts:  # the wait for the last (asynchronous) save
      self.clock.parts['checkpoint'] += c.close_seconds
    return state, results

  def run(self, state: TrainState, inputs: batches.Feeder, start_step: int,
          last_step: int) -> TrainState:
    """Steps start_step + 1 .. last_step (fewer if the callback stops), in
    calls of `plan.chunk` steps: the body below runs after each call, whose
    last step is the only one where something can happen."""
    p, plan, step = self.program, self.program.plan, start_step
    try:
      while step < last_step:
        k = plan.chunk(step, last_step, callback=p.callback is not None,
                       checkpoints=any(self.ckpts))
        with self.clock.part('first_step', when=step == start_step):
          state = (p.step_fn(state, inputs.take(1)) if k == 1 else
                   p.step_fn.run(state, inputs.take(k)))
        step += k
        for progress in self.progress:
          progress.examples_seen += plan.batch_size * k
        is_last, stopped = step == last_step, False
        if logged := plan.is_log(step, is_last):
          state = self.log_train(state, step)
        if plan.is_eval(step, is_last):
          with self.clock.paused():
            for writer, metrics in zip(self.writers, p.evaluate.each(state)):
              writer.write('eval', step, metrics, prefix=p.eval_split)
        if p.callback is not None and plan.is_callback(step, is_last):
          stopped = self.call_back(step, state)
          if stopped and not logged:
            state = self.log_train(state, step)
        if any(self.ckpts) and plan.is_checkpoint(step, is_last, stopped):
          self.save(state, step)
        if stopped:
          logging.info('Stopped at step %d by the callback.', step)
          break
    except KeyboardInterrupt as e:
      e.wt_jax_step = step  # for the CLI's one-line message
      raise
    return state

  def log_train(self, state: TrainState, step: int) -> TrainState:
    """Each seed's means since the last log step; the sums reset."""
    step_fn = self.program.step_fn
    step_fn.check_finite(state, step)
    means = step_fn.seed_means(state)
    img_s, per_step_s = self.clock.lap(step)
    lr = float(self.program.base.schedule(step - 1))
    for writer, progress, train in zip(self.writers, self.progress, means):
      writer.write('train', step, {**train, 'lr': lr,
                                   'img_per_s': img_s / len(means)})
      progress.last_train = train
    loss = float(np.mean([m['train_loss'] for m in means]))
    records.log_train(step, self.program.plan.total_steps, loss, lr, img_s,
                      per_step_s)
    self.bar.update(step, {'loss': loss, 'img/s': img_s})
    self.clock.start_lap(step)
    return step_fn.reset_sums(state)

  def call_back(self, step: int, state: TrainState) -> bool:
    """Runs the callback (one seed) and records what it returns; True: stop
    training."""
    (writer,), (progress,) = self.writers, self.progress
    extra = self.program.callback(step, state) or {}
    if extra:
      writer.write('callback', step, extra)
    progress.stopped_early = bool(extra.get('stop_training', False))
    return progress.stopped_early

  def save(self, state: TrainState, step: int) -> None:
    """Each seed's checkpoint (a single-seed state), after the non-finite
    check."""
    step_fn = self.program.step_fn
    step_fn.check_finite(state, step)
    with self.clock.part('checkpoint'):
      for i, c in enumerate(self.ckpts):
        if c:
          c.save(step, step_fn.unstack(state, i), self.progress[i],
                 self.clock.loop_seconds())

  def after_last_step(self, state: TrainState,
                      trained: bool) -> list[dict[str, float]]:
    """The final non-finite check, the callback (when this run trained no
    step: it resumed a finished run) and each seed's final evaluation."""
    p = self.program
    step = int(np.ravel(to_host(state.step))[0])
    p.step_fn.check_finite(state, step)
    if p.callback is not None and not trained:
      extra = p.callback(step, state)
      if extra and jax.process_index() == 0:
        logging.info('callback at step %d: %s', step, extra)
    return p.evaluate.each(state)

  def finals(self, results, widths: Widths, info, steps_done: Sequence[int],
             setup_s: float) -> list[dict[str, Any]]:
    """Each seed's final metrics, recorded as 'final'."""
    p, finals = self.program, []
    for writer, metrics, progress, steps in zip(
        self.writers, results, self.progress, steps_done):
      final = final_metrics(metrics, p.eval_split, progress, widths, info,
                            p.base, steps, self.clock)
      final.update(p.final_extra)
      final['time_parts'] = self.clock.time_parts(setup_s)
      writer.write('final', final['steps'], final)
      finals.append(final)
    return finals


def last_step_of(start_step: int, total_steps: int, stopped: bool) -> int:
  """The step this run trains to: `total_steps`, or none after a stop."""
  if start_step > total_steps:
    logging.warning('The checkpoint (step %d) is past this run\'s last step '
                    '(%d): evaluating it as it is.', start_step, total_steps)
  return start_step if stopped else total_steps


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
