"""Extrapolation: optimized widths of a projected net -> widths of the original.

Array math on per-group width-multiplier vectors, one function per step:

1. `dimension_match(optimized, projected_uniform)`: multipliers = optimized
   widths / the projected net's uniform widths.
2. `depth_match(mults, src, dst, rule)`: maps multipliers from the projected
   depth onto the original depth. Stem, head and stage-level groups (residual
   streams) map one to one. Per-block groups of block b of stage s keep their
   own multiplier when the projected stage has a block b; the original's
   extra blocks are filled by `stack_last_block` (repeat the stage's last
   projected block) or `stack_average_block` (repeat the mean over the
   stage's projected blocks, position by position). When the original stage
   is *shallower* than the projected one, its blocks keep their own
   multipliers and the projected blocks beyond its depth are dropped
   (truncation), under either rule.
3. `apply_multipliers(mults, original_uniform)`: unrounded widths =
   multipliers x the original's uniform widths.
4. `flops_match(template, values, target_macs, ...)`: scales all widths by one
   global multiplier, found by bisection on the *rounded* widths' real MAC
   count, to the largest MACs that do not exceed the target, then tops up
   single groups by divisor steps, the group furthest below its scaled width
   first, while the target still holds. Groups tied by an identity shortcut
   (equal input widths where a shortcut would add them) move together.

`extrapolate` chains the four.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from wt_jax.errors import ConfigError
from wt_jax.errors import InfeasibleTargetError
from wt_jax.errors import WidthError
from wt_jax.nets import architectures
from wt_jax.nets import cost
from wt_jax.nets import widths as widths_lib
from wt_jax.nets.widths import Widths
from wt_jax.util import validation

STACKING_RULES = ('stack_last_block', 'stack_average_block')


def validate(transfer) -> None:
  """Checks the `config.transfer` block."""
  f = validation.Fields(transfer, 'transfer')
  f.choice('stacking', STACKING_RULES)
  f.number('target_macs', 0, integer=True,
           note="0 = the original uniform network's MACs")
  f.number('divisor', 1, integer=True)
  f.number('min_width', 1, integer=True)


def dimension_match(optimized: Widths, projected_uniform: Widths
                    ) -> np.ndarray:
  """Per-group multipliers of the optimized widths, relative to uniform."""
  return widths_lib.multipliers(optimized, projected_uniform)


def _key(g: architectures.Group):
  return (g.kind, g.stage, g.block, g.position)


def depth_match(mults: np.ndarray, src: Widths, dst: Widths,
                rule: str = 'stack_last_block') -> np.ndarray:
  """Maps `mults` (structure of `src`) onto the structure of `dst`."""
  if rule not in STACKING_RULES:
    raise ConfigError(f'config.transfer.stacking={rule!r} is invalid; '
                      f'allowed: {", ".join(STACKING_RULES)}')
  if src.arch != dst.arch:
    raise WidthError(f'depth matching needs the same architecture, got '
                     f'{src.arch} and {dst.arch}')
  mults = np.asarray(mults, dtype=np.float64)
  by_key = {_key(g): m for g, m in zip(src.groups, mults)}
  out = []
  for g in dst.groups:
    if g.kind != 'block' or _key(g) in by_key:
      out.append(by_key[_key(g)])
      continue
    n_src = src.depth[g.stage - 1]
    same_pos = [by_key[(g.kind, g.stage, b, g.position)]
                for b in range(1, n_src + 1)]
    out.append(same_pos[-1] if rule == 'stack_last_block' else
               float(np.mean(same_pos)))
  return np.asarray(out, dtype=np.float64)


def apply_multipliers(mults: np.ndarray, original_uniform: Widths
                      ) -> np.ndarray:
  """Unrounded widths: multipliers x the original's uniform widths."""
  mults = np.asarray(mults, dtype=np.float64)
  if mults.shape != (len(original_uniform),):
    raise WidthError(f'{mults.shape} multipliers for {len(original_uniform)} '
                     f'groups of {original_uniform.arch}')
  return mults * original_uniform.array()


def _tie_units(template: Widths, values=None) -> list[list[int]]:
  """Indices of the groups that must move together (identity ties).

  Ties are read off `values` (default: the template's widths): groups whose
  (unrounded) widths are equal where an identity shortcut would add them.
  """
  values = template.values if values is None else values
  index = {n: i for i, n in enumerate(template.names)}
  return [[index[n] for n in unit]
          for unit in architectures.tie_units(template.spec, values)]


@dataclasses.dataclass(frozen=True)
class FlopsMatch:
  widths: Widths
  macs: int
  target_macs: int
  scale: float  # the global multiplier found by bisection
  # `extrapolate`: the per-group multipliers (dimension and depth matched)
  # that FLOPs matching started from, in the original's group order.
  multipliers: tuple[float, ...] = ()

  @property
  def ratio(self) -> float:
    return self.macs / self.target_macs


def flops_match(template: Widths, target_macs: int, resolution: int,
                num_classes: int, values: Optional[np.ndarray] = None,
                divisor: int = 8, min_width: Optional[int] = None,
                iterations: int = 60) -> FlopsMatch:
  """Scales `values` (default: `template`'s widths) to `target_macs`.

  The returned widths are multiples of `divisor` (and of each group's
  `multiples`: `widths.steps`), at least `min_width`, and their MACs never
  exceed `target_macs`. Raises `InfeasibleTargetError` when
  even the all-minimum network is above the target.
  """
  min_width = divisor if min_width is None else min_width
  values = template.array().astype(np.float64) if values is None else (
      np.asarray(values, dtype=np.float64))
  if values.shape != (len(template),) or not np.all(values > 0):
    raise WidthError(f'flops_match needs {len(template)} positive widths, got '
                     f'{values.tolist()}')
  units = _tie_units(template, values.tolist())
  step = widths_lib.steps(template, divisor)  # divisor, or a grouped conv's
  multiples = np.asarray(template.multiples, np.int64)

  def rounded(scale):
    return widths_lib.round_widths(values * scale, step, min_width, multiples)

  def macs_of(vals):
    return cost.macs(template.replace(vals.tolist()), resolution, num_classes)

  floor_macs = macs_of(rounded(0.0))
  if floor_macs > target_macs:
    raise InfeasibleTargetError(
        f'target_macs={target_macs:,} is infeasible for {template.arch} at '
        f'resolution {resolution}: even every group at min_width={min_width} '
        f'costs {floor_macs:,} MACs; allowed: target_macs >= {floor_macs:,}')
  lo, hi = 0.0, 1.0
  while macs_of(rounded(hi)) <= target_macs:
    lo, hi = hi, hi * 2
  for _ in range(iterations):  # invariant: macs(lo) <= target < macs(hi)
    mid = 0.5 * (lo + hi)
    if macs_of(rounded(mid)) <= target_macs:
      lo = mid
    else:
      hi = mid
  best = rounded(lo)
  # Top-up: while some unit's next step (the divisor, or its grouped convs'
  # multiple of it) still fits under the target, bump the fitting unit that
  # lies furthest below its scaled width. Every group stays a multiple of its
  # step; the final slack is smaller than any single unit's step.
  used = macs_of(best)
  while True:
    fits = []
    for k, unit in enumerate(units):
      trial = best.copy()
      trial[unit] += step[unit]
      m = macs_of(trial)
      if m <= target_macs:
        fits.append((float(np.max(values[unit] * lo - best[unit])), -k, m,
                     trial))
    if not fits:
      break
    _, _, used, best = max(fits, key=lambda f: f[:2])
  widths = template.replace(best.tolist())
  return FlopsMatch(widths, used, int(target_macs), lo)


def extrapolate(optimized: Widths, projected_uniform: Widths,
                original_uniform: Widths, *, rule: str = 'stack_last_block',
                target_macs: int = 0, resolution: int, num_classes: int,
                divisor: int = 8, min_width: Optional[int] = None
                ) -> FlopsMatch:
  """Dimension matching, depth matching, widths, FLOPs matching.

  `target_macs=0` means the MACs of `original_uniform` at `resolution`.
  """
  mults = dimension_match(optimized, projected_uniform)
  mults = depth_match(mults, projected_uniform, original_uniform, rule)
  values = apply_multipliers(mults, original_uniform)
  target = target_macs or cost.macs(original_uniform, resolution, num_classes)
  match = flops_match(original_uniform, target, resolution, num_classes,
                      values=values, divisor=divisor, min_width=min_width)
  return dataclasses.replace(match, multipliers=tuple(mults.tolist()))
