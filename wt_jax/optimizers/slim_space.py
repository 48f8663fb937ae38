"""The slimming space: which sub-networks of the full network exist.

A sub-network keeps the *first* k channels of each group (where a grouped
conv splits a group into G blocks: the first k / G of each block, and k is a
multiple of G). Each group's kept count moves on a grid of steps of
`step_fraction` x its full width, down to a minimum (`width_grid`). Groups tied by an identity shortcut
(`architectures.identity_ties`) form one *unit* and slim together; a
depthwise conv is already in its expansion conv's group. A sub-network is
therefore a level vector, one grid level per unit (0 = full width).

`SlimSpace` holds the grids and the full network's compiled layer graph
(`graph.LayerGraph`), and maps level vectors to kept counts, channel masks
(`models`: masks multiply each conv's BN output, so every shape stays static
and one compiled step serves all widths), `Widths` and MACs, on the host
(numpy) and traced (jnp) alike.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wt_jax.nets import architectures
from wt_jax.nets import graph as graph_lib
from wt_jax.nets.widths import Widths


def width_grid(full: int, step_fraction: float, min_width: int,
               min_fraction: float, multiple: int = 1) -> tuple[int, ...]:
  """Kept channel counts of one group, decreasing from `full`.

  round(full x (1 - j x step_fraction)) for j = 0, 1, ..., while at least
  max(min_width, ceil(min_fraction x full)); duplicates (narrow groups)
  removed. A group at or below the minimum never slims. With `multiple`
  (a grouped conv's group count, which divides `full`), counts are rounded
  to multiples of it.
  """
  floor = max(int(min_width), int(np.ceil(min_fraction * full - 1e-9)), 1)
  out = [int(full)]
  j = 1
  while True:
    k = int(np.floor(full * (1.0 - j * step_fraction) / multiple + 0.5)
            ) * multiple
    if k < floor or k <= 0:
      break
    if k < out[-1]:
      out.append(k)
    j += 1
  return tuple(out)


@dataclasses.dataclass(frozen=True)
class SlimSpace:
  """Which sub-networks of `widths` exist, as grid levels per unit.

  A sub-network is a level vector (one int per unit, 0 = full width); its
  kept counts (one per group) are `counts(levels)`.
  """
  widths: Widths  # the full network
  grids: tuple[tuple[int, ...], ...]  # per unit: kept counts, decreasing
  graph: graph_lib.LayerGraph  # the full network's layer graph (and units)
  ties: frozenset  # identity ties of the full network

  @property
  def units(self) -> tuple[tuple[str, ...], ...]:
    """Groups merged by identity ties, in network order."""
    return self.graph.units

  @property
  def group_unit(self) -> tuple[int, ...]:
    """Per group (in `widths.names` order): its unit's index."""
    return tuple(int(u) for u in self.graph.group_unit)

  @property
  def num_units(self) -> int:
    return len(self.units)

  @property
  def num_levels(self) -> np.ndarray:
    return np.asarray([len(g) for g in self.grids], np.int32)

  @property
  def min_levels(self) -> np.ndarray:
    return self.num_levels - 1

  @property
  def full_levels(self) -> np.ndarray:
    return np.zeros(self.num_units, np.int32)

  def unit_label(self, u: int) -> str:
    return '+'.join(self.units[u])

  def grid_table(self) -> np.ndarray:
    """[units, max levels] kept counts, each row padded with its last."""
    width = int(self.num_levels.max())
    return np.asarray([list(g) + [g[-1]] * (width - len(g))
                       for g in self.grids], np.int32)

  def counts(self, levels) -> np.ndarray:
    """Kept count per group of the level vector (host, numpy)."""
    levels = np.asarray(levels, np.int64)
    return np.asarray([self.grids[u][levels[u]] for u in self.group_unit],
                      np.int32)

  def widths_at(self, levels) -> Widths:
    return self.widths.replace(self.counts(levels).tolist())

  def levels_of(self, widths: Widths) -> np.ndarray:
    """The level vector of a width vector of this space (ValueError if none)."""
    values = widths.as_dict()
    out = []
    for unit, grid in zip(self.units, self.grids):
      ks = {values[g] for g in unit}
      if len(ks) != 1 or ks.pop() not in grid:
        raise ValueError(f'widths {widths.as_dict()} are not on the slimming '
                         f'grid of unit {unit}: {grid}')
      out.append(grid.index(values[unit[0]]))
    return np.asarray(out, np.int32)

  def keeps_shortcuts(self, levels) -> bool:
    """True iff the sub-network's identity ties are the full network's."""
    w = self.widths_at(levels)
    return frozenset(architectures.identity_ties(w.spec, w.values)) == self.ties

  # --- Traceable (jnp) versions, for the jitted steps. ---

  def jnp_counts(self, levels: jax.Array) -> jax.Array:
    """[..., units] levels -> [..., groups] kept counts (traceable)."""
    table = jnp.asarray(self.grid_table())
    units = jnp.asarray(self.group_unit, jnp.int32)
    levels = jnp.asarray(levels, jnp.int32)
    return table[units, levels[..., units]]

  def keep_orders(self) -> dict[str, np.ndarray]:
    """{group: [C]} the rank at which each channel is kept
    (`graph.keep_order`: the first k, or the first k / G of each of a
    grouped conv's G blocks)."""
    return {name: graph_lib.keep_order(full, int(m)) for name, full, m in
            zip(self.widths.names, self.widths.values, self.graph.multiples)}

  def masks(self, counts: jax.Array) -> dict[str, jax.Array]:
    """[groups] kept counts -> {group: float32 [C]} masks, the first k
    channels in `keep_orders` kept."""
    counts = jnp.asarray(counts)
    return {name: (jnp.asarray(order) < counts[i]).astype(jnp.float32)
            for i, (name, order) in enumerate(self.keep_orders().items())}

  def sample_levels(self, rng: jax.Array) -> jax.Array:
    """One uniformly random grid level per unit (traceable)."""
    return jax.random.randint(rng, (self.num_units,), 0,
                              jnp.asarray(self.num_levels))

  def macs(self, counts, xp=np) -> Any:
    """Forward MACs of the masked structure with these kept counts.

    Equals `cost.macs(widths_at(levels))` whenever the sub-network keeps the
    full network's shortcut types (`keeps_shortcuts`). numpy counts give
    exact int64 MACs, jnp counts traceable float32 ones.
    """
    if xp is not np:
      counts = xp.asarray(counts, jnp.float32)
    return self.graph.macs(counts, xp=xp)

  def expected_random_macs(self) -> float:
    """E[MACs] of a random sub-network (levels uniform per unit), exact.

    Levels are independent across units, so the expectation of a product of
    two sides is the product of their means, except where an input group
    and the output are one unit (E[k^2]); depthwise layers count one side.
    """
    g = self.graph
    mean = np.asarray([np.mean(grid, dtype=np.float64) for grid in self.grids])
    mean_sq = np.asarray([np.mean(np.square(grid, dtype=np.float64))
                          for grid in self.grids])
    unit_out = np.where(g.out_group >= 0,
                        g.group_unit[np.maximum(g.out_group, 0)], -1)
    e_out = np.where(unit_out >= 0, mean[np.maximum(unit_out, 0)],
                     g.out_const)
    # [layers, units]: how often each unit is read; E[k_u x k_out].
    reads = g.in_matrix @ np.eye(len(self.grids), dtype=np.int64)[
        g.group_unit]
    same = np.arange(len(self.grids))[None, :] == unit_out[:, None]
    pair = np.where(same, mean_sq[None, :], mean[None, :] * e_out[:, None])
    e_pair = (reads * pair).sum(-1) + g.in_const * e_out
    per_layer = np.where(g.depthwise, e_out, e_pair / g.feature_groups)
    return float((g.coeff * per_layer).sum())


def make_space(widths: Widths, resolution: int, num_classes: int, *,
               step_fraction: float = 0.1, min_width: int = 4,
               min_fraction: float = 0.1) -> SlimSpace:
  """The slimming space of the full network `widths`."""
  graph = architectures.layer_graph(widths.spec, widths.values, resolution,
                                    num_classes)
  w = widths.as_dict()
  multiple = {n: int(m) for n, m in zip(graph.names, graph.multiples)}
  grids = tuple(width_grid(w[u[0]], step_fraction, min_width, min_fraction,
                           multiple[u[0]]) for u in graph.units)
  ties = architectures.identity_ties(widths.spec, widths.values)
  return SlimSpace(widths, grids, graph, frozenset(ties))


def space_from_config(config, widths: Widths, resolution: int,
                      num_classes: int) -> SlimSpace:
  """`make_space` with the grid of `config.autoslim`."""
  ac = config.autoslim
  return make_space(widths, resolution, num_classes,
                    step_fraction=float(ac.step_fraction),
                    min_width=int(ac.min_width),
                    min_fraction=float(ac.min_fraction))
