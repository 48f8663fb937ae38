"""The learned chain's path (history.json) and DMCP's cost in MAC x examples.

`Exporter` is the train loop's callback: every `export_every` steps and after
the last it records the chain at the current alphas (expected channels per
unit, expected MACs, the width vector of the result rule and its MACs) in
`history.json` (atomically; on resume, records past the restored step are
replaced), and after the last step it keeps the trained variables for the
deciding net.

`train_costs` counts the run as AutoSlim counts its sandwich training, each
sub-network at its own MACs (`cost.TRAIN_MACS_FACTOR` = 3 x forward MACs per
trained example), per update t and example:

    3 x (MACs(full) + MACs(smallest)
         + num_random x (p_t x E_uniform + (1 - p_t) x E_chain(t)))
    + [t >= warm-up] x ARCH_MACS_FACTOR x MACs(full)

with p_t the probability of a uniform draw (`loss.uniform_probability`),
E_uniform the closed-form mean over the grid (`SlimSpace
.expected_random_macs`), E_chain(t) the chain's expected MACs (exact for
independent units) at the first export after update t. The architecture
pass runs the full network (its channels are scaled, not removed): a forward
and a backward to the alphas through the activations, no weight gradients,
hence 2 x the full MACs. The executed count (every pass at the full width,
and on CPU the zeroed architecture pass of the warm-up steps too) is
reported beside it.
"""
from __future__ import annotations

import jax
import numpy as np

from wt_jax import train
from wt_jax.nets import cost
from wt_jax.optimizers.dmcp.chain import Chain
from wt_jax.optimizers.dmcp.loss import host_uniform_probability
from wt_jax.optimizers.dmcp.loss import PARAMS_ENTRY
from wt_jax.transfer.problem import Problem
from wt_jax.util import files
from wt_jax.util import workdir as workdir_lib

ARCH_MACS_FACTOR = 2  # forward + backward to the alphas (no weight grads)


def _round(values, digits=4) -> list[float]:
  return [round(float(v), digits) for v in values]


class Exporter:
  """The train loop's callback: the chain at the current alphas, recorded."""

  def __init__(self, chain: Chain, problem: Problem, total_steps: int,
               workdir: str):
    self.chain = chain
    self.problem = problem
    self.total_steps = int(total_steps)
    self.start_macs = self.macs(problem.widths)
    self.path = workdir_lib.history(workdir)
    self.history = (files.read_json(self.path) if files.exists(self.path)
                    else [])
    self.alpha = None  # [units, max groups] at the last call (host)
    self.variables = None  # weights and BN statistics after the last step

  def macs(self, widths) -> int:
    return cost.macs(widths, self.problem.resolution, self.problem.num_classes)

  def record(self, step: int, alpha) -> dict:
    chain = self.chain
    widths = chain.widths_of(alpha)
    expected = float(chain.expected_macs(np.asarray(alpha, np.float64), np))
    return dict(step=int(step), expected_macs=expected,
                expected_fraction=expected / self.start_macs,
                macs=int(self.macs(widths)),
                expected_channels=_round(chain.expected_channels(
                    np.asarray(alpha, np.float64), np)),
                widths=widths.as_dict())

  def __call__(self, step, state):
    alpha = np.asarray(train.to_host(state.params[PARAMS_ENTRY]['alpha']))
    self.alpha = alpha
    if step >= self.total_steps:
      host = train.to_host({'params': state.params,
                            'batch_stats': state.batch_stats})
      host['params'] = {k: v for k, v in host['params'].items()
                        if k != PARAMS_ENTRY}
      self.variables = host
    record = self.record(step, alpha)
    del self.history[len([h for h in self.history if h['step'] < step]):]
    self.history.append(record)
    if jax.process_index() == 0:
      files.write_json(self.path, self.history)
    return dict(expected_macs_fraction=record['expected_fraction'],
                learned_macs_fraction=record['macs'] / self.start_macs)


def train_costs(chain: Chain, history: list, steps: int, batch_size: int,
                warmup_steps: int, num_random: int, uniform_decay: float,
                skip_by_cond: bool = True) -> dict:
  """The run's training MACs x examples, charged and executed (module doc;
  `skip_by_cond` False: the warm-up steps execute the architecture pass
  too, `loss.skips_by_cond`)."""
  space = chain.space
  full = float(space.macs(space.widths.array()))
  smallest = float(space.macs(space.counts(space.min_levels)))
  uniform = space.expected_random_macs()
  t = np.arange(int(steps))
  p = host_uniform_probability(t, warmup_steps, uniform_decay, num_random)
  if history:
    at = np.asarray([h['step'] for h in history])
    macs = np.asarray([h['expected_macs'] for h in history], np.float64)
    chained = macs[np.minimum(np.searchsorted(at, t + 1), len(at) - 1)]
  else:
    chained = np.full(t.shape, full)
  factor = cost.TRAIN_MACS_FACTOR
  weight = factor * (full + smallest + num_random * (
      p * uniform + (1.0 - p) * chained)).sum() * batch_size
  arch_steps = int((t >= warmup_steps).sum())
  arch = ARCH_MACS_FACTOR * full * arch_steps * batch_size
  passes = arch_steps if skip_by_cond else len(t)
  executed = (factor * full * (2 + num_random) * len(t) +
              ARCH_MACS_FACTOR * full * passes) * batch_size
  return dict(weight_train_macs=int(round(weight)),
              arch_train_macs=int(round(arch)),
              train_macs=int(round(weight)) + int(round(arch)),
              train_macs_executed=int(round(executed)),
              arch_steps=arch_steps)
