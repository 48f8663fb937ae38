"""A user's own width optimizer, for tests: random widths at half the MACs.

Registered on import, as a user's module named by `config.optimizer_module`
would be.
"""
import numpy as np

import wt_jax
from wt_jax.nets import cost
from wt_jax.optimizers import result
from wt_jax.transfer import extrapolate


def optimize(config, problem, workdir):
  del workdir  # nothing to resume
  rng = np.random.default_rng(config.seed)
  start = cost.macs(problem.widths, problem.resolution, problem.num_classes)
  values = problem.widths.array() * rng.uniform(0.5, 1.5, len(problem.widths))
  match = extrapolate.flops_match(
      problem.widths, int(0.5 * start), problem.resolution,
      problem.num_classes, values=values, divisor=config.transfer.divisor,
      min_width=config.transfer.min_width)
  return result.OptimizeResult(
      widths=match.widths, train_macs=start, examples=1, epochs=0.0,
      wall_time_s=0.0, details=dict(optimizer='random', start_macs=start))


wt_jax.register_optimizer('random', optimize, replace=True)
