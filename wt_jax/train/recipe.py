"""The SGD recipe of `config.train`: loss, learning rate, weight decay, dtype.

* SGD with (Nesterov) momentum, `optax.sgd` (`make_sgd`).
* Weight decay in the *L2 form* of PyTorch's `SGD(weight_decay=...)`:
  `optax.add_decayed_weights(wd, mask)` adds `wd * p` to the gradient before
  momentum, which is exactly the gradient of `wd / 2 * ||p||^2` added to the
  loss (the logged loss does not include that term). With
  `decay_bn_and_bias=False` the mask keeps only conv and FC kernels; BN scale
  and bias and the FC bias are not decayed (`weight_decay_mask`).
* The default per-batch loss is softmax cross-entropy with label smoothing
  (`cross_entropy_loss`).
* Learning rate `base_lr * batch_size / 256`, linear warm-up from 0 over
  `warmup_epochs`, then 'cosine' or 'linear' decay to 0 at the last step, or
  'constant' (`learning_rate_schedule`).
* `num_steps > 0` overrides `epochs` (`num_train_steps`).
* `config.dtype='bfloat16'` computes in bfloat16 (`compute_dtype`);
  parameters, SGD state and BN statistics stay float32.

Every function takes the full `config.train` block (wt_jax/defaults.py has
every field); width optimizers derive theirs with `derive_train_config`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wt_jax.nets import models
from wt_jax.util import validation

SCHEDULES = ('cosine', 'linear', 'constant')
def validate(train_config) -> None:
  """Checks the `config.train` block; raises ConfigError naming the field."""
  f = validation.Fields(train_config, 'train')
  f.batch_size('batch_size')
  f.batch_size('eval_batch_size')
  f.training_length()
  f.number('base_lr', 0, lo_open=True)
  f.choice('schedule', SCHEDULES)
  f.number('warmup_epochs', 0)
  f.number('momentum', 0, 1)
  f.boolean('nesterov')
  f.number('weight_decay', 0)
  f.boolean('decay_bn_and_bias')
  f.number('label_smoothing', 0, 1)
  for field in ('log_every', 'eval_every', 'checkpoint_every'):
    f.number(field, 0, integer=True)
  f.number('keep_checkpoints', 1, integer=True)
  f.boolean('batch_seeds')
  f.number('steps_per_call', 0, integer=True, note='0 = auto')


def derive_train_config(train_config, **overrides):
  """A copy of `train_config` with `overrides` set (width optimizers use it)."""
  tc = train_config.copy_and_resolve_references()
  with tc.unlocked():
    for name, value in overrides.items():
      tc[name] = value
  return tc


def compute_dtype(config):
  """The jnp dtype of `config.dtype` ('float32' or 'bfloat16')."""
  name = config.dtype
  if name not in models.DTYPES:
    validation.fail('config.dtype', name, ', '.join(models.DTYPES))
  return models.DTYPES[name]


def num_train_steps(train_config, steps_per_epoch: int) -> int:
  """`num_steps` if > 0, else `epochs` x steps per epoch (at least 1)."""
  num_steps = int(train_config.num_steps)
  if num_steps > 0:
    return num_steps
  return max(1, int(round(float(train_config.epochs) * steps_per_epoch)))


def peak_learning_rate(train_config) -> float:
  return float(train_config.base_lr) * train_config.batch_size / 256.0


def learning_rate_schedule(train_config, total_steps: int,
                           steps_per_epoch: float) -> optax.Schedule:
  """lr(count) for the update of step count + 1 (count = 0, 1, ...).

  peak = base_lr * batch_size / 256; w = round(warmup_epochs *
  steps_per_epoch), capped at total_steps. count < w: peak * count / w.
  Then, with p = (count - w) / max(1, total_steps - w):
  cosine peak * (1 + cos(pi p)) / 2, linear peak * (1 - p), constant peak.
  """
  name = train_config.schedule
  if name not in SCHEDULES:
    validation.fail('config.train.schedule', name, ', '.join(SCHEDULES))
  peak = peak_learning_rate(train_config)
  warmup = min(int(round(float(train_config.warmup_epochs) *
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


def make_sgd(train_config, schedule: optax.Schedule
             ) -> optax.GradientTransformation:
  """L2 weight decay (masked) + SGD with (Nesterov) momentum."""
  wd = float(train_config.weight_decay)
  momentum = float(train_config.momentum)
  parts = []
  if wd > 0:
    decay_all = bool(train_config.decay_bn_and_bias)
    parts.append(optax.add_decayed_weights(
        wd, mask=lambda p: weight_decay_mask(p, decay_all)))
  parts.append(optax.sgd(schedule, momentum=momentum or None,
                         nesterov=bool(train_config.nesterov) and
                         momentum > 0))
  return optax.chain(*parts)


def cross_entropy_loss(model, params, batch_stats, batch, rng, train_config):
  """Default `LossFn`: softmax cross-entropy with label smoothing (masked)."""
  del rng
  logits, new_vars = model.apply(
      {'params': params, 'batch_stats': batch_stats}, batch['image'],
      train=True, mutable=['batch_stats'])
  labels = jax.nn.one_hot(batch['label'], logits.shape[-1])
  smoothing = float(train_config.label_smoothing)
  if smoothing:
    labels = optax.smooth_labels(labels, smoothing)
  mask = batch['mask']
  denom = jnp.maximum(mask.sum(), 1.0)
  loss = (optax.softmax_cross_entropy(logits, labels) * mask).sum() / denom
  correct = (jnp.argmax(logits, -1) == batch['label']) * mask
  return loss, (new_vars['batch_stats'], {'accuracy': correct.sum() / denom})
