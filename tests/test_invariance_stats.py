"""The invariance statistics (experiments/invariance_stats.py), by hand."""
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import invariance_stats as st
from wt_jax import report
# pylint: enable=g-import-not-at-top,wrong-import-position


def test_rank_correlation_with_ties():
  # Ranks (average for ties): a -> 1, 2.5, 2.5, 4; b -> 1, 2, 3, 4.
  # Centered: a (-1.5, 0, 0, 1.5), b (-1.5, -0.5, 0.5, 1.5): rho =
  # 4.5 / sqrt(4.5 x 5).
  assert report.rank_correlation([1, 2, 2, 3], [10, 20, 30, 40]) == (
      pytest.approx(4.5 / math.sqrt(4.5 * 5.0)))
  assert report.rank_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
  assert report.rank_correlation([1, 5, 2], [0.1, 7, 3]) == pytest.approx(1)
  assert math.isnan(report.rank_correlation([2, 2, 2], [1, 2, 3]))


def test_distance_is_scale_free_mean_abs_log_ratio():
  # a / gm(a) = (1/2, 2), b / gm(b) = (1, 1): |log| = log 2 each.
  assert st.distance([1, 4], [3, 3]) == pytest.approx(math.log(2))
  assert st.distance([1, 4], [5, 20]) == pytest.approx(0.0)
  d = st.distance_matrix([[1, 4], [3, 3], [4, 1]])
  np.testing.assert_allclose(d, [[0, math.log(2), 2 * math.log(2)],
                                 [math.log(2), 0, math.log(2)],
                                 [2 * math.log(2), math.log(2), 0]])


# Four runs on a line: run i sits at position x_i, D = |x_i - x_j|.
_X = np.asarray([0.0, 1.0, 3.0, 6.0])
_D = np.abs(_X[:, None] - _X[None, :])


def test_excess_and_floor_by_hand():
  # P = {run 0}, Q = {1, 2, 3}: cross = (1 + 3 + 6) / 3, floor = (2 + 5 +
  # 3) / 3.
  assert st.floor(_D, [1, 2, 3]) == pytest.approx(10 / 3)
  assert st.excess(_D, [0], [1, 2, 3]) == pytest.approx(10 / 3 - 10 / 3)
  assert st.excess(_D, [3], [0, 1, 2]) == pytest.approx(
      (6 + 5 + 3) / 3 - (1 + 3 + 2) / 3)
  # A run drawn twice is no pair: Q = (1, 1, 2) has the pairs (1, 2) twice.
  assert st.floor(_D, [1, 1, 2]) == pytest.approx(2.0)
  assert math.isnan(st.floor(_D, [2, 2]))


def test_permutation_p_enumerates_every_split():
  # P = {3}: the 4 splits put each run alone; excesses: run 0: 0, run 1:
  # (1 + 2 + 5) / 3 - (3 + 6 + 3) / 3 = -4/3, run 2: (3 + 2 + 3) / 3 -
  # (1 + 6 + 5) / 3 = -4/3, run 3: 14/3 - 2 = 8/3. Only run 3's own split
  # is >= 8/3: p = 1/4.
  p, splits = st.permutation_p(_D, [3], [0, 1, 2])
  assert (p, splits) == (pytest.approx(0.25), 4)
  p, _ = st.permutation_p(_D, [0], [1, 2, 3])  # excess 0: runs 0 and 3
  assert p == pytest.approx(0.5)
  # C(5, 2) = 10 splits of 2 + 3 runs.
  d = st.distance_matrix(np.random.default_rng(0).uniform(0.5, 2, (5, 6)))
  assert st.permutation_p(d, [0, 1], [2, 3, 4])[1] == 10


def test_bootstrap_interval_on_an_enumerable_case():
  # P = {3} is always itself; Q resampled from {0, 1, 2}: 27 equally likely
  # draws. The interval's ends are percentiles of their excesses.
  values = []
  for q in np.ndindex(3, 3, 3):
    values.append(st.excess(_D, [3], list(q)))
  values = np.asarray(values)
  defined = values[~np.isnan(values)]  # (0,0,0), (1,1,1), (2,2,2): no floor
  assert len(defined) == 24
  low, high, undefined = st.bootstrap_interval(_D, [3], [0, 1, 2],
                                               resamples=20_000)
  assert undefined == pytest.approx(20_000 * 3 / 27, rel=0.1)
  # The support's ends: every resample lies in [min, max] of the 24 values.
  assert defined.min() <= low <= high <= defined.max()
  exact_low, exact_high = np.percentile(defined, [2.5, 97.5])
  assert low == pytest.approx(exact_low, abs=0.35)
  assert high == pytest.approx(exact_high, abs=0.35)
  again = st.bootstrap_interval(_D, [3], [0, 1, 2], resamples=20_000)
  assert again == (low, high, undefined)  # seeded: reproducible


def test_verdict_rule():
  assert st.margin(0.5, 0.1) == pytest.approx(0.1)
  assert st.verdict(0.01, 0.5, 0.1) == 'differs'
  assert st.verdict(0.04999, -1.0, 0.1) == 'differs'  # p first
  assert st.verdict(0.05, 0.09, 0.1) == 'agrees'
  assert st.verdict(0.3, 0.1, 0.1) == 'inconclusive'  # strictly below
  s = st.summary(_D, [3], [0, 1, 2], uniform_distance=5.0, resamples=500)
  assert s['verdict'] == 'inconclusive' and s['p_value'] == 0.25
  assert s['cross'] == pytest.approx(14 / 3)


def test_cost_ordered_null_fits_the_exponent():
  cost = np.asarray([1.0, 4.0, 16.0])
  # Direct multipliers exactly cost^-0.5 (up to scale): the fit finds 0.5
  # and reproduces them.
  direct = [3 * cost ** -0.5, 7 * cost ** -0.5]
  null, k = st.cost_ordered_null(cost, direct)
  assert k == pytest.approx(0.5)
  assert st.distance(null, direct[0]) == pytest.approx(0.0, abs=1e-12)
  # Unrelated to cost: the fit is k = 0 (uniform).
  null, k = st.cost_ordered_null(cost, [[1, 2, 1], [1, 0.5, 1]])
  assert k == pytest.approx(0.0, abs=1e-12)


def test_nearest():
  assert st.nearest([0.9, 0.5, 0.3], 0.45) == 1
  assert st.nearest([], 0.4) is None


class _Nets:
  """Stands in for invariance_results.Networks: per-channel MACs only."""

  def per_channel_macs(self, spec):
    del spec
    return np.asarray([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])


def test_invariance_rows_apply_the_rule_per_arm():
  from experiments import invariance_results as ir  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  names = [f'g{i}' for i in range(6)]
  base = np.asarray([0.5, 2.0, 1.0, 0.25, 1.5, 3.0])

  def run(arm, seed, vec, kept):
    return dict(optimizer='morphnet', arm=arm, seed=seed, kept_fraction=kept,
                multipliers=dict(zip(names, vec.tolist())),
                uniform_widths={n: 16 for n in names})

  noisy = lambda s: base * np.exp(rng.normal(0, 0.05, 6))
  runs = [run('direct', s, noisy(s), 0.4) for s in range(5)]
  runs += [run('compound', s, noisy(s), 0.45) for s in range(3)]
  runs += [run('samples', s, np.exp(rng.normal(0, 1.0, 6)), 0.8)
           for s in range(3)]
  # Exports of two direct seeds: one near the samples arm's 0.8 kept, whose
  # widths are the samples arm's own shape.
  histories = {f'morphnet:direct:{s}': [
      dict(step=10, macs_fraction=0.8, widths={
          n: 16 * v for n, v in zip(names, runs[8]['multipliers'].values())}),
      dict(step=20, macs_fraction=0.4, widths={
          n: 16 * v for n, v in zip(names, runs[s]['multipliers'].values())})]
               for s in (3, 4)}
  rows, matched = ir.invariance(runs, names, _Nets(), histories,
                                resamples=2000)
  by_arm = {r['arm']: r for r in rows}
  assert by_arm['noise floor: direct vs direct']['floor'] == pytest.approx(
      st.floor(st.distance_matrix([ir._vec(r, names) for r in runs[:5]]),
               range(5)))
  assert by_arm['compound']['verdict'] == 'agrees'
  assert by_arm['compound']['splits'] == 56
  assert by_arm['samples']['verdict'] == 'differs'
  assert by_arm['samples']['kept_mean'] == pytest.approx(0.8)
  assert by_arm['null: permuted direct multipliers']['verdict'] != 'agrees'
  assert by_arm['null: uniform multipliers']['verdict'] != 'agrees'
  # Matched pruning: the samples arm is compared with the 0.8 exports.
  m = {r['arm']: r for r in matched}
  assert m['samples']['matched_steps'] == [10, 10]
  assert m['compound']['matched_steps'] == [20, 20]
