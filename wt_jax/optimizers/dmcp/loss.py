"""DMCP's train step: the weight step and the architecture step in one loss.

`make_dmcp_loss` is a `train.LossFn` that does both updates of a DMCP
iteration inside the one jitted, sharded train step:

* **Weight step**: AutoSlim's sandwich rule (`sandwich.make_sandwich_loss`
  over `Chain.space`): the full network on the labels, the smallest and
  `num_random` random sub-networks by in-place distillation. The random ones
  are DMCP's variant sampling (the reference's 'scheduled_random'): each is
  drawn uniformly from the grid with probability `uniform_probability`
  (1 during the warm-up, then decaying), else from the Markov chain at the
  current alphas (`Chain.sample_levels`, no gradient).
* **Architecture step** (from step `warmup_steps` on; before, skipped by a
  `lax.cond`, or on CPU run and zeroed): the full network with every conv's
  BN output scaled by the marginals (`Chain.marginal_masks`), on the labels,
  plus the FLOPs loss (`flops_loss`) of the expected MACs. The weights enter
  it through `stop_gradient`, so it moves only the alphas; the sandwich loss
  does not read the alphas, so it moves only the weights.

The alphas live in the params tree as `params['dmcp']['alpha']`
(`arch_params`: a `train.ExtraParams` with their own SGD: `arch_lr`, no
weight decay, cosine to `arch_min_lr` over the architecture phase), so one
gradient of the summed loss updates both, with one optax chain
(`optax.multi_transform`). Only the full network's sandwich pass updates the
BN running averages.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wt_jax import train
from wt_jax.optimizers.dmcp.chain import Chain
from wt_jax.optimizers.sandwich import make_sandwich_loss

PARAMS_ENTRY = 'dmcp'  # params['dmcp'] = {'alpha': [units, max groups]}
DECAY_EVERY = 10  # the uniform probability decays every 10 steps


def uniform_probability(step, warmup_steps: int, decay: float,
                        num_random: int):
  """P(a random sub-network is drawn uniformly, not from the chain).

  1 before `warmup_steps`; at architecture step a = step - warmup_steps
  (0, 1, ...) `decay` ** (num_random x (a // 10 + 1)) (the reference
  multiplies its probability by 0.9999 every 10 steps, once per random
  sub-network).
  """
  return jnp.float32(decay) ** _decays(step, warmup_steps, num_random,
                                       jnp).astype(jnp.float32)


def _decays(step, warmup_steps: int, num_random: int, xp):
  """How often the uniform probability has decayed before `step`."""
  arch = xp.asarray(step) - warmup_steps
  return xp.where(arch >= 0, num_random * (arch // DECAY_EVERY + 1), 0)


def flops_loss(expected_fraction, target_fraction: float):
  """The reference's 'log_l1' FLOPs loss, of E[MACs] / start MACs.

  log(target - e) below 0.95 x target, 0 in [0.95 x target, target),
  log(e - 0.95 x target) above: two-sided, with a dead band just under the
  target. In fractions of the start MACs, not MFLOPs: the gradient is the
  same (log of a scaled difference), the value shifts by a constant.
  """
  e, t = expected_fraction, float(target_fraction)
  tiny = 1e-12
  below = jnp.log(jnp.maximum(t - e, tiny))
  above = jnp.log(jnp.maximum(e - 0.95 * t, tiny))
  return jnp.where(e < 0.95 * t, below, jnp.where(e < t, 0.0, above))


def arch_schedule(arch_lr: float, arch_min_lr: float, warmup_steps: int,
                  total_steps: int) -> optax.Schedule:
  """`arch_lr` until `warmup_steps`, then cosine to `arch_min_lr` at the
  last step (the reference's arch_lr_scheduler)."""
  span = max(1, total_steps - warmup_steps)

  def schedule(count):
    p = jnp.clip((jnp.asarray(count, jnp.float32) - warmup_steps) / span,
                 0.0, 1.0)
    return arch_min_lr + (arch_lr - arch_min_lr) * 0.5 * (
        1.0 + jnp.cos(jnp.pi * p))

  return schedule


def arch_params(chain: Chain, arch_lr: float, arch_min_lr: float,
                warmup_steps: int, total_steps: int,
                train_config) -> train.ExtraParams:
  """The alphas as a params entry with their own SGD (the train recipe's
  momentum and Nesterov, no weight decay, as the reference)."""
  momentum = float(train_config.momentum)
  tx = optax.sgd(arch_schedule(arch_lr, arch_min_lr, warmup_steps,
                               total_steps),
                 momentum=momentum or None,
                 nesterov=bool(train_config.nesterov) and momentum > 0)
  return train.ExtraParams(PARAMS_ENTRY, lambda: {'alpha': chain.init_alpha()},
                           tx)


def skips_by_cond(skip_by_cond: Optional[bool] = None) -> bool:
  """Whether the warm-up skips the architecture pass (None: on this backend,
  True except on CPU; see `make_dmcp_loss`)."""
  if skip_by_cond is None:
    return jax.default_backend() != 'cpu'
  return bool(skip_by_cond)


def _weights(params):
  return {k: v for k, v in params.items() if k != PARAMS_ENTRY}


def _variant_sampler(chain: Chain, num_random: int, warmup_steps: int,
                     decay: float):
  """The sandwich's `sample_random`: uniform or from the chain, per draw."""
  space = chain.space

  def sample(params, batch, rng):
    alpha = params[PARAMS_ENTRY]['alpha']
    k_uniform, k_chain, k_pick = jax.random.split(rng, 3)
    uniform = jax.vmap(space.sample_levels)(
        jax.random.split(k_uniform, num_random))
    drawn = jax.vmap(lambda k: chain.sample_levels(alpha, k))(
        jax.random.split(k_chain, num_random))
    p = uniform_probability(batch['step'], warmup_steps, decay, num_random)
    pick = jax.random.uniform(k_pick, (num_random,)) < p
    return jnp.where(pick[:, None], uniform, drawn)

  return sample


@dataclasses.dataclass(frozen=True, eq=False)
class FixedMasks:
  """`model` with `masks` always applied: a (soft) sub-network of the same
  weights, for code that only calls `model.apply` (the default loss, BN
  recalibration, evaluation)."""
  model: Any
  masks: Mapping[str, Any]

  def apply(self, variables, *args, masks=None, **kwargs):
    del masks
    return self.model.apply(variables, *args, masks=self.masks, **kwargs)


def _arch_ce(chain: Chain, skip_by_cond: bool, warmup_steps: int):
  """The architecture pass: `(model, params, batch_stats, batch, rng,
  train_config) -> (ce, accuracy)`, ce differentiable in the alphas only
  and 0 (with a 0 gradient) before `warmup_steps`."""

  def arch_ce(model, params, batch_stats, batch, rng, train_config):
    alpha = params[PARAMS_ENTRY]['alpha']
    weights = jax.lax.stop_gradient(_weights(params))

    def run(alpha):
      def ce_of(alpha):
        scaled = FixedMasks(model, chain.marginal_masks(alpha))
        ce, (_, m) = train.cross_entropy_loss(scaled, weights, batch_stats,
                                              batch, rng, train_config)
        return ce, m['accuracy']
      (ce, accuracy), grad = jax.value_and_grad(ce_of, has_aux=True)(alpha)
      return ce, accuracy, grad

    def skip(alpha):
      zero = jnp.zeros((), jnp.float32)
      return zero, zero, jnp.zeros_like(alpha)

    # The pass and its backward run on their own (a branch of the cond, or
    # zeroed in the warm-up); the gradient enters through
    # ce + <alpha - sg(alpha), sg(grad)>: value ce, d/d alpha = grad.
    active = batch['step'] >= warmup_steps
    fixed = jax.lax.stop_gradient(alpha)
    if skip_by_cond:
      out = jax.lax.cond(active, run, skip, fixed)
    else:
      out = jax.tree.map(lambda x, z: jnp.where(active, x, z), run(fixed),
                         skip(fixed))
    ce, accuracy, grad = jax.lax.stop_gradient(out)
    return ce + jnp.vdot(alpha - fixed, grad), accuracy

  return arch_ce


def make_dmcp_loss(chain: Chain, *, num_random: int = 2,
                   inplace_distillation: bool = True, warmup_steps: int = 0,
                   uniform_decay: float = 0.9999,
                   flops_loss_weight: float = 0.1,
                   target_fraction: float = 0.5,
                   skip_by_cond: Optional[bool] = None):
  """DMCP's step as a `train.LossFn` (see the module doc).

  loss = sandwich(weights) + [step >= warmup_steps] x (CE(marginal-scaled
  full network) + flops_loss_weight x flops_loss(E[MACs] / start MACs)).
  Metrics beyond the sandwich's: `arch_loss` (the CE part), `flops_loss`
  (weighted), `expected_macs` (E[MACs] / start MACs), `arch_accuracy`,
  `arch_step` (1 where the architecture step ran), `uniform_probability`.

  `skip_by_cond`: skip the architecture pass in the warm-up with a
  `lax.cond` (True), or run it and zero it (False); None: the cond except
  on CPU, where XLA runs a conditional's branch ~5x slower than the same
  ops outside one (bench/dmcp_step.py). Both compute the same.
  """
  sandwich = make_sandwich_loss(
      chain.space, num_random, inplace_distillation,
      sample_random=_variant_sampler(chain, num_random, warmup_steps,
                                     uniform_decay))
  arch_ce = _arch_ce(chain, skips_by_cond(skip_by_cond), warmup_steps)
  start = float(chain.space.macs(chain.widths.array()))

  def loss_fn(model, params, batch_stats, batch, rng, train_config):
    weight_loss, (new_bs, metrics) = sandwich(model, params, batch_stats,
                                              batch, rng, train_config)
    ce, accuracy = arch_ce(model, params, batch_stats, batch, rng,
                           train_config)
    active = batch['step'] >= warmup_steps
    expected = chain.expected_macs(params[PARAMS_ENTRY]['alpha']) / start
    floss = jnp.where(active, float(flops_loss_weight) * flops_loss(
        expected, target_fraction), 0.0)
    metrics = dict(
        metrics, arch_loss=ce, flops_loss=floss, expected_macs=expected,
        arch_accuracy=accuracy, arch_step=active.astype(jnp.float32),
        uniform_probability=uniform_probability(
            batch['step'], warmup_steps, uniform_decay, num_random))
    return weight_loss + ce + floss, (new_bs, metrics)

  return loss_fn


def host_uniform_probability(steps: np.ndarray, warmup_steps: int,
                             decay: float, num_random: int) -> np.ndarray:
  """`uniform_probability` of each step on the host (float64)."""
  return np.power(float(decay), _decays(steps, warmup_steps, num_random,
                                        np).astype(np.float64))
