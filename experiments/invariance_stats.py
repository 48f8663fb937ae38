"""The statistics of the invariance verdict (experiments/invariance_results.py).

Pure functions of multiplier vectors, so that each can be checked by hand
(tests/test_invariance_stats.py). The rule they implement is written in
invariance_results.py's docstring; in short, for a projection's seeds P and
the direct seeds Q of one optimizer:

* `distance(a, b)`: mean |log a_g - log b_g| after normalizing each vector
  by its geometric mean;
* `excess(D, p, q)`: mean cross distance P x Q minus the mean distance over
  pairs of distinct direct seeds (the noise floor), on a distance matrix D
  over the pooled runs;
* `permutation_p`: the exact one-sided permutation p-value of the excess
  (every split of P + Q into |P| and |Q| runs);
* `bootstrap_interval`: the percentile interval of the excess, P and Q each
  resampled with replacement (a pair of a run with its own copy is no pair);
* `margin`: a quarter of the way from the floor to the uniform widths;
* `verdict`: differs / agrees / inconclusive;
* `cost_ordered_null`: multipliers that follow each group's MACs per channel
  only, with the exponent that fits the direct seeds best.
"""
from __future__ import annotations

import itertools
from typing import Optional, Sequence

import numpy as np

ALPHA = 0.05  # the permutation test's level
LEVEL = 0.95  # the bootstrap interval's coverage
RESAMPLES = 10_000
MARGIN_FRACTION = 0.25


def normalized_log(m) -> np.ndarray:
  """log m minus its mean: the log of m over its geometric mean."""
  logs = np.log(np.asarray(m, np.float64))
  return logs - logs.mean()


def distance(a, b) -> float:
  """Mean |log ratio| of `a` and `b`, each over its geometric mean."""
  return float(np.mean(np.abs(normalized_log(a) - normalized_log(b))))


def distance_matrix(vectors: Sequence) -> np.ndarray:
  logs = np.stack([normalized_log(v) for v in vectors])
  return np.abs(logs[:, None, :] - logs[None, :, :]).mean(-1)


def _mean_pairs(d: np.ndarray, a: np.ndarray, b: np.ndarray,
                within: bool) -> float:
  """Mean of d[a_i, b_j]: over all (i, j), or with `within` (a is b) over
  i < j; pairs of a run with itself (one run drawn twice) left out."""
  block = d[np.ix_(a, b)]
  keep = a[:, None] != b[None, :]
  if within:
    keep &= np.triu(np.ones_like(keep), 1).astype(bool)
  return float(block[keep].mean()) if keep.any() else float('nan')


def excess(d: np.ndarray, p: Sequence[int], q: Sequence[int]) -> float:
  """cross(P, Q) - floor(Q) on the distance matrix `d` (run indices)."""
  p, q = np.asarray(p), np.asarray(q)
  return _mean_pairs(d, p, q, False) - _mean_pairs(d, q, q, True)


def floor(d: np.ndarray, q: Sequence[int]) -> float:
  q = np.asarray(q)
  return _mean_pairs(d, q, q, True)


def permutation_p(d: np.ndarray, p: Sequence[int], q: Sequence[int]
                  ) -> tuple[float, int]:
  """(p-value, number of splits): the fraction of the C(m + n, m) splits of
  P + Q into m and n runs whose excess is >= the observed one."""
  pooled = list(p) + list(q)
  observed = excess(d, p, q)
  values = []
  for chosen in itertools.combinations(range(len(pooled)), len(p)):
    rest = [pooled[i] for i in range(len(pooled)) if i not in chosen]
    values.append(excess(d, [pooled[i] for i in chosen], rest))
  values = np.asarray(values)
  return float(np.mean(values >= observed - 1e-12)), len(values)


def bootstrap_interval(d: np.ndarray, p: Sequence[int], q: Sequence[int],
                       resamples: int = RESAMPLES, level: float = LEVEL,
                       seed: int = 0) -> tuple[float, float, int]:
  """(low, high, undefined): the percentile interval of the excess; a
  resample whose direct seeds are all one run has no floor (`undefined` of
  them, left out)."""
  rng = np.random.default_rng(seed)
  p, q = np.asarray(p), np.asarray(q)
  values = []
  for _ in range(resamples):
    values.append(excess(d, rng.choice(p, len(p)), rng.choice(q, len(q))))
  values = np.asarray(values)
  ok = values[~np.isnan(values)]
  if not len(ok):
    return float('nan'), float('nan'), int(len(values))
  tail = (1.0 - level) / 2 * 100
  low, high = np.percentile(ok, [tail, 100 - tail])
  return float(low), float(high), int(len(values) - len(ok))


def margin(uniform_distance: float, floor_distance: float) -> float:
  return MARGIN_FRACTION * (uniform_distance - floor_distance)


def verdict(p_value: float, high: float, delta: float) -> str:
  if p_value < ALPHA:
    return 'differs'
  if high < delta:
    return 'agrees'
  return 'inconclusive'


def cost_ordered_null(per_channel_macs: Sequence[float],
                      direct: Sequence[Sequence[float]]) -> tuple[
                          np.ndarray, float]:
  """(multipliers, exponent): c_g^-k, with k the least-squares fit of the
  direct seeds' mean normalized log multipliers on -log c_g (normalized):
  the closest widths to the direct ones that follow MAC cost only."""
  x = -normalized_log(per_channel_macs)
  y = np.mean([normalized_log(m) for m in direct], axis=0)
  k = float(x @ y / (x @ x)) if x @ x > 0 else 0.0
  return np.exp(k * x), k


def summary(d: np.ndarray, p: Sequence[int], q: Sequence[int],
            uniform_distance: float, seed: int = 0,
            resamples: int = RESAMPLES) -> dict:
  """Everything the rule needs for one arm: its figures and its verdict."""
  fl = floor(d, q)
  ex = excess(d, p, q)
  pv, splits = permutation_p(d, p, q)
  low, high, undefined = bootstrap_interval(d, p, q, resamples, seed=seed)
  delta = margin(uniform_distance, fl)
  return dict(cross=ex + fl, floor=fl, excess=ex, excess_low=low,
              excess_high=high, p_value=pv, splits=splits, margin=delta,
              undefined_resamples=undefined, verdict=verdict(pv, high, delta))


def nearest(values: Sequence[float], target: float) -> Optional[int]:
  """Index of the value nearest `target` (the first of ties), or None."""
  if not len(values):
    return None
  return int(np.argmin(np.abs(np.asarray(values, np.float64) - target)))


__all__ = ['bootstrap_interval', 'cost_ordered_null', 'distance',
           'distance_matrix', 'excess', 'floor', 'margin', 'nearest',
           'permutation_p', 'summary', 'verdict']
