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

The loop is `loop.Program`'s, the one a single seed runs: here its step
object is `SeedsStep`, with one workdir per seed. Only the plain recipe is
batched (final training): no width optimizer's hooks or callback.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from wt_jax.nets.widths import Widths
from wt_jax.train import batches
from wt_jax.train import evaluator
from wt_jax.train import loop
from wt_jax.train.sharding import replicated
from wt_jax.train.sharding import stacked_batch_sharding
from wt_jax.train.sharding import to_host
from wt_jax.train.step import base_key
from wt_jax.train.step import jitted_reset_sums
from wt_jax.train.step import TrainState
from wt_jax.train.step import TrainStep


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

  def update_many(self, state: TrainState, batches, split=None):
    """`base.update_many` of every seed (not jitted): `batches` is
    `[seed, step, example, ...]`, `split` (the device copy of the training
    split, or None) shared by the seeds."""
    return jax.vmap(lambda s, b, k: self.base.update_many(s, b, k, split))(
        state, batches, self.keys)

  def _jit(self, fn, leading: int):
    mesh = self.base.mesh
    return jax.jit(fn, in_shardings=(self.shardings,
                                     stacked_batch_sharding(mesh, leading),
                                     replicated(mesh)),
                   out_shardings=self.shardings, donate_argnums=(0,))

  @functools.cached_property
  def jitted(self):
    """One step of every seed, `(state, [seed, ...] batch, split)`."""
    return self._jit(lambda s, b, split: jax.vmap(
        lambda s, b, k: self.base.update_fed(s, b, k, split))(
            s, b, self.keys), 1)

  @functools.cached_property
  def jitted_many(self):
    """Several steps, `[seed, step, example, ...]` batches."""
    return self._jit(self.update_many, 2)

  def __call__(self, state: TrainState, batch) -> TrainState:
    return self.jitted(state, batch, self.base.split)

  def run(self, state: TrainState, batches) -> TrainState:
    return self.jitted_many(state, batches, self.base.split)

  @functools.cached_property
  def reset_sums(self):
    return jitted_reset_sums(self.shardings)

  def seed_means(self, state: TrainState) -> list[dict[str, float]]:
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
  memory only). `wall_time_s` and `time_parts` are the shared program's.
  Seeds whose checkpoints are at different steps train one by one."""
  t_enter = time.perf_counter()
  seeds = tuple(int(s) for s in seeds)
  if len(workdirs) != len(seeds):
    raise ValueError(f'{len(workdirs)} workdirs for {len(seeds)} seeds')
  data_config = config.data if data_config is None else data_config
  info, plan, base = loop.build(config, widths, data_config, train_config,
                                seeds[0])
  program = loop.Program(
      base, SeedsStep(base, seeds), plan, tuple(workdirs),
      evaluator.Evaluator(base.model, base.mesh, data_config, eval_split,
                          plan.eval_batch_size, len(seeds)),
      functools.partial(batches.device_seed_batches, base.mesh, data_config,
                        plan.batch_size, seeds,
                        positions=base.feed is not None), eval_split,
      final_extra={'seeds_in_program': len(seeds)})
  finals = program.train(widths, info, t_enter)
  if finals is None:  # the seeds are at different steps
    return [loop.train_and_evaluate(
        config, widths, w, data_config=data_config, train_config=train_config,
        seed=s, eval_split=eval_split) for w, s in zip(workdirs, seeds)]
  return finals
