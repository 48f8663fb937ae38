"""The train state and the jitted, sharded train step (`TrainStep`).

`TrainStep(model, train_config, mesh, seed, image_shape, total_steps,
steps_per_epoch, loss_fn=None, extra_loss=None, extra_params=None)` is
everything one SGD step of `config.train`'s recipe needs, built once and
reused by the loop, the benchmarks and the tests:

    step = TrainStep(model, config.train, mesh, seed=0, image_shape=(32, 32,
                     3), total_steps=1000, steps_per_epoch=390)
    state = step.init()
    for batch in batches:  # global arrays, `sharding.global_batch`
      state = step(state, batch)

Hooks (all traced inside the one jitted, sharded step)
------------------------------------------------------
* `extra_loss(params) -> scalar` is added to the objective (MorphNet's FLOPs
  regularizer); its mean is logged as `extra_loss`.
* `loss_fn` (a `LossFn`) replaces the per-batch loss (default
  `recipe.cross_entropy_loss`; AutoSlim's sandwich rule: several masked
  forward passes + distillation).
* `extra_params` (`ExtraParams`): parameters trained beside the model's, as
  one more top-level entry of the params tree with its own optax transform
  (DMCP's architecture parameters); Flax ignores the entry when it applies
  the model, and `loss_fn` reads it from `params`.

Sharding (no pmap)
------------------
The state (params, batch_stats, SGD state, metric sums) is replicated
(`NamedSharding(mesh, P())`), the batch split over 'data'. As in big_vision:
`jax.eval_shape(init)` (the abstract state, `abstract_state`) -> its
shardings (`shardings`) -> `jax.jit(init, out_shardings=...)` (`init()`).
The step is `jax.jit` with explicit `in_shardings`/`out_shardings` and the
state donated. BatchNorm statistics are global: the mean over the batch axis
of a sharded array is a global mean (XLA inserts the all-reduce), so the
sharded step computes what the single-device step computes.

Non-finite loss
---------------
The step records on device the first step whose objective (including
`extra_loss`) is NaN or inf, and its value (`TrainState.nonfinite_step`,
`nonfinite_value`); `check_finite(state, step)` reads them on the host and
raises `NonFiniteLossError` naming that step.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import flax
import jax
from jax.sharding import Mesh
import jax.numpy as jnp
import numpy as np
import optax

from wt_jax.errors import NonFiniteLossError
from wt_jax.train import recipe
from wt_jax.train.sharding import replicated
from wt_jax.train.sharding import stacked_batch_sharding
from wt_jax.train.sharding import to_host

# `loss_fn(model, params, batch_stats, batch, rng, train_config)
#     -> (loss, (new_batch_stats, metrics))`:
# the per-batch training loss, traced inside the jitted, sharded train step.
# `model` is the Flax module, `batch` a dict of global (sharded) arrays
# {'image', 'label', 'mask'} plus 'step' (int32 scalar: the updates done
# before this one), `rng` a PRNG key unique to the step,
# `train_config` the plain (static) `config.train`. `loss` is a float32
# scalar, `new_batch_stats` the updated BN statistics (same structure as
# `batch_stats`), `metrics` a dict of float32 scalars (batch means), averaged
# over each log interval and logged as `train_<name>`.
LossFn = Callable[..., tuple[jax.Array, tuple[Any, Mapping[str, jax.Array]]]]
# `extra_loss(params) -> scalar`, added to the objective.
ExtraLoss = Callable[[Any], jax.Array]
RESERVED_METRICS = ('loss', 'extra_loss', 'count')


@dataclasses.dataclass(frozen=True, eq=False)
class ExtraParams:
  """Parameters trained beside the model's, in the same step.

  `params[name]` holds `init()` (called inside the jitted init); `tx` updates
  that entry, the recipe's SGD (`recipe.make_sgd`) the model's entries.
  """
  name: str
  init: Callable[[], Any]
  tx: optax.GradientTransformation


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32: number of completed updates
  params: Any
  batch_stats: Any
  opt_state: Any  # the SGD (optax) state
  sums: dict  # float32 metric sums since the last log step; 'count' = steps
  nonfinite_step: jax.Array  # int32: first step with a non-finite loss, or -1
  nonfinite_value: jax.Array  # float32: that loss


def base_key(seed) -> jax.Array:
  """The key each step's rng folds its step into: `fold_in(PRNGKey(seed),
  1)` (`seed` may be traced)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), 1)


def _variables(model, image_shape, seed):
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  return model.init(jax.random.PRNGKey(seed), x, train=False)


@dataclasses.dataclass(frozen=True, eq=False)
class TrainStep:
  """One SGD step of `train_config`'s recipe on `mesh`, and its state.

  Attributes:
    model: the Flax module (`models.build_model`).
    train_config: the full `config.train` block (static inside the step).
    mesh: the 1-D 'data' mesh (`sharding.make_mesh`).
    seed: parameters init from `PRNGKey(seed)`; the step's rng is
      `fold_in(fold_in(PRNGKey(seed), 1), step)`.
    image_shape: (height, width, channels) of one example.
    total_steps, steps_per_epoch: for the learning rate schedule.
    loss_fn: the per-batch `LossFn`; None: `recipe.cross_entropy_loss`.
    extra_loss: `params -> scalar` added to the objective, or None.
    extra_params: an `ExtraParams` entry of the params tree, or None.
    feed: the training split on the devices (`data.placement.DeviceSplit`):
      batches are then positions and draws, gathered inside the step; None:
      batches of images.
  """
  model: Any
  train_config: Any
  mesh: Mesh
  seed: int
  image_shape: tuple[int, ...]
  total_steps: int
  steps_per_epoch: float
  loss_fn: Optional[LossFn] = None
  extra_loss: Optional[ExtraLoss] = None
  extra_params: Optional[ExtraParams] = None
  feed: Any = None

  @functools.cached_property
  def schedule(self) -> optax.Schedule:
    return recipe.learning_rate_schedule(self.train_config, self.total_steps,
                                         self.steps_per_epoch)

  @functools.cached_property
  def tx(self) -> optax.GradientTransformation:
    sgd = recipe.make_sgd(self.train_config, self.schedule)
    extra = self.extra_params
    if extra is None:
      return sgd
    return optax.multi_transform(
        {'model': sgd, 'extra': extra.tx},
        lambda params: {k: 'extra' if k == extra.name else 'model'
                        for k in params})

  def _with_extra(self, params, call=lambda init: init()):
    """The model's params plus the `extra_params` entry (`call(init)`)."""
    if self.extra_params is None:
      return params
    return {**params, self.extra_params.name: call(self.extra_params.init)}

  @property
  def per_batch_loss(self) -> LossFn:
    return self.loss_fn or recipe.cross_entropy_loss

  @functools.cached_property
  def metric_names(self) -> tuple[str, ...]:
    """Names of the summed metrics (from an abstract trace of the loss)."""
    shape = tuple(self.image_shape)
    variables = jax.eval_shape(lambda: _variables(self.model, shape, 0))
    variables = {**variables, 'params': self._with_extra(
        variables['params'], jax.eval_shape)}
    batch = {'image': jax.ShapeDtypeStruct((2,) + shape, jnp.float32),
             'label': jax.ShapeDtypeStruct((2,), jnp.int32),
             'mask': jax.ShapeDtypeStruct((2,), jnp.float32),
             'step': jax.ShapeDtypeStruct((), jnp.int32)}
    _, (_, metrics) = jax.eval_shape(
        lambda v, b: self.per_batch_loss(
            self.model, v['params'], v['batch_stats'], b,
            jax.random.PRNGKey(0), self.train_config), variables, batch)
    reserved = set(RESERVED_METRICS) & set(metrics)
    if reserved:
      raise ValueError(f'loss_fn metrics may not be named {sorted(reserved)} '
                       '(reserved names)')
    names = ['loss'] + (['extra_loss'] if self.extra_loss is not None else [])
    return tuple(names + sorted(metrics))

  def initial_state(self, seed=None) -> TrainState:
    """The initial state of `seed` (default `self.seed`; may be traced: the
    seeds of `seeds.SeedsStep` are vmapped)."""
    seed = self.seed if seed is None else seed
    variables = _variables(self.model, self.image_shape, seed)
    params = self._with_extra(variables['params'])
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        batch_stats=variables.get('batch_stats', {}),
        opt_state=self.tx.init(params),
        sums={k: jnp.zeros((), jnp.float32)
              for k in self.metric_names + ('count',)},
        nonfinite_step=jnp.full((), -1, jnp.int32),
        nonfinite_value=jnp.zeros((), jnp.float32))

  @functools.cached_property
  def abstract_state(self) -> TrainState:
    """`jax.eval_shape` of the init, with the (replicated) shardings: the
    checkpoint restore target. Nothing is computed or allocated."""
    rep = replicated(self.mesh)
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep),
        jax.eval_shape(self.initial_state))

  @functools.cached_property
  def shardings(self):
    """The state's shardings (a TrainState of NamedShardings)."""
    return jax.tree.map(lambda x: x.sharding, self.abstract_state)

  @functools.cached_property
  def _jitted_init(self):
    return jax.jit(self.initial_state, out_shardings=self.shardings)

  def init(self) -> TrainState:
    """The initial state, placed by `shardings`."""
    # The non-partitionable threefry: XLA:CPU compiles this init 5x faster
    # (1 s instead of 6 s for resnet_tiny), and the state is replicated.
    with jax.threefry_partitionable(False):
      return self._jitted_init()

  @functools.cached_property
  def _base_key(self) -> np.ndarray:
    """A host value, even when first asked for inside a trace (a cached
    tracer would leak into the step's other programs)."""
    with jax.ensure_compile_time_eval():
      return np.asarray(base_key(self.seed))

  def _objective(self, params, state: TrainState, batch, rng):
    loss, (new_bs, metrics) = self.per_batch_loss(
        self.model, params, state.batch_stats, {**batch, 'step': state.step},
        rng, self.train_config)
    extra = (jnp.asarray(self.extra_loss(params), jnp.float32)
             if self.extra_loss is not None else jnp.zeros((), jnp.float32))
    return loss + extra, (new_bs, metrics, extra)

  def update(self, state: TrainState, batch, key=None) -> TrainState:
    """The step function itself, `(state, batch) -> state` (not jitted).

    The objective is `loss_fn(...) + extra_loss(params)` (weight decay is in
    the SGD chain). Metrics are summed into `state.sums`; the first
    non-finite objective is recorded in `state.nonfinite_step/value`. `key`:
    the seed's `base_key` (default `self.seed`'s; vmapped by `SeedsStep`).
    """
    key = self._base_key if key is None else key
    rng = jax.random.fold_in(key, state.step)
    (total, (new_bs, metrics, extra)), grads = jax.value_and_grad(
        self._objective, has_aux=True)(state.params, state, batch, rng)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    values = {'loss': total, **metrics, 'count': 1.0}
    if self.extra_loss is not None:
      values['extra_loss'] = extra
    sums = {k: s + jnp.asarray(values[k], jnp.float32)
            for k, s in state.sums.items()}
    step = state.step + 1
    first = (~jnp.isfinite(total)) & (state.nonfinite_step < 0)
    return TrainState(
        step=step, params=params, batch_stats=new_bs, opt_state=opt_state,
        sums=sums,
        nonfinite_step=jnp.where(first, step, state.nonfinite_step),
        nonfinite_value=jnp.where(first, total.astype(jnp.float32),
                                  state.nonfinite_value))

  def update_fed(self, state: TrainState, batch, key=None,
                 split=None) -> TrainState:
    """`update`, a positions batch first gathered from `split` (the device
    copy of the training split, `feed.images`) when the step has a feed."""
    if self.feed is not None:
      batch = self.feed.gather(split, batch)
    return self.update(state, batch, key)

  def update_many(self, state: TrainState, batches, key=None,
                  split=None) -> TrainState:
    """`update_fed` of each batch of `batches` (a leading axis of steps),
    in one `lax.scan`."""
    return jax.lax.scan(
        lambda s, b: (self.update_fed(s, b, key, split), None), state,
        batches)[0]

  def _jit(self, fn, leading: int):
    """`fn(state, batches, split)` jitted: the state donated and replicated,
    the batches' examples split over 'data' after `leading` axes."""
    return jax.jit(fn, in_shardings=(self.shardings,
                                     stacked_batch_sharding(self.mesh,
                                                            leading),
                                     replicated(self.mesh)),
                   out_shardings=self.shardings, donate_argnums=(0,))

  @functools.cached_property
  def jitted(self):
    """One step, `(state, batch, split) -> state`, jitted (not a scan of
    one: XLA:CPU runs the convolutions of a loop body far slower, ~35x for
    ResNet-20, bench/seeds_step.py)."""
    return self._jit(lambda s, b, split: self.update_fed(s, b, split=split),
                     0)

  @functools.cached_property
  def jitted_many(self):
    """Several steps, `(state, [steps, ...] batches, split) -> state`."""
    return self._jit(lambda s, b, split: self.update_many(s, b, split=split),
                     1)

  @property
  def split(self):
    """The device copy of the training split the step reads (or None)."""
    return None if self.feed is None else self.feed.images

  def __call__(self, state: TrainState, batch) -> TrainState:
    return self.jitted(state, batch, self.split)

  def run(self, state: TrainState, batches) -> TrainState:
    """`len(batches)` steps in one call (leading axis of steps)."""
    return self.jitted_many(state, batches, self.split)

  @functools.cached_property
  def reset_sums(self) -> Callable[[TrainState], TrainState]:
    """Jitted `state -> state` with the metric sums zeroed (donated)."""
    return jitted_reset_sums(self.shardings)

  def mean_metrics(self, state: TrainState) -> dict[str, float]:
    """The metric means since the last reset, by their logged names:
    `train_loss` (the objective), `extra_loss`, `train_<name>`."""
    return self.means(to_host(state.sums))

  def means(self, sums: Mapping[str, Any]) -> dict[str, float]:
    """`mean_metrics` of one run's metric sums, on the host."""
    count = max(float(sums['count']), 1.0)
    return {('train_loss' if k == 'loss' else k if k == 'extra_loss' else
             f'train_{k}'): float(sums[k]) / count for k in self.metric_names}

  # The loop's view of a state as the seeds it holds (`loop.Program`): here
  # one; `seeds.SeedsStep` the same for several seeds, stacked.

  def stack(self, states: Sequence[TrainState]) -> TrainState:
    """The state of the restored single-seed `states` (one: itself)."""
    (state,) = states
    return state

  def unstack(self, state: TrainState, i: int) -> TrainState:
    """The `i`-th seed's state, as its checkpoint holds it (itself)."""
    if i:
      raise IndexError(f'seed {i} of a one-seed state')
    return state

  def seed_means(self, state: TrainState) -> list[dict[str, float]]:
    """Per seed, `mean_metrics` (one)."""
    return [self.mean_metrics(state)]

  def check_finite(self, state: TrainState, detected_at: int) -> None:
    """Raises NonFiniteLossError if any step so far had a non-finite loss."""
    self.raise_if_nonfinite(
        *to_host((state.nonfinite_step, state.nonfinite_value)), detected_at)

  def raise_if_nonfinite(self, bad_step, value, detected_at: int) -> None:
    """`check_finite` of the host values `state.nonfinite_step/value`."""
    if int(bad_step) >= 0:
      raise NonFiniteLossError(int(bad_step), float(value), (
          f'training loss is {float(value)} at step {int(bad_step)} of '
          f'{self.total_steps} ({self.model.widths.arch}, seed {self.seed}); '
          f'detected at step {detected_at} (the loss is checked every '
          f'log_every={max(1, int(self.train_config.log_every))} steps, '
          'before each checkpoint and at the end).'))


def jitted_reset_sums(shardings) -> Callable[[TrainState], TrainState]:
  """Jitted `state -> state` with the metric sums zeroed, the state placed
  by `shardings` and donated."""
  return jax.jit(
      lambda s: s.replace(sums=jax.tree.map(jnp.zeros_like, s.sums)),
      in_shardings=(shardings,), out_shardings=shardings,
      donate_argnums=(0,))
