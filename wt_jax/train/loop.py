"""Training and evaluation of one width vector: jit + sharding, multi-host.

`train_and_evaluate(config, widths, workdir, ...)` trains `build_model(widths)`
on `config.data` with the `config.train` recipe and returns its final metrics.
Width optimizers call it (MorphNet through `extra_loss` + `callback`, AutoSlim
through `loss_fn`), and so does the final training of every arm.

Recipe
------
* SGD with (Nesterov) momentum, `optax.sgd`.
* Weight decay in the *L2 form* of PyTorch's `SGD(weight_decay=...)`:
  `optax.add_decayed_weights(wd, mask)` adds `wd * p` to the gradient before
  momentum, which is exactly the gradient of `wd / 2 * ||p||^2` added to the
  loss (the logged loss does not include that term). With
  `decay_bn_and_bias=False` the mask keeps only conv and FC kernels; BN scale
  and bias and the FC bias are not decayed (`weight_decay_mask`).
* Label smoothing; learning rate `base_lr * batch_size / 256`, linear warm-up
  from 0 over `warmup_epochs`, then 'cosine' or 'linear' decay to 0 at the
  last step, or 'constant' (`learning_rate_schedule`).
* `num_steps > 0` overrides `epochs`. `config.dtype='bfloat16'` computes in
  bfloat16 (parameters, optimizer state and BN statistics stay float32).

Hooks (all traced inside the one jitted, sharded train step)
-----------------------------------------------------------
* `extra_loss(params) -> scalar` is added to the objective (MorphNet's FLOPs
  regularizer); its mean is logged as `extra_loss`.
* `loss_fn(model, params, batch_stats, batch, rng, train_config)
  -> (loss, (new_batch_stats, metrics))` replaces the per-batch loss (default
  `cross_entropy_loss`; AutoSlim's sandwich rule: several masked forward
  passes + distillation). `batch` holds global arrays {'image', 'label',
  'mask'}, `rng` is unique to the step, `metrics` a dict of scalars logged as
  `train_<name>`.
* `callback(step, state) -> dict | None` runs on the host every
  `callback_every` steps and after the last step (MorphNet exports its
  structure from `state.params`); a returned dict is logged, and
  `stop_training: True` in it ends training after this step (a checkpoint is
  saved and marked, so a re-run does not train on). Under multi-host, every
  process runs the callback and must return the same `stop_training`.

Sharding (no pmap)
------------------
One `Mesh` with a 'data' axis over all devices of all processes. The train
state (params, batch_stats, optimizer state, metric sums) is replicated
(`NamedSharding(mesh, P())`), the batch is split over 'data'
(`NamedSharding(mesh, P('data'))`). The state is created by
`jax.eval_shape` (abstract state) -> shardings -> `jax.jit(init,
out_shardings=...)`; the train step is `jax.jit` with explicit
`in_shardings`/`out_shardings` and the state donated. BatchNorm statistics
are global: the mean over the batch axis of a sharded array is a global mean
(XLA inserts the all-reduce), so the sharded step computes what the
single-device step computes (tests/test_train.py checks it).

Multi-host
----------
`maybe_initialize_distributed(config)` calls `jax.distributed.initialize()`
when `config.distributed` or the environment variable WT_JAX_DISTRIBUTED=1
is set; call it before anything touches devices. Each process reads its own
block of the data (`process_index`/`process_count` of `data.make_dataset`),
batches of `batch_size // process_count`, and the global batch is assembled
with `jax.make_array_from_process_local_data`. On CPU, cross-process
collectives use gloo (`jax_cpu_collectives_implementation='gloo'`, the
default of this jax). Only process 0 writes metrics files and logs progress;
orbax writes checkpoints from all processes itself.

Resume
------
Checkpoints (orbax `CheckpointManager`, `workdir/checkpoints`) hold the whole
train state plus a small JSON `progress` item (examples seen, wall time, the
last logged train metrics). A re-run with the same workdir resumes from the
latest step, bit-identically:
* the data order is a pure function of (seed, epoch): epoch e is
  `make_dataset(..., seed=epoch_seed(seed, e), num_epochs=1)`, so resuming at
  step s rebuilds epoch s // steps_per_epoch and skips s % steps_per_epoch
  batches (at most one epoch is skipped through the input pipeline);
* the per-step rng is `fold_in(key(seed), step)`;
* the running metric sums live in the train state (reset at each log step).
Before any restore, `workdir/checkpoints/structure.json` (arch, depth, width
vector, num_classes and the shape of every state leaf, written when a fresh
run starts) is compared with this run; a different width vector or
architecture raises `CheckpointMismatchError` naming the difference. (If the
JSON is missing, the shapes in orbax's metadata are compared instead.)

Non-finite loss
---------------
The train step records on device the first step whose loss (including
`extra_loss`) is NaN or inf, and its value. The host reads it at log steps,
before every checkpoint save and after the last step, so training stops at
most `log_every` steps after the event with `NonFiniteLossError` (a
`FloatingPointError`) naming the exact step and value; no checkpoint with a
non-finite loss behind it is ever written.

Files in workdir (process 0): `metrics.jsonl` (one JSON record per line:
kind 'train' | 'eval' | 'callback' | 'final', step, values), TensorBoard
summaries (clu `create_default_writer`), `checkpoints/`. `workdir=None`
trains in memory only (no files, no checkpoints).
"""
from __future__ import annotations

import collections
import json
import os
import time
from typing import Any, Callable, Iterator, Mapping, Optional

from absl import logging
from clu import metric_writers
from clu import parameter_overview
from etils import epath
import flax
import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from wt_jax import cost
from wt_jax import files
from wt_jax import models
from wt_jax.errors import CheckpointMismatchError
from wt_jax.errors import NonFiniteLossError
from wt_jax.train.sharding import batch_sharding
from wt_jax.train.sharding import global_batch
from wt_jax.train.sharding import make_mesh
from wt_jax.train.sharding import replicated
from wt_jax.train.sharding import to_host
from wt_jax.widths import Widths

# `loss_fn(model, params, batch_stats, batch, rng, train_config)
#     -> (loss, (new_batch_stats, metrics))`:
# the per-batch training loss, traced inside the jitted, sharded train step.
# `model` is the Flax module, `batch` a dict of global (sharded) arrays
# {'image', 'label', 'mask'}, `rng` a PRNG key unique to the step,
# `train_config` the plain (static) `config.train`. `loss` is a float32
# scalar, `new_batch_stats` the updated BN statistics (same structure as
# `batch_stats`), `metrics` a dict of float32 scalars (batch means), averaged
# over each log interval and logged as `train_<name>`.
LossFn = Callable[..., tuple[jax.Array, tuple[Any, Mapping[str, jax.Array]]]]

TRAIN_DEFAULTS = dict(
    batch_size=128, epochs=10.0, num_steps=0, base_lr=0.1, schedule='cosine',
    warmup_epochs=1.0, momentum=0.9, nesterov=True, weight_decay=5e-4,
    decay_bn_and_bias=False, label_smoothing=0.0, log_every=50, eval_every=0,
    checkpoint_every=500, keep_checkpoints=2, eval_batch_size=256)
SCHEDULES = ('cosine', 'linear', 'constant')
STRUCTURE_FILE = 'structure.json'
METRICS_FILE = 'metrics.jsonl'


def _tc(train_config, name):
  """`train_config.name`, or its default when the field is absent."""
  try:
    return train_config[name]
  except (KeyError, AttributeError, TypeError):
    return getattr(train_config, name, TRAIN_DEFAULTS[name])


# ----------------------------------------------------------------------------
# Multi-host set-up and the mesh.
# ----------------------------------------------------------------------------


def derive_train_config(train_config, **overrides):
  """A copy of `train_config` with `overrides` set (width optimizers use it)."""
  tc = train_config.copy_and_resolve_references()
  with tc.unlocked():
    for name, value in overrides.items():
      tc[name] = value
  return tc


# ----------------------------------------------------------------------------
# Optimizer and schedule.
# ----------------------------------------------------------------------------


def peak_learning_rate(train_config) -> float:
  return float(_tc(train_config, 'base_lr')) * _tc(train_config,
                                                   'batch_size') / 256.0


def learning_rate_schedule(train_config, total_steps: int,
                           steps_per_epoch: float) -> optax.Schedule:
  """lr(count) for the update of step count + 1 (count = 0, 1, ...).

  peak = base_lr * batch_size / 256; w = round(warmup_epochs *
  steps_per_epoch), capped at total_steps. count < w: peak * count / w.
  Then, with p = (count - w) / max(1, total_steps - w):
  cosine peak * (1 + cos(pi p)) / 2, linear peak * (1 - p), constant peak.
  """
  name = _tc(train_config, 'schedule')
  if name not in SCHEDULES:
    raise ValueError(f'config.train.schedule={name!r} is invalid: expected one '
                     f'of {SCHEDULES}')
  peak = peak_learning_rate(train_config)
  warmup = min(int(round(float(_tc(train_config, 'warmup_epochs')) *
                         steps_per_epoch)), total_steps)
  decay = max(1, total_steps - warmup)

  def schedule(count):
    # numpy on the host (no XLA compile for logging), jnp when traced.
    xp = np if isinstance(count, (int, float, np.number, np.ndarray)) else jnp
    count = xp.asarray(count, xp.float32)
    warm = peak * count / max(warmup, 1)
    p = xp.clip((count - warmup) / decay, 0.0, 1.0)
    if name == 'cosine':
      after = peak * 0.5 * (1.0 + xp.cos(xp.pi * p))
    elif name == 'linear':
      after = peak * (1.0 - p)
    else:
      after = xp.full_like(p, peak)
    return xp.where(count < warmup, warm, after)

  return schedule


def weight_decay_mask(params, decay_bn_and_bias: bool):
  """True where weight decay applies: every leaf, or only the kernels.

  With `decay_bn_and_bias=False`, conv and FC kernels ('kernel' leaves) are
  decayed; BN scale/bias and the FC bias are not.
  """
  if decay_bn_and_bias:
    return jax.tree.map(lambda _: True, params)
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params)


def make_optimizer(train_config, schedule: optax.Schedule
                   ) -> optax.GradientTransformation:
  """L2 weight decay (masked) + SGD with (Nesterov) momentum."""
  wd = float(_tc(train_config, 'weight_decay'))
  momentum = float(_tc(train_config, 'momentum'))
  parts = []
  if wd > 0:
    decay_all = bool(_tc(train_config, 'decay_bn_and_bias'))
    parts.append(optax.add_decayed_weights(
        wd, mask=lambda p: weight_decay_mask(p, decay_all)))
  parts.append(optax.sgd(schedule, momentum=momentum or None,
                         nesterov=bool(_tc(train_config, 'nesterov')) and
                         momentum > 0))
  return optax.chain(*parts)


# ----------------------------------------------------------------------------
# Loss, train state, train and eval steps.
# ----------------------------------------------------------------------------


def cross_entropy_loss(model, params, batch_stats, batch, rng, train_config):
  """Default `LossFn`: softmax cross-entropy with label smoothing (masked)."""
  del rng
  logits, new_vars = model.apply(
      {'params': params, 'batch_stats': batch_stats}, batch['image'],
      train=True, mutable=['batch_stats'])
  labels = jax.nn.one_hot(batch['label'], logits.shape[-1])
  smoothing = float(_tc(train_config, 'label_smoothing'))
  if smoothing:
    labels = optax.smooth_labels(labels, smoothing)
  mask = batch['mask']
  denom = jnp.maximum(mask.sum(), 1.0)
  loss = (optax.softmax_cross_entropy(logits, labels) * mask).sum() / denom
  correct = (jnp.argmax(logits, -1) == batch['label']) * mask
  return loss, (new_vars['batch_stats'], {'accuracy': correct.sum() / denom})


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32: number of completed updates
  params: Any
  batch_stats: Any
  opt_state: Any
  sums: dict  # float32 metric sums since the last log step; 'count' = steps
  nonfinite_step: jax.Array  # int32: first step with a non-finite loss, or -1
  nonfinite_value: jax.Array  # float32: that loss


def _variables(model, image_shape, seed):
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  return model.init(jax.random.PRNGKey(seed), x, train=False)


def metric_names(model, image_shape, *, loss_fn: Optional[LossFn] = None,
                 extra_loss=None, train_config=None) -> tuple[str, ...]:
  """Names of the summed train metrics (from an abstract trace of loss_fn)."""
  loss_fn = loss_fn or cross_entropy_loss
  variables = jax.eval_shape(lambda: _variables(model, image_shape, 0))
  batch = {'image': jax.ShapeDtypeStruct((2,) + tuple(image_shape),
                                         jnp.float32),
           'label': jax.ShapeDtypeStruct((2,), jnp.int32),
           'mask': jax.ShapeDtypeStruct((2,), jnp.float32)}
  _, (_, metrics) = jax.eval_shape(
      lambda v, b: loss_fn(model, v['params'], v['batch_stats'], b,
                           jax.random.PRNGKey(0), train_config),
      variables, batch)
  reserved = {'loss', 'extra_loss', 'count'} & set(metrics)
  if reserved:
    raise ValueError(f'loss_fn metrics may not be named {sorted(reserved)} '
                     '(reserved names)')
  names = ['loss'] + (['extra_loss'] if extra_loss is not None else [])
  return tuple(names + sorted(metrics))


def state_initializer(model, tx, mesh: Mesh, *, seed: int, image_shape,
                      names: tuple[str, ...]):
  """(init, target): a nullary init function and the abstract state.

  `target` is `jax.eval_shape(init)` with the (replicated) shardings attached:
  the restore target, and `target_shardings(target)` are the out_shardings of
  the jitted init. Nothing is computed or allocated here.
  """

  def init():
    variables = _variables(model, image_shape, seed)
    params = variables['params']
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        batch_stats=variables.get('batch_stats', {}),
        opt_state=tx.init(params),
        sums={k: jnp.zeros((), jnp.float32) for k in names + ('count',)},
        nonfinite_step=jnp.full((), -1, jnp.int32),
        nonfinite_value=jnp.zeros((), jnp.float32))

  abstract = jax.eval_shape(init)
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                     sharding=replicated(mesh)), abstract)
  return init, target


def target_shardings(target):
  return jax.tree.map(lambda x: x.sharding, target)


def create_state(init, target):
  """The jitted init, its outputs placed by the target's shardings."""
  # The non-partitionable threefry: XLA:CPU compiles this init 5x faster
  # (1 s instead of 6 s for resnet_tiny), and the state is replicated anyway.
  with jax.threefry_partitionable(False):
    return jax.jit(init, out_shardings=target_shardings(target))()


def init_state(model, tx, mesh: Mesh, *, seed: int, image_shape,
               names: tuple[str, ...]):
  """(state, state_shardings): eval_shape -> shardings -> jitted init."""
  init, target = state_initializer(model, tx, mesh, seed=seed,
                                   image_shape=image_shape, names=names)
  return create_state(init, target), target_shardings(target)


def make_train_step(model, tx, mesh: Mesh, state_shardings, *, seed: int,
                    train_config, loss_fn: Optional[LossFn] = None,
                    extra_loss: Optional[Callable[[Any], jax.Array]] = None):
  """The jitted, sharded train step `(state, batch) -> state` (donates state).

  The objective is `loss_fn(...) + extra_loss(params)` (weight decay is in
  the optimizer). Metrics are summed into `state.sums`; the first non-finite
  objective is recorded in `state.nonfinite_step/value`.
  """
  loss_fn = loss_fn or cross_entropy_loss
  base_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)

  def step_fn(state: TrainState, batch):
    rng = jax.random.fold_in(base_key, state.step)

    def objective(params):
      loss, (new_bs, metrics) = loss_fn(model, params, state.batch_stats,
                                        batch, rng, train_config)
      extra = (jnp.asarray(extra_loss(params), jnp.float32)
               if extra_loss is not None else jnp.zeros((), jnp.float32))
      return loss + extra, (new_bs, metrics, extra)

    (total, (new_bs, metrics, extra)), grads = jax.value_and_grad(
        objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    values = {'loss': total, **metrics, 'count': 1.0}
    if extra_loss is not None:
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

  return jax.jit(step_fn, in_shardings=(state_shardings, batch_sharding(mesh)),
                 out_shardings=state_shardings, donate_argnums=(0,))


def _reset_sums_fn(state_shardings):
  return jax.jit(
      lambda s: s.replace(sums=jax.tree.map(jnp.zeros_like, s.sums)),
      in_shardings=(state_shardings,), out_shardings=state_shardings,
      donate_argnums=(0,))


def make_eval_step(model, mesh: Mesh):
  """Jitted `(params, batch_stats, batch, sums) -> sums` of masked counts."""
  rep = replicated(mesh)

  def eval_fn(params, batch_stats, batch, sums):
    logits = model.apply({'params': params, 'batch_stats': batch_stats},
                         batch['image'], train=False)
    mask = batch['mask']
    labels = batch['label']
    k = min(5, logits.shape[-1])
    topk = jax.lax.top_k(logits, k)[1]
    top1 = (topk[:, 0] == labels) * mask
    top5 = (topk == labels[:, None]).any(-1) * mask
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return {'top1': sums['top1'] + top1.sum(), 'top5': sums['top5'] + top5.sum(),
            'loss': sums['loss'] + (loss * mask).sum(),
            'count': sums['count'] + mask.sum()}

  return jax.jit(eval_fn, in_shardings=(rep, rep, batch_sharding(mesh), rep),
                 out_shardings=rep)


def evaluate(eval_step, mesh: Mesh, state: TrainState, data_config, split: str,
             *, eval_batch_size: int) -> dict[str, float]:
  """top1, top5, loss over `split`; every example counted once (mask)."""
  from wt_jax import data  # pylint: disable=g-import-not-at-top
  ds = data.make_dataset(data_config, split, batch_size=eval_batch_size,
                         seed=0, train=False,
                         process_index=jax.process_index(),
                         process_count=jax.process_count())
  sums = jax.jit(lambda: {k: jnp.zeros((), jnp.float32)
                          for k in ('top1', 'top5', 'loss', 'count')},
                 out_shardings=replicated(mesh))()
  for local in data.as_numpy(ds):
    sums = eval_step(state.params, state.batch_stats,
                     global_batch(mesh, local), sums)
  sums = to_host(sums)
  n = float(sums['count'])
  return {'top1': float(sums['top1']) / n, 'top5': float(sums['top5']) / n,
          'eval_loss': float(sums['loss']) / n, 'num_eval_examples': int(n)}


# ----------------------------------------------------------------------------
# Data order: a pure function of (seed, epoch).
# ----------------------------------------------------------------------------


def epoch_seed(seed: int, epoch: int) -> int:
  return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(
      1)[0]) & 0x7FFFFFFF


def steps_per_epoch(num_train: int, batch_size: int,
                    process_count: int = 1) -> int:
  """Full batches per epoch: what `make_dataset(num_epochs=1)` yields."""
  return (num_train // process_count) // (batch_size // process_count)


def local_train_batches(data_config, *, batch_size: int, seed: int,
                        start_step: int, process_index: int,
                        process_count: int) -> Iterator[dict]:
  """This process's training batches from global step `start_step` on.

  Epoch e is `make_dataset(seed=epoch_seed(seed, e), num_epochs=1)` (full
  batches only), so the batch of step s is the same however training got
  there; resuming skips `start_step % steps_per_epoch` batches of one epoch.
  """
  from wt_jax import data  # pylint: disable=g-import-not-at-top
  n = data.dataset_info(data_config).num_examples['train']
  per_epoch = steps_per_epoch(n, batch_size, process_count)
  epoch, skip = divmod(start_step, per_epoch)
  while True:
    ds = data.make_dataset(data_config, 'train', batch_size=batch_size,
                           seed=epoch_seed(seed, epoch), train=True,
                           process_index=process_index,
                           process_count=process_count, num_epochs=1,
                           drop_remainder=True)
    if skip:
      ds = ds.skip(skip)
      skip = 0
    yield from data.as_numpy(ds)
    epoch += 1


def _prefetch_to_device(mesh, iterator, size=2):
  queue = collections.deque()
  for local in iterator:
    queue.append(global_batch(mesh, local))
    if len(queue) >= size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


# ----------------------------------------------------------------------------
# Checkpoints: structure check, save, restore.
# ----------------------------------------------------------------------------


def _path_str(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(
      k, 'idx', k)))) for k in path)


def state_structure(widths: Widths, num_classes: int, state_shapes) -> dict:
  """JSON description of a run's checkpoints: widths + every leaf's shape."""
  leaves = jax.tree_util.tree_leaves_with_path(state_shapes)
  return {'arch': widths.arch, 'depth': list(widths.depth),
          'widths': widths.as_dict(), 'num_classes': int(num_classes),
          'shapes': {_path_str(p): [list(x.shape), str(x.dtype)]
                     for p, x in leaves}}


def check_structure(stored: Mapping[str, Any], expected: Mapping[str, Any],
                    where: str) -> None:
  """Raises CheckpointMismatchError naming how `stored` differs."""
  if (stored.get('arch'), list(stored.get('depth', []))) != (
      expected['arch'], list(expected['depth'])):
    raise CheckpointMismatchError(
        f'checkpoints in {where} are for arch {stored.get("arch")!r} depth '
        f'{stored.get("depth")}, but this run is arch {expected["arch"]!r} '
        f'depth {expected["depth"]}; use another workdir or delete it')
  if stored.get('widths') != expected['widths']:
    diff = [f'{g}: {stored["widths"].get(g)} (checkpoint) vs {w} (this run)'
            for g, w in expected['widths'].items()
            if stored['widths'].get(g) != w]
    raise CheckpointMismatchError(
        f'checkpoints in {where} are for a different width vector of '
        f'{expected["arch"]}: {"; ".join(diff)}; use another workdir or '
        'delete it')
  if stored.get('num_classes') != expected['num_classes']:
    raise CheckpointMismatchError(
        f'checkpoints in {where} have num_classes={stored.get("num_classes")}, '
        f'this run {expected["num_classes"]}')
  _check_shapes(stored.get('shapes', {}), expected['shapes'], where)


def _check_shapes(stored, expected, where):
  diff = []
  for k in sorted(set(stored) | set(expected)):
    a, b = stored.get(k), expected.get(k)
    if a is not None and b is not None and list(a[0]) == list(b[0]):
      continue
    diff.append(f'{k}: {a and a[0]} (checkpoint) vs {b and b[0]} (this run)')
  if diff:
    raise CheckpointMismatchError(
        f'checkpoints in {where} do not match this run\'s train state '
        f'({len(diff)} leaves differ): {"; ".join(diff[:6])}'
        f'{" ..." if len(diff) > 6 else ""}')


def _orbax_shapes(manager, step) -> dict:
  """Leaf shapes of a stored state from orbax's metadata (no restore)."""
  meta = manager.item_metadata(step)['state']
  tree = getattr(meta, 'tree', meta)
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(
      tree, is_leaf=lambda x: hasattr(x, 'shape')):
    if hasattr(leaf, 'shape'):
      out[_path_str(path)] = [list(leaf.shape),
                              str(getattr(leaf, 'dtype', ''))]
  return out


def _make_manager(directory: str, keep: int) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=max(1, int(keep)),
                                           create=True),
      item_handlers={'state': ocp.StandardCheckpointHandler(),
                     'progress': ocp.JsonCheckpointHandler()})


# ----------------------------------------------------------------------------
# Metrics output.
# ----------------------------------------------------------------------------


class _Records:
  """metrics.jsonl (process 0) + TensorBoard scalars via a clu writer.

  Local files are appended to; remote ones (gs://...), which cannot be
  appended to, are rewritten whole (atomically) at each record.
  """

  def __init__(self, workdir: Optional[str], resume_step: int):
    self.primary = jax.process_index() == 0
    self.path = (_join(workdir, METRICS_FILE)
                 if workdir and self.primary else None)
    self.remote = bool(self.path) and '://' in self.path
    self.lines = []
    self.writer = metric_writers.create_default_writer(
        workdir if workdir else None, just_logging=not self.primary,
        asynchronous=True)
    if self.path and files.exists(self.path):
      self._truncate(resume_step)

  def _truncate(self, step):
    """Keeps records up to the checkpoint resumed from (drops a killed run's
    later records and the final record), dropping torn lines."""
    for line in epath.Path(self.path).read_text().splitlines():
      try:
        rec = json.loads(line)
      except ValueError:
        continue
      if rec.get('step', 0) <= step and rec.get('kind') != 'final':
        self.lines.append(json.dumps(rec))
    files.write_text(self.path, ''.join(k + '\n' for k in self.lines))

  def write(self, kind: str, step: int, values: Mapping[str, Any]):
    scalars = {k: v for k, v in values.items()
               if isinstance(v, (int, float, np.number)) and
               not isinstance(v, bool)}
    if scalars:
      self.writer.write_scalars(step, scalars)
    if self.path:
      line = json.dumps({'kind': kind, 'step': int(step), **_jsonable(values)})
      if self.remote:
        self.lines.append(line)
        files.write_text(self.path, ''.join(k + '\n' for k in self.lines))
      else:
        with open(self.path, 'a') as f:
          f.write(line + '\n')

  def close(self):
    self.writer.flush()
    self.writer.close()


def _join(directory: str, *names: str) -> str:
  """Joins a local (made absolute) or remote (gs://...) path."""
  if '://' in str(directory):
    return '/'.join([str(directory).rstrip('/'), *names])
  return os.path.join(os.path.abspath(directory), *names)


def _jsonable(values):
  out = {}
  for k, v in values.items():
    if isinstance(v, (np.generic, jax.Array)) and np.ndim(v) == 0:
      v = np.asarray(v).item()
    try:
      json.dumps(v)
    except TypeError:
      v = repr(v)
    out[k] = v
  return out


def _eta(seconds: float) -> str:
  seconds = int(max(0, seconds))
  h, rem = divmod(seconds, 3600)
  return f'{h}:{rem // 60:02d}:{rem % 60:02d}'


# ----------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------


def train_and_evaluate(config, widths: Widths, workdir: Optional[str], *,
                       data_config=None, train_config=None,
                       seed: Optional[int] = None,
                       extra_loss: Optional[Callable[[Any], jax.Array]] = None,
                       loss_fn: Optional[LossFn] = None,
                       callback: Optional[Callable[[int, TrainState],
                                                   Optional[dict]]] = None,
                       callback_every: int = 0,
                       eval_split: str = 'test') -> dict[str, Any]:
  """Trains `build_model(widths)` and returns its final metrics.

  Args:
    config: the run config (`dtype`, and the defaults of the next three).
    widths: the width vector to train.
    workdir: checkpoints, metrics.jsonl and TensorBoard summaries go here; a
      re-run with the same workdir resumes from the latest checkpoint. None:
      no files and no checkpoints.
    data_config, train_config, seed: default `config.data`, `config.train`,
      `config.seed`.
    extra_loss: jittable `params -> scalar` added to the loss inside the same
      jitted step (e.g. the MorphNet regularizer); logged as `extra_loss`.
    loss_fn: replaces the per-batch loss, see `LossFn`; default
      `cross_entropy_loss`.
    callback: `callback(step, state) -> dict | None`, called every
      `callback_every` steps (0: never) and after the last step; a returned
      dict is logged; `{'stop_training': True, ...}` stops after this step.
      The state is donated to the next step: copy what you keep
      (`jax.device_get` / `to_host`).
    eval_split: 'test' or 'val'.

  Returns:
    top1, top5, eval_loss (on `eval_split`), num_eval_examples, train_loss
    (mean objective over the last log interval) and the other last logged
    train metrics (`train_<name>`, `extra_loss`), steps, examples_seen,
    wall_time_s (the training loop without evaluations, summed over resumed
    runs), img_per_s (this run's steps / its loop time), train_macs
    (train MACs per example x examples_seen), macs, params, lr (last),
    stopped_early.
  """
  from wt_jax import data  # pylint: disable=g-import-not-at-top

  # --- Set-up: data, model, optimizer, mesh. ---
  data_config = config.data if data_config is None else data_config
  train_config = config.train if train_config is None else train_config
  seed = int(config.seed if seed is None else seed)
  info = data.dataset_info(data_config)
  batch_size = int(_tc(train_config, 'batch_size'))
  eval_batch_size = int(_tc(train_config, 'eval_batch_size'))
  mesh = make_mesh()
  pcount, pindex = jax.process_count(), jax.process_index()
  for name, b in (('batch_size', batch_size),
                  ('eval_batch_size', eval_batch_size)):
    if b < 1 or b % mesh.size or b % pcount:
      raise ValueError(f'config.train.{name}={b} is invalid: expected a '
                       f'positive multiple of the number of devices '
                       f'({mesh.size}) and processes ({pcount})')
  per_epoch = steps_per_epoch(info.num_examples['train'], batch_size, pcount)
  if per_epoch < 1:
    raise ValueError(f'config.train.batch_size={batch_size} is larger than the '
                     f'training split ({info.num_examples["train"]} examples)')
  num_steps = int(_tc(train_config, 'num_steps'))
  total_steps = num_steps if num_steps > 0 else max(1, int(round(
      float(_tc(train_config, 'epochs')) * per_epoch)))
  dtypes = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
  if config.get('dtype', 'float32') not in dtypes:
    raise ValueError(f'config.dtype={config.get("dtype")!r} is invalid: '
                     f'expected one of {tuple(dtypes)}')
  dtype = dtypes[config.get('dtype', 'float32')]
  model = models.build_model(widths, info.num_classes, dtype)
  image_shape = (info.resolution, info.resolution, info.channels)
  schedule = learning_rate_schedule(train_config, total_steps, per_epoch)
  tx = make_optimizer(train_config, schedule)
  names = metric_names(model, image_shape, loss_fn=loss_fn,
                       extra_loss=extra_loss, train_config=train_config)

  # --- State: abstract -> shardings -> arrays (restored or initialized). ---
  init, target = state_initializer(model, tx, mesh, seed=seed,
                                   image_shape=image_shape, names=names)
  shardings = target_shardings(target)
  structure = state_structure(widths, info.num_classes, target)
  state, manager = None, None
  progress = {'wall_time_s': 0.0, 'examples_seen': 0, 'last_train': {}}
  if workdir:
    ckpt_dir = _join(workdir, 'checkpoints')
    manager = _make_manager(ckpt_dir, _tc(train_config, 'keep_checkpoints'))
    latest = manager.latest_step()
    structure_path = _join(ckpt_dir, STRUCTURE_FILE)
    if latest is not None:
      try:  # Before any restore: same widths, architecture and shapes?
        if files.exists(structure_path):
          check_structure(files.read_json(structure_path), structure, ckpt_dir)
        else:
          _check_shapes(_orbax_shapes(manager, latest), structure['shapes'],
                        ckpt_dir)
      except CheckpointMismatchError:
        manager.close()
        raise
      restored = manager.restore(latest, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target),
          progress=ocp.args.JsonRestore()))
      state, progress = restored.state, dict(restored.progress)
      logging.info('Resumed from %s at step %d.', ckpt_dir, latest)
    elif pindex == 0:
      files.write_json(structure_path, structure)
  if state is None:
    state = create_state(init, target)
  start_step = int(to_host(state.step))
  if start_step > total_steps:
    logging.warning('The checkpoint (step %d) is past this run\'s last step '
                    '(%d): evaluating it as it is.', start_step, total_steps)
  train_step = make_train_step(model, tx, mesh, shardings, seed=seed,
                               train_config=train_config, loss_fn=loss_fn,
                               extra_loss=extra_loss)
  reset_sums = _reset_sums_fn(shardings)
  eval_step = make_eval_step(model, mesh)
  records = _Records(workdir, start_step)
  if pindex == 0:
    logging.info('%s widths %s: %d steps of %d examples (%d steps per '
                 'epoch), %d devices in %d processes.\n%s', widths.arch,
                 widths.as_dict(), total_steps, batch_size, per_epoch,
                 mesh.size, pcount, parameter_overview.get_parameter_overview(
                     target.params, include_stats=False))

  log_every = max(1, int(_tc(train_config, 'log_every')))
  eval_every = int(_tc(train_config, 'eval_every'))
  ckpt_every = int(_tc(train_config, 'checkpoint_every'))
  batches = _prefetch_to_device(mesh, local_train_batches(
      data_config, batch_size=batch_size, seed=seed, start_step=start_step,
      process_index=pindex, process_count=pcount))

  def check_finite(state, step):
    bad_step, value = to_host((state.nonfinite_step, state.nonfinite_value))
    if int(bad_step) >= 0:
      raise NonFiniteLossError(int(bad_step), float(value), (
          f'training loss is {float(value)} at step {int(bad_step)} of '
          f'{total_steps} ({widths.arch}, seed {seed}); detected at step '
          f'{step} (the loss is checked every log_every={log_every} steps, '
          'before each checkpoint and at the end). Lower '
          'config.train.base_lr or check extra_loss / the data.'))

  def log_train(state, step):
    """Logs the means since the last log step and resets the sums."""
    check_finite(state, step)
    sums = to_host(state.sums)
    count = max(float(sums['count']), 1.0)
    train = {('train_loss' if k == 'loss' else k if k == 'extra_loss' else
              f'train_{k}'): float(sums[k]) / count for k in names}
    now = time.perf_counter()
    img_s = (step - timer['step']) * batch_size / (now - timer['t'])
    lr = float(schedule(step - 1))
    records.write('train', step, {**train, 'lr': lr, 'img_per_s': img_s})
    if pindex == 0:
      per_step = (now - t_start - eval_seconds) / max(step - start_step, 1)
      logging.info('step %d/%d  loss %.4f  lr %.4g  %.0f img/s  ETA %s', step,
                   total_steps, train['train_loss'], lr, img_s,
                   _eta(per_step * (total_steps - step)))
    timer.update(t=time.perf_counter(), step=step)
    return reset_sums(state), train

  # --- The loop. ---
  t_start = time.perf_counter()
  timer = {'t': t_start, 'step': start_step}
  eval_seconds = 0.0
  examples_seen = int(progress['examples_seen'])
  last_train = dict(progress.get('last_train', {}))
  stopped = bool(progress.get('stopped_early', False))
  last_step = start_step if stopped else total_steps
  callback_done_at = None
  try:
    for step in range(start_step + 1, last_step + 1):
      state = train_step(state, next(batches))
      examples_seen += batch_size
      is_last = step == last_step
      is_log = step % log_every == 0 or is_last
      if is_log:
        state, last_train = log_train(state, step)

      if eval_every > 0 and step % eval_every == 0 and not is_last:
        t0 = time.perf_counter()
        results = evaluate(eval_step, mesh, state, data_config, eval_split,
                           eval_batch_size=eval_batch_size)
        records.write('eval', step, {f'{eval_split}_{k}': v
                                     for k, v in results.items()})
        eval_seconds += time.perf_counter() - t0

      if callback is not None and (is_last or (
          callback_every > 0 and step % callback_every == 0)):
        extra = callback(step, state) or {}
        callback_done_at = step
        if extra:
          records.write('callback', step, extra)
        stopped = bool(extra.get('stop_training', False))
        if stopped and not is_log:
          state, last_train = log_train(state, step)

      if manager is not None and (is_last or stopped or (
          ckpt_every > 0 and step % ckpt_every == 0)):
        check_finite(state, step)
        wall = progress['wall_time_s'] + (time.perf_counter() - t_start -
                                          eval_seconds)
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            progress=ocp.args.JsonSave({'wall_time_s': wall,
                                        'examples_seen': examples_seen,
                                        'last_train': last_train,
                                        'stopped_early': stopped})))
      if stopped:
        logging.info('Stopped at step %d by the callback.', step)
        break
    run_seconds = time.perf_counter() - t_start - eval_seconds

    # --- After the last step: final check, callback, evaluation. ---
    check_finite(state, int(to_host(state.step)))
    if callback is not None and callback_done_at is None:
      extra = callback(int(to_host(state.step)), state)  # resumed when done
      if extra and pindex == 0:
        logging.info('callback at step %d: %s', int(to_host(state.step)),
                     extra)
    results = evaluate(eval_step, mesh, state, data_config, eval_split,
                       eval_batch_size=eval_batch_size)
  except BaseException:
    records.close()
    raise
  finally:
    if manager is not None:
      manager.wait_until_finished()
      manager.close()

  steps_done = int(to_host(state.step))
  wall_time = progress['wall_time_s'] + run_seconds
  ran = steps_done - start_step
  macs_per_example = cost.train_macs_per_example(widths, info.resolution,
                                                 info.num_classes)
  final = {
      **results, 'eval_split': eval_split, **last_train,
      'steps': steps_done, 'examples_seen': examples_seen,
      'wall_time_s': wall_time,
      'img_per_s': (ran * batch_size / run_seconds if ran and run_seconds > 0
                    else examples_seen / wall_time if wall_time > 0 else 0.0),
      'train_macs': macs_per_example * examples_seen,
      'macs': cost.macs(widths, info.resolution, info.num_classes),
      'params': cost.params(widths, info.resolution, info.num_classes),
      'lr': float(schedule(max(steps_done - 1, 0))),
      'stopped_early': stopped,
  }
  records.write('final', steps_done, final)
  records.close()
  if pindex == 0:
    logging.info('Final (%s, step %d): top1 %.4f  top5 %.4f  eval_loss %.4f  '
                 'train_loss %.4f  %.1f s', eval_split, steps_done,
                 final['top1'], final['top5'], final['eval_loss'],
                 final.get('train_loss', float('nan')), wall_time)
  return final
