"""DMCP's Markov chain over each unit's channel sub-groups.

A unit (groups tied by identity shortcuts, `graph.LayerGraph.units`; a
depthwise conv is in its expansion's group already) of `full` channels keeps
its first `min_ch` channels always and splits the rest into `num_groups`
ordered sub-groups of `group_size` channels (`sub_groups`). Sub-group j can
only be kept if sub-group j - 1 is: a Markov chain whose transition j has the
keep probability sigmoid(alpha_j), one learnable alpha per transition.

* marginal keep probability of sub-group j: m_j = prod_{i<=j} sigmoid(alpha_i)
  (`Chain.marginals`);
* expected channels: E[c] = min_ch + group_size x sum_j m_j
  (`expected_channels`), differentiable in alpha;
* expected MACs: the layer graph's MACs at the expected channels
  (`expected_macs`): per layer coeff x E[c_in] x E[c_out] (depthwise:
  coeff x E[c]), DMCP's closed form (units are independent chains); at 0/1
  probabilities it is `cost.macs` of the sampled width vector;
* `marginal_masks`: per group a [C] mask of 1 (the first min_ch channels)
  and m_j on sub-group j, multiplying each conv's BN output during the
  architecture step (channels in `SlimSpace.keep_orders` order, so a
  grouped conv's blocks shrink together);
* `sample_levels`: a sub-network drawn from the chain (DMCP's direct
  sampling), as grid levels of `Chain.space`;
* `widths_of`: the result rule of the reference (its "expected sampling"):
  per unit round(E[c] - 1e-4) channels.

`Chain.space` is a `slim_space.SlimSpace` whose grid per unit is
full, full - group_size, ..., min_ch, so AutoSlim's sandwich loss trains
DMCP's sub-networks. Alphas are one [units, max(num_groups)] array (rows
padded; padded entries never count).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from wt_jax.nets import architectures
from wt_jax.nets.widths import Widths
from wt_jax.optimizers.slim_space import SlimSpace

# The reference initializes every alpha to 0: sigmoid 0.5 per transition.
ALPHA_INIT = 0.0


def sub_groups(full: int, group_fraction: float, min_fraction: float,
               min_width: int, multiple: int = 1) -> tuple[int, int, int]:
  """(min_ch, group_size, num_groups) of a unit of `full` channels.

  As the reference's `_get_ch_indice`: group_size = floor(group_fraction x
  full), num_groups = floor((1 - min_fraction) / group_fraction), the rest
  always kept. Here group_size is at least 1 (the reference does not prune a
  unit narrower than 1 / group_fraction channels) and num_groups is capped
  so that at least max(min_width, ceil(min_fraction x full)) channels stay.
  With `multiple` (a grouped conv's group count, dividing `full`), the
  sub-group size is a multiple of it, so every kept count is too.
  """
  size = max(1, int(group_fraction * full / multiple + 1e-9)) * multiple
  floor = max(int(min_width), int(np.ceil(min_fraction * full - 1e-9)), 1)
  count = int((1.0 - min_fraction) / group_fraction + 1e-4)
  count = max(0, min(count, (full - floor) // size))
  return full - count * size, size, count


def _sigmoid(x, xp):
  return 1.0 / (1.0 + xp.exp(-x))


@dataclasses.dataclass(frozen=True)
class Chain:
  """The chains of every unit of the full network `space.widths`."""
  space: SlimSpace  # grids: full, full - group_size, ..., min_ch
  min_channels: tuple[int, ...]  # per unit
  group_size: tuple[int, ...]  # per unit
  num_groups: tuple[int, ...]  # per unit (0: the unit is not pruned)

  @property
  def widths(self) -> Widths:
    return self.space.widths

  @property
  def num_units(self) -> int:
    return self.space.num_units

  @property
  def alpha_shape(self) -> tuple[int, int]:
    return (self.num_units, max(max(self.num_groups), 1))

  def init_alpha(self) -> jax.Array:
    return jnp.full(self.alpha_shape, ALPHA_INIT, jnp.float32)

  @property
  def valid(self) -> np.ndarray:
    """[units, max groups] True where the alpha entry is a real transition."""
    return (np.arange(self.alpha_shape[1])[None] <
            np.asarray(self.num_groups)[:, None])

  def marginals(self, alpha, xp=jnp):
    """[units, max groups] keep probability of each sub-group (0: padding)."""
    return xp.cumprod(_sigmoid(alpha, xp), axis=1) * self.valid

  def expected_channels(self, alpha, xp=jnp):
    """[units] E[kept channels] = min_ch + group_size x sum of marginals."""
    return (np.asarray(self.min_channels, np.float32) +
            np.asarray(self.group_size, np.float32) *
            self.marginals(alpha, xp).sum(axis=1))

  def expected_macs(self, alpha, xp=jnp):
    """E[MACs] at the expected channels of every group (closed form)."""
    units = np.asarray(self.space.group_unit)
    return self.space.macs(self.expected_channels(alpha, xp)[units], xp=xp)

  def marginal_masks(self, alpha) -> dict[str, jax.Array]:
    """{group: [C]} 1 on the first min_ch channels, m_j on sub-group j."""
    m = self.marginals(alpha)
    out = {}
    orders = self.space.keep_orders()
    for name, u in zip(self.widths.names, self.space.group_unit):
      rank, first = orders[name], self.min_channels[u]
      index = np.where(rank < first, 0,
                       1 + (rank - first) // self.group_size[u])
      out[name] = jnp.concatenate([jnp.ones(1, m.dtype), m[u]])[index]
    return out

  def sample_levels(self, alpha, rng: jax.Array) -> jax.Array:
    """[units] grid levels of one sub-network drawn from the chain: sub-group
    j kept iff every transition up to j succeeds (traceable)."""
    keep = jax.random.uniform(rng, self.alpha_shape) < _sigmoid(
        jax.lax.stop_gradient(alpha), jnp)
    kept = jnp.cumprod(keep & self.valid, axis=1).sum(axis=1)
    return jnp.asarray(self.num_groups, jnp.int32) - kept.astype(jnp.int32)

  def unit_channels(self, alpha) -> list[int]:
    """Per unit round(E[c] - 1e-4): the reference's expected sampling (to a
    multiple of the unit's grouped convs' group count, where it has one)."""
    expected = self.expected_channels(np.asarray(alpha, np.float64), np)
    multiple = [int(self.space.graph.multiples[self.space.graph.names.index(
        unit[0])]) for unit in self.space.units]
    return [int(np.clip(round((float(e) - 1e-4) / m) * m, lo, hi))
            for e, lo, hi, m in zip(expected, self.min_channels,
                                    (g[0] for g in self.space.grids),
                                    multiple)]

  def widths_of(self, alpha) -> Widths:
    """The width vector the learned chain selects (`unit_channels`)."""
    per_unit = self.unit_channels(alpha)
    return self.widths.replace([per_unit[u] for u in self.space.group_unit])


def make_chain(widths: Widths, resolution: int, num_classes: int, *,
               group_fraction: float = 0.1, min_fraction: float = 0.1,
               min_width: int = 4) -> Chain:
  """The chains of the full network `widths` (`sub_groups` per unit)."""
  graph = architectures.layer_graph(widths.spec, widths.values, resolution,
                                    num_classes)
  multiple = dict(zip(graph.names, graph.multiples))
  parts = [sub_groups(widths[unit[0]], group_fraction, min_fraction,
                      min_width, int(multiple[unit[0]])) for unit in graph.units]
  grids = tuple(tuple(first + j * size for j in range(count, -1, -1))
                for first, size, count in parts)
  ties = architectures.identity_ties(widths.spec, widths.values)
  space = SlimSpace(widths, grids, graph, frozenset(ties))
  first, size, count = (tuple(int(p[i]) for p in parts) for i in range(3))
  return Chain(space, first, size, count)


def chain_from_config(config, widths: Widths, resolution: int,
                      num_classes: int) -> Chain:
  """`make_chain` with the sub-groups of `config.dmcp`."""
  settings = {k: config.dmcp[k] for k in ('group_fraction', 'min_fraction',
                                          'min_width')}
  return make_chain(widths, resolution, num_classes, **settings)
