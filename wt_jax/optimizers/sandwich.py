"""Slimmable training: the sandwich rule as a `train.LossFn`, and its cost.

One set of weights serves every sub-network of a `SlimSpace`. Each step
follows the sandwich rule: the full width on the labels, the smallest width
and `num_random` random widths trained by in-place distillation from the
full width's output (soft cross-entropy against the stop-gradient softmax of
the full width's logits). The random widths draw one grid level per unit,
uniformly, from the step's `rng` inside the jitted step, so masks are traced
arrays (no recompiles). The students' passes are unrolled (one per student:
under `jax.vmap` XLA:CPU runs the weight gradients as grouped convolutions,
2-3x slower). The losses are summed, so the update is the sum of the widths'
gradients, as in slimmable_networks.

Running averages: only the full width's pass updates `batch_stats` (the
students' updated statistics are discarded), so the running averages stay
those of the full network: the training loop's final evaluation (on 'val')
is the full network's true accuracy, and recalibration (`evaluator`) serves
every narrower candidate.

`train.train_and_evaluate` runs the loss (`loss_fn=make_sandwich_loss(...)`)
with `slimmable_train_config`, `config.train` with AutoSlim's length and
learning rate.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from wt_jax import train
from wt_jax.nets import cost
from wt_jax.optimizers.slim_space import SlimSpace


def _masked_mean(values, mask):
  return (values * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def _student_counts(space: SlimSpace, num_random: int, random_levels):
  """[1 + num_random, groups] kept counts: the smallest, then random widths
  (`random_levels`: [num_random, units] grid levels)."""
  levels = [jnp.asarray(space.min_levels)[None]]
  if num_random:
    levels.append(jnp.asarray(random_levels, jnp.int32))
  return space.jnp_counts(jnp.concatenate(levels))


def _uniform_levels(space: SlimSpace, num_random: int):
  """The default `sample_random`: one uniform grid level per unit."""

  def sample(params, batch, rng):
    del params, batch
    return jax.vmap(space.sample_levels)(jax.random.split(rng, num_random))

  return sample


def make_sandwich_loss(space: SlimSpace, num_random: int = 2,
                       inplace_distillation: bool = True, sample_random=None):
  """The sandwich rule as a `train.LossFn`.

  loss = CE(full, labels) + sum over the smallest and `num_random` random
  widths of CE(student, softmax(stop_gradient(full logits))) (or of
  CE(student, labels) without in-place distillation). Only the full width's
  pass updates the BN running statistics. Metrics: `accuracy` (full width),
  `full_loss`, `student_loss` (summed over students), `min_accuracy`
  (smallest width), `sandwich_macs` (MACs of all widths of this step / full
  MACs).

  `sample_random(params, batch, rng) -> [num_random, units]` grid levels of
  the random widths (traceable); default: uniform per unit
  (`SlimSpace.sample_levels`). DMCP draws some from its Markov chain.
  """
  num_random = int(num_random)
  sample_random = sample_random or _uniform_levels(space, num_random)
  full_macs = float(space.macs(space.widths.array()))

  def loss_fn(model, params, batch_stats, batch, rng, train_config):
    smoothing = float(train_config.label_smoothing)
    variables = {'params': params, 'batch_stats': batch_stats}
    images, mask = batch['image'], batch['mask']
    logits, new_vars = model.apply(variables, images, train=True,
                                   mutable=['batch_stats'])
    labels = jax.nn.one_hot(batch['label'], logits.shape[-1])
    if smoothing:
      labels = optax.smooth_labels(labels, smoothing)
    full_loss = _masked_mean(optax.softmax_cross_entropy(logits, labels), mask)
    if inplace_distillation:
      target = jax.nn.softmax(jax.lax.stop_gradient(logits))
    else:
      target = labels
    counts = _student_counts(space, num_random, sample_random(
        params, batch, rng) if num_random else None)  # [students, groups]
    # One pass per student, unrolled: under jax.vmap the weight gradient of a
    # conv whose input and output gradient are both batched becomes a grouped
    # convolution, 2-3x slower on XLA:CPU than separate convolutions.
    student_logits, student_losses = [], []
    for i in range(counts.shape[0]):
      out, _ = model.apply(variables, images, train=True,
                           masks=space.masks(counts[i]),
                           mutable=['batch_stats'])
      student_logits.append(out)
      student_losses.append(_masked_mean(
          optax.softmax_cross_entropy(out, target), mask))
    student_loss = sum(student_losses)
    correct = jnp.argmax(logits, -1) == batch['label']
    min_correct = jnp.argmax(student_logits[0], -1) == batch['label']
    sub_macs = space.macs(counts, xp=jnp).sum()
    metrics = {'accuracy': _masked_mean(correct, mask),
               'min_accuracy': _masked_mean(min_correct, mask),
               'full_loss': full_loss, 'student_loss': student_loss,
               'sandwich_macs': (full_macs + sub_macs) / full_macs}
    return full_loss + student_loss, (new_vars['batch_stats'], metrics)

  return loss_fn


def slimmable_train_config(config):
  """`config.train` with AutoSlim's length and learning rate."""
  ac = config.autoslim
  lr = {'base_lr': float(ac.lr)} if ac.lr > 0 else {}
  return train.derive_train_config(config.train, epochs=float(ac.epochs),
                                   num_steps=int(ac.num_steps), **lr)


def train_macs_per_example(space: SlimSpace, num_random: int
                           ) -> tuple[float, int]:
  """(analytic, executed) training MACs per example of one sandwich step.

  Analytic: each sub-network at its own MACs, `cost.TRAIN_MACS_FACTOR` x
  (MACs(full) + MACs(smallest) + num_random x E[MACs(random)]), the
  expectation in closed form over the sampling distribution. Executed: what
  the masked implementation runs, every pass at the full width.
  """
  full = int(space.macs(space.widths.array()))
  smallest = int(space.macs(space.counts(space.min_levels)))
  analytic = cost.TRAIN_MACS_FACTOR * (
      full + smallest + num_random * space.expected_random_macs())
  executed = cost.TRAIN_MACS_FACTOR * full * (2 + num_random)
  return analytic, executed
