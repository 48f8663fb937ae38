"""Seeds in one program: `train_and_evaluate_seeds` (`train.batch_seeds`).

On an accelerator a CIFAR-sized network leaves most of the chip idle, and
the paper's protocol trains every arm over several seeds. `SeedsStep` vmaps
a `TrainStep` over a leading seed axis of the state: one jitted, sharded
step updates S networks, each from its own init (`PRNGKey(seed)`), on its
own data order (`batches.device_seed_batches`: each seed's batches, stacked
`[seed, example, ...]`, the examples split over 'data') with its own
per-step rng. Each seed therefore computes what its separate run computes,
to float tolerance (a batched convolution may sum in another order).
Evaluation is one pass over the split for all seeds (`Evaluator(seeds=S)`).

Each seed keeps its own workdir: its checkpoints (the single-seed state,
the same format as a separate run's, so either mode resumes the other's),
metrics.jsonl and TensorBoard scalars. A re-run resumes every seed from its
latest checkpoint; if the seeds are not all at the same step (a kill
between two seeds' saves, or seeds that ran separately), they are trained
one by one (`loop.train_and_evaluate`), which also resumes each.

Only the plain recipe is batched (final training): no width optimizer's
hooks or callback.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from typing import Any, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from wt_jax import console
from wt_jax.train import batches
from wt_jax.train import checkpoints
from wt_jax.train import evaluator
from wt_jax.train import loop
from wt_jax.train import records
from wt_jax.train.sharding import replicated
from wt_jax.train.sharding import seeds_batch_sharding
from wt_jax.train.sharding import to_host
from wt_jax.train.step import base_key
from wt_jax.train.step import jitted_reset_sums
from wt_jax.train.step import TrainState
from wt_jax.train.step import TrainStep
from wt_jax.widths import Widths


@dataclasses.dataclass(frozen=True, eq=False)
class SeedsStep:
  """`base`'s step vmapped over `seeds`: a state whose every leaf has a
  leading axis of `len(seeds)` (`base.seed` is not used)."""
  base: TrainStep
  seeds: tuple[int, ...]

  def single(self, i: int) -> TrainStep:
    """The separate run's step of seed `seeds[i]` (nothing compiled)."""
    return dataclasses.replace(self.base, seed=int(self.seeds[i]))

  def _init_all(self) -> TrainState:
    # The seeds (and below the keys) are numpy constants of the program:
    # the same on every process, no host array to place.
    seeds = np.asarray(self.seeds, np.int32)
    return jax.vmap(self.base.initial_state)(seeds)

  @functools.cached_property
  def shardings(self):
    rep = replicated(self.base.mesh)
    return jax.tree.map(lambda _: rep, jax.eval_shape(self._init_all))

  def init(self) -> TrainState:
    """Every seed's initial state, stacked (each its separate run's)."""
    with jax.threefry_partitionable(False):  # as `TrainStep.init`
      return jax.jit(self._init_all, out_shardings=self.shardings)()

  def stack(self, states: Sequence[TrainState]) -> TrainState:
    """Single-seed states (restored checkpoints) -> one stacked state."""
    return jax.jit(lambda *s: jax.tree.map(lambda *x: jnp.stack(x), *s),
                   out_shardings=self.shardings)(*states)

  @functools.cached_property
  def _unstack(self):
    return jax.jit(lambda s, i: jax.tree.map(
        lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), s),
                   out_shardings=self.base.shardings)

  def unstack(self, state: TrainState, i: int) -> TrainState:
    """Seed `seeds[i]`'s state, as its separate run holds it (placed by
    `base.shardings`: its checkpoint is a separate run's)."""
    return self._unstack(state, np.int32(i))

  @functools.cached_property
  def keys(self) -> np.ndarray:
    """Each seed's `step.base_key`, as its separate run folds steps in."""
    with jax.ensure_compile_time_eval():  # host values, even when traced
      return np.asarray(jax.vmap(base_key)(np.asarray(self.seeds, np.int32)))

  def update(self, state: TrainState, batch) -> TrainState:
    """`base.update` of every seed (not jitted)."""
    return jax.vmap(self.base.update)(state, batch, self.keys)

  @functools.cached_property
  def jitted(self):
    return jax.jit(self.update,
                   in_shardings=(self.shardings,
                                 seeds_batch_sharding(self.base.mesh)),
                   out_shardings=self.shardings, donate_argnums=(0,))

  def __call__(self, state: TrainState, batch) -> TrainState:
    return self.jitted(state, batch)

  @functools.cached_property
  def reset_sums(self):
    return jitted_reset_sums(self.shardings)

  def mean_metrics(self, state: TrainState) -> list[dict[str, float]]:
    """Per seed, `TrainStep.mean_metrics`."""
    sums = to_host(state.sums)
    return [self.base.means({k: v[i] for k, v in sums.items()})
            for i in range(len(self.seeds))]

  def check_finite(self, state: TrainState, detected_at: int) -> None:
    """NonFiniteLossError naming the first seed with a non-finite loss."""
    steps, values = to_host((state.nonfinite_step, state.nonfinite_value))
    for i in range(len(self.seeds)):
      self.single(i).raise_if_nonfinite(steps[i], values[i], detected_at)


def train_and_evaluate_seeds(config, widths: Widths,
                             workdirs: Sequence[Optional[str]],
                             seeds: Sequence[int], *, data_config=None,
                             train_config=None,
                             eval_split: str = 'test') -> list[dict[str, Any]]:
  """Trains `build_model(widths)` once per seed, all in one program, and
  returns each seed's final metrics (those of `loop.train_and_evaluate`,
  plus `seeds_in_program`). `workdirs[i]` is seed `seeds[i]`'s (None: in
  memory only). `wall_time_s` and `time_parts` are the shared program's."""
  t_enter = time.perf_counter()
  seeds = tuple(int(s) for s in seeds)
  if len(workdirs) != len(seeds):
    raise ValueError(f'{len(workdirs)} workdirs for {len(seeds)} seeds')
  data_config = config.data if data_config is None else data_config
  info, plan, base = loop.build(config, widths, data_config, train_config,
                                seeds[0])
  step_fn = SeedsStep(base, seeds)
  ckpts = [checkpoints.for_workdir(w, base.train_config.keep_checkpoints)
           for w in workdirs]
  restored = _restore(ckpts, step_fn, widths, info.num_classes)
  if restored is None:
    return [loop.train_and_evaluate(
        config, widths, w, data_config=data_config, train_config=train_config,
        seed=s, eval_split=eval_split) for w, s in zip(workdirs, seeds)]
  state, progress, start_step = restored
  last_step = loop.last_step_of(start_step, plan.total_steps, False)
  records.log_start(widths, plan, base.mesh.size, base.abstract_state.params)
  evaluate = evaluator.Evaluator(base.model, base.mesh, data_config,
                                 eval_split, plan.eval_batch_size, len(seeds))
  inputs = batches.device_seed_batches(base.mesh, data_config,
                                       plan.batch_size, seeds, start_step)
  setup_s = time.perf_counter() - t_enter
  clock = records.Clock(start_step, plan.batch_size * len(seeds))
  with contextlib.ExitStack() as stack:
    writers = [stack.enter_context(contextlib.closing(
        records.Records(w, start_step))) for w in workdirs]
    bar = stack.enter_context(contextlib.closing(
        console.Progress(plan.total_steps, start_step)))
    for c in ckpts:
      if c:
        stack.enter_context(c)
    body = _SeedsLoop(step_fn, plan, ckpts, evaluate, writers, clock, bar,
                      eval_split)
    state = body.run(state, progress, start_step, last_step, inputs)
    clock.stop()
    for c in ckpts:
      if c:
        c.wait()
        clock.parts['checkpoint'] += c.close_seconds
    with clock.part('eval'):
      step_fn.check_finite(state, last_step)
      results = evaluate(state)
    finals, steps_done = [], to_host(state.step)
    for i in range(len(seeds)):
      final = loop.final_metrics(
          results[i], eval_split, progress[i], widths, info,
          step_fn.single(i), int(steps_done[i]), clock)
      final['seeds_in_program'] = len(seeds)
      final['time_parts'] = clock.time_parts(setup_s)
      writers[i].write('final', final['steps'], final)
      records.log_final(final)
      finals.append(final)
  return finals


def _restore(ckpts, step_fn: SeedsStep, widths: Widths, num_classes: int):
  """(stacked state, each seed's `Progress`, start step): every seed's
  latest intact checkpoint, or a fresh init of all; None (the managers
  closed) when the seeds are not all at the same step."""
  base = step_fn.base
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
class _SeedsLoop:
  """The `for step` loop of seeds in one program (`loop._Loop`'s body,
  each record and checkpoint written per seed)."""
  step_fn: SeedsStep
  plan: loop.Plan
  ckpts: list
  evaluate: evaluator.Evaluator
  writers: list
  clock: records.Clock
  bar: console.Progress
  eval_split: str

  def run(self, state, progress, start_step, last_step, inputs):
    plan, step = self.plan, start_step
    try:
      for step in range(start_step + 1, last_step + 1):
        with self.clock.part('first_step', when=step == start_step + 1):
          state = self.step_fn(state, next(inputs))
        for p in progress:
          p.examples_seen += plan.batch_size
        is_last = step == last_step
        if plan.is_log(step, is_last):
          state = self.log_train(state, step, progress)
        if plan.is_eval(step, is_last):
          with self.clock.paused():
            for writer, metrics in zip(self.writers, self.evaluate(state)):
              writer.write('eval', step, metrics, prefix=self.eval_split)
        if any(self.ckpts) and plan.is_checkpoint(step, is_last, False):
          self.step_fn.check_finite(state, step)
          with self.clock.part('checkpoint'):
            for i, c in enumerate(self.ckpts):
              if c:
                c.save(step, self.step_fn.unstack(state, i), progress[i],
                       self.clock.loop_seconds())
    except KeyboardInterrupt as e:
      e.wt_jax_step = step  # for the CLI's one-line message
      raise
    return state

  def log_train(self, state, step, progress):
    """Each seed's means since the last log step; the sums reset."""
    self.step_fn.check_finite(state, step)
    means = self.step_fn.mean_metrics(state)
    img_s, per_step_s = self.clock.lap(step)
    lr = float(self.step_fn.base.schedule(step - 1))
    for writer, p, train in zip(self.writers, progress, means):
      writer.write('train', step, {**train, 'lr': lr,
                                   'img_per_s': img_s / len(means)})
      p.last_train = train
    loss = float(np.mean([m['train_loss'] for m in means]))
    records.log_train(step, self.plan.total_steps, loss, lr, img_s,
                      per_step_s)
    self.bar.update(step, {'loss': loss, 'img/s': img_s})
    self.clock.start_lap(step)
    return self.step_fn.reset_sums(state)
