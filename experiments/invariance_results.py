r"""Tables of the width-invariance grid: results/cifar10.{md,json} and a plot.

  python experiments/invariance_results.py --root=/work/invariance

Writes results/cifar10.json and results/cifar10_multipliers.png, and fills
the generated tables of the hand-written results/cifar10.md (between its
`<!-- generated:NAME -->` markers). Reads every run of
experiments/invariance_grid.py (`<root>/<optimizer>/
<arm>/seed_<s>`: the optimizer's summary.json, the transferred multipliers,
timing.json, and `<root>/runs.jsonl` for each subprocess's wall time) and
computes, per optimizer:

* Invariance. Each run's per-group multipliers (the dimension- and
  depth-matched multipliers over the original network's groups, before
  FLOPs matching; for a direct run, its widths / the uniform widths) are
  normalized by their geometric mean (FLOPs matching rescales them anyway).
  Spearman's rho (average ranks for ties) is shown beside each distance; it
  takes no part in the verdict.
* Cost. Measured MAC-examples (the optimizer's `train_macs`) and wall time,
  each with its ratio to the direct runs' mean; the analytic ratio
  (`projection.overhead`); the wall time split into its parts.

The verdict rule (written and committed on 2026-12-05, before direct
MorphNet seeds 3 and 4 were run or any statistic below was computed):

1. Distance: D(a, b) = mean over groups of |log a_g - log b_g|, a and b
   normalized by their geometric means.
2. Per optimizer, with direct seeds Q (n >= 2) and a projection's seeds P
   (m >= 1): cross = mean of D(p, q) over P x Q; floor = mean of D(q, q')
   over the n(n-1)/2 pairs of distinct direct seeds; excess = cross - floor.
3. p-value: an exact permutation test of "P and Q are exchangeable" (the
   projection's widths come from the same distribution as the direct ones):
   every one of the C(m + n, m) ways to split P + Q into m and n seeds,
   statistic excess, one-sided: p = the fraction of splits with excess >=
   the observed one (the observed split counted).
4. Interval: the 95% percentile bootstrap interval of excess, resampling P
   and Q with replacement, each separately (10,000 resamples, numpy
   generator seed 0); a pair of a seed with its own copy is not a pair (it
   is left out of the means).
5. Margin: delta = 0.25 x (U - floor), where U = mean of D(uniform, q) over
   Q: a quarter of the way from the direct seeds' own scatter to widths
   that were never optimized.
6. Verdict: *differs* if p < 0.05; otherwise *agrees* if the interval's
   upper end is < delta; otherwise *inconclusive*.
7. The same rule is applied unchanged to each null (uniform multipliers;
   random permutations of the direct multipliers; the cost-ordered null,
   multipliers that follow each group's MACs per channel only), which must
   not come out *agrees*.
8. Pruning level: beside each distance, the fraction of its network's
   uniform MACs each run kept before FLOPs matching. Matched-pruning check:
   the rule repeated with each direct seed's exported widths (history.json)
   at the export whose kept fraction is nearest the projection run's,
   where a direct seed's exports exist.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Optional

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _ROOT)

# pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib.figure import Figure

from experiments import invariance_configs as grid
from experiments import invariance_grid
from wt_jax import report
from wt_jax.optimizers import result as result_lib
from wt_jax.transfer import problem as problem_lib
from wt_jax.transfer import projection
from wt_jax.util import files
from wt_jax.util.workdir import Workdir
# pylint: enable=g-import-not-at-top,wrong-import-position

NULL_PERMUTATIONS = 20


def _read(path: str) -> Optional[Any]:
  return files.read_json(path) if files.exists(path) else None


def _walls(root: str) -> dict[str, dict]:
  """The runs.jsonl record of each run spec that ended with the config it
  has now (`invariance_grid.ended_with_this_config`): a run whose config has
  changed since is left out, so no figure of another config is reported."""
  return invariance_grid.ended_with_this_config(root)


def _deciding_val(details: dict) -> Optional[float]:
  if details.get('optimizer') == 'morphnet':
    return details.get('val_top1_recalibrated')
  return details.get('full_val_top1')  # AutoSlim: the full-width supernet


def _time_parts(details: dict, timing: dict, wall: Optional[float]) -> dict:
  tp = details.get('time_parts', {})
  parts = {
      'startup_and_imports': timing.get('startup_and_imports_s', 0.0),
      'data_decode': timing.get('decode_s', 0.0),
      'setup': tp.get('setup_s', 0.0) + timing.get('validate_and_list_s', 0),
      'compile_and_first_step': tp.get('first_step_s', 0.0),
      'optimization_steps': tp.get('steps_s', 0.0),
      'slimming': tp.get('slimming_s', 0.0),
      'evaluation': tp.get('eval_s', 0.0) + tp.get('deciding_eval_s', 0.0),
      'checkpoint_writes': tp.get('checkpoint_s', 0.0),
  }
  if wall is not None:
    parts['other'] = max(0.0, wall - sum(parts.values()))
  return parts


def collect_run(root: str, optimizer: str, arm: str, seed: int,
                walls: dict) -> Optional[dict]:
  """One run's figures (None if it has not finished with this config)."""
  spec = f'{optimizer}:{arm}:{seed}'
  if spec not in walls:
    return None
  wd = Workdir(os.path.join(root, optimizer, arm, f'seed_{seed}'))
  found = result_lib.load(wd.optimize())
  transferred = _read(wd.widths('transferred'))
  if found is None or transferred is None:
    return None
  config = grid.get_config(spec)
  original = problem_lib.from_config(config)
  projected = projection.project(original, config.projection,
                                 divisor=config.transfer.divisor)
  ov = projection.overhead(original, projected, found.train_macs,
                           found.details.get('macs_not_scaling_with_data', 0))
  wall = walls.get(spec, {}).get('wall_s')
  timing = _read(wd.timing) or {}
  names = original.widths.names
  return dict(
      arm=arm if arm != 'direct' else 'direct', optimizer=optimizer,
      projection=dict(config.projection), seed=seed,
      multipliers={n: float(transferred['multipliers'][n]) for n in names},
      widths_before_flops_matching=found.widths.as_dict(),
      widths_after_flops_matching=transferred['widths'],
      deciding_val_top1=_deciding_val(found.details),
      val_top1_running_averages=found.details.get(
          'val_top1', found.details.get('full_val_top1_running_stats')),
      train_macs=int(found.train_macs), examples=int(found.examples),
      epochs=float(found.epochs), analytic_cost_ratio=ov['cost_ratio'],
      macs_ratio=ov['macs_ratio'], data_ratio=ov['data_ratio'],
      wall_time_s=wall, optimize_wall_s=float(timing.get('optimize_s', 0)),
      wall_time_parts=_time_parts(found.details, timing, wall),
      load_at_end=walls.get(spec, {}).get('load'))


# ----------------------------------------------------------------------------
# Agreement of multiplier vectors.
# ----------------------------------------------------------------------------


def normalized(m) -> np.ndarray:
  m = np.asarray(m, np.float64)
  return m / math.exp(float(np.mean(np.log(m))))


def mean_abs_log_ratio(a, b) -> float:
  return float(np.mean(np.abs(np.log(normalized(a)) - np.log(normalized(b)))))


def agreement(a, b) -> tuple[float, float]:
  return report.rank_correlation(a, b), mean_abs_log_ratio(a, b)


def _vec(run: dict, names) -> np.ndarray:
  return np.asarray([run['multipliers'][n] for n in names], np.float64)


def _stats(pairs: list[tuple[float, float]]) -> dict:
  rho = [p[0] for p in pairs if not math.isnan(p[0])]
  malr = [p[1] for p in pairs]
  return dict(spearman=float(np.mean(rho)) if rho else float('nan'),
              spearman_sd=float(np.std(rho)) if rho else float('nan'),
              spearman_min=float(np.min(rho)) if rho else float('nan'),
              mean_abs_log_ratio=float(np.mean(malr)),
              mean_abs_log_ratio_sd=float(np.std(malr)),
              mean_abs_log_ratio_max=float(np.max(malr)), pairs=len(pairs))


def invariance(runs: list[dict], names) -> tuple[list[dict], dict]:
  """(per-arm rows, noise floor per optimizer)."""
  rows, floor = [], {}
  for optimizer in grid.OPTIMIZERS:
    direct = [r for r in runs if r['optimizer'] == optimizer and
              r['arm'] == 'direct']
    if not direct:
      continue
    dvec = [_vec(r, names) for r in direct]
    dd = [agreement(dvec[i], dvec[j]) for i in range(len(dvec))
          for j in range(i + 1, len(dvec))]
    nf = _stats(dd) if dd else None
    if nf:
      floor[optimizer] = nf
    rng = np.random.default_rng(0)
    nulls = {
        'null: uniform multipliers': [agreement(np.ones(len(names)), d)
                                      for d in dvec],
        'null: permuted direct multipliers': [
            agreement(rng.permutation(a), b) for i, a in enumerate(dvec)
            for j, b in enumerate(dvec) if i != j or len(dvec) == 1
            for _ in range(NULL_PERMUTATIONS)],
    }
    for arm in grid.ARMS:
      if arm == 'direct':
        continue
      proj = [_vec(r, names) for r in runs
              if r['optimizer'] == optimizer and r['arm'] == arm]
      if not proj:
        continue
      st = _stats([agreement(p, d) for p in proj for d in dvec])
      rows.append(dict(arm=arm, optimizer=optimizer, seeds=len(proj),
                       direct_seeds=len(dvec), **st,
                       verdict=_verdict(st, nf)))
    for label, pairs in nulls.items():
      rows.append(dict(arm=label, optimizer=optimizer, seeds=0,
                       direct_seeds=len(dvec), **_stats(pairs),
                       verdict=_verdict(_stats(pairs), nf)))
  return rows, floor


def _verdict(st: dict, floor: Optional[dict]) -> str:
  if floor is None:
    return 'no noise floor (one direct seed)'
  miss = []
  if st['mean_abs_log_ratio'] > floor['mean_abs_log_ratio_max']:
    miss.append(f'mean |log ratio| {st["mean_abs_log_ratio"]:.3f} > '
                f'{floor["mean_abs_log_ratio_max"]:.3f} (by '
                f'{st["mean_abs_log_ratio"] - floor["mean_abs_log_ratio_max"]:.3f})')
  if not st['spearman'] >= floor['spearman_min']:
    miss.append(f'rho {st["spearman"]:.2f} < {floor["spearman_min"]:.2f} '
                f'(by {floor["spearman_min"] - st["spearman"]:.2f})'
                if not math.isnan(st['spearman']) else 'rho undefined')
  return 'transfers' if not miss else 'misses: ' + '; '.join(miss)


# ----------------------------------------------------------------------------
# Cost.
# ----------------------------------------------------------------------------

PARTS = ('startup_and_imports', 'data_decode', 'setup',
         'compile_and_first_step', 'optimization_steps', 'slimming',
         'evaluation', 'checkpoint_writes', 'other')


def cost_rows(runs: list[dict]) -> list[dict]:
  """Per run: measured and analytic savings against the direct mean."""
  rows = []
  for optimizer in grid.OPTIMIZERS:
    direct = [r for r in runs if r['optimizer'] == optimizer and
              r['arm'] == 'direct']
    if not direct:
      continue
    d_macs = float(np.mean([r['train_macs'] for r in direct]))
    d_walls = [r['wall_time_s'] for r in direct if r['wall_time_s']]
    d_wall = float(np.mean(d_walls)) if d_walls else float('nan')
    for r in runs:
      if r['optimizer'] != optimizer:
        continue
      wall = r['wall_time_s'] or float('nan')
      rows.append(dict(
          arm=r['arm'], optimizer=optimizer, seed=r['seed'],
          train_macs=r['train_macs'], measured_macs_ratio=d_macs /
          r['train_macs'], analytic_ratio=r['analytic_cost_ratio'],
          wall_time_s=wall, wall_time_ratio=d_wall / wall,
          parts=r['wall_time_parts']))
  return rows


# ----------------------------------------------------------------------------
# Output.
# ----------------------------------------------------------------------------


def _f(x, fmt='.3f'):
  return 'n/a' if x is None or (isinstance(x, float) and math.isnan(x)) \
      else format(x, fmt)


def _label(arm: str) -> str:
  return grid.LABELS.get(arm, arm)


def invariance_md(rows: list[dict], floor: dict) -> list[str]:
  out = ['| optimizer | projection | seeds x direct seeds | Spearman rho '
         '(mean ± sd) | mean abs log ratio (mean ± sd) | verdict |',
         '|---|---|---:|---:|---:|---|']
  for opt in grid.OPTIMIZERS:
    if opt in floor:
      nf = floor[opt]
      out.append(f'| {opt} | **noise floor: direct vs direct** | '
                 f'{nf["pairs"]} pairs | {_f(nf["spearman"], ".2f")} ± '
                 f'{_f(nf["spearman_sd"], ".2f")} (min '
                 f'{_f(nf["spearman_min"], ".2f")}) | '
                 f'{_f(nf["mean_abs_log_ratio"])} ± '
                 f'{_f(nf["mean_abs_log_ratio_sd"])} (max '
                 f'{_f(nf["mean_abs_log_ratio_max"])}) | - |')
    for r in rows:
      if r['optimizer'] != opt:
        continue
      n = (f'{r["seeds"]} x {r["direct_seeds"]}' if r['seeds'] else
           f'{r["pairs"]} pairs')
      out.append(f'| {opt} | {_label(r["arm"])} | {n} | '
                 f'{_f(r["spearman"], ".2f")} ± {_f(r["spearman_sd"], ".2f")}'
                 f' | {_f(r["mean_abs_log_ratio"])} ± '
                 f'{_f(r["mean_abs_log_ratio_sd"])} | {r["verdict"]} |')
  return out


def cost_md(rows: list[dict]) -> list[str]:
  out = ['| optimizer | arm | seed | MAC-examples | saving, measured | '
         'saving, analytic | wall time | saving, wall | ' +
         ' | '.join(p.replace('_', ' ') for p in PARTS) + ' |',
         '|---|---|---:|---:|---:|---:|---:|---:|' + '---:|' * len(PARTS)]
  for r in rows:
    out.append(
        f'| {r["optimizer"]} | {r["arm"]} | {r["seed"]} | '
        f'{r["train_macs"]:.3g} | {r["measured_macs_ratio"]:.1f}x | '
        f'{r["analytic_ratio"]:.1f}x | {_f(r["wall_time_s"], ".0f")} s | '
        f'{_f(r["wall_time_ratio"], ".1f")}x | ' +
        ' | '.join(f'{r["parts"].get(p, 0.0):.1f}' for p in PARTS) + ' |')
  return out


def runs_md(runs: list[dict]) -> list[str]:
  out = ['| optimizer | arm | seed | epochs | deciding net val top-1 '
         '(recalibrated BN) | on running BN averages |',
         '|---|---|---:|---:|---:|---:|']
  for r in runs:
    out.append(f'| {r["optimizer"]} | {r["arm"]} | {r["seed"]} | '
               f'{r["epochs"]:.2f} | {_f(r["deciding_val_top1"], ".3f")} | '
               f'{_f(r["val_top1_running_averages"], ".3f")} |')
  return out


def plot(runs: list[dict], names, path: str) -> None:
  arms = [a for a in grid.ARMS if a != 'direct']
  opts = [o for o in grid.OPTIMIZERS if any(r['optimizer'] == o for r in runs)]
  fig = Figure(figsize=(4.2 * len(arms), 3.4 * len(opts)))
  axes = np.asarray(fig.subplots(len(opts), len(arms), squeeze=False))
  x = np.arange(len(names))
  for i, opt in enumerate(opts):
    direct = [r for r in runs if r['optimizer'] == opt and r['arm'] == 'direct']
    for j, arm in enumerate(arms):
      ax = axes[i, j]
      for k, r in enumerate(direct):
        ax.plot(x, normalized(_vec(r, names)), color='0.45', lw=1.2,
                label='direct' if k == 0 else None)
      for k, r in enumerate(r for r in runs if r['optimizer'] == opt and
                            r['arm'] == arm):
        ax.plot(x, normalized(_vec(r, names)), color='C3', lw=1.2, ls='--',
                marker='o', ms=3, label=arm if k == 0 else None)
      ax.set_title(f'{opt}: {_label(arm)}', fontsize=8)
      ax.set_xticks(x)
      ax.set_xticklabels(names, rotation=90, fontsize=6)
      ax.set_yscale('log')
      ax.grid(alpha=0.3)
      if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
  axes[0, 0].set_ylabel('multiplier / geometric mean')
  fig.tight_layout()
  buf = __import__('io').BytesIO()
  fig.savefig(buf, format='png', dpi=110)
  files.write_bytes(path, buf.getvalue())


def _spec(run: dict) -> str:
  return f'{run["optimizer"]}:{run["arm"]}:{run["seed"]}'


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root', default='/work/invariance')
  parser.add_argument('--out', default=os.path.join(_ROOT, 'results'))
  args = parser.parse_args()
  walls = _walls(args.root)
  runs = [r for opt in grid.OPTIMIZERS for arm in grid.ARMS
          for seed in range(10)
          if (r := collect_run(args.root, opt, arm, seed, walls)) is not None]
  if not runs:
    print(f'no finished runs under {args.root}', file=sys.stderr)
    return 1
  names = list(runs[0]['multipliers'])
  inv, floor = invariance(runs, names)
  costs = cost_rows(runs)
  grid_log = [json.loads(l) for l in open(os.path.join(args.root,
                                                       'grid.jsonl'))] \
      if os.path.exists(os.path.join(args.root, 'grid.jsonl')) else []
  total = dict(runs=len(runs),
               wall_s=sum(r['wall_time_s'] for r in runs),
               cpu_s=sum(walls[_spec(r)].get('cpu_s') or 0.0 for r in runs),
               runs_without_cpu_s=sum('cpu_s' not in walls[_spec(r)]
                                      for r in runs))
  print(f'{total["runs"]} runs: {total["wall_s"] / 60:.1f} min of subprocess '
        f'wall time, {total["cpu_s"] / 60:.1f} min CPU '
        f'({total["runs_without_cpu_s"]} without a CPU record)')
  out = dict(runs=runs, invariance=inv, noise_floor=floor, cost=costs,
             groups=names, grid=grid_log, total=total)
  files.write_json(os.path.join(args.out, 'cifar10.json'), out)
  plot(runs, names, os.path.join(args.out, 'cifar10_multipliers.png'))
  sections = {'invariance': invariance_md(inv, floor),
              'cost': cost_md(costs), 'runs': runs_md(runs)}
  md = os.path.join(args.out, 'cifar10.md')
  if os.path.exists(md):
    files.write_text(md, fill_tables(files.read_text(md), sections))
  print('\n\n'.join('\n'.join(v) for v in sections.values()))
  return 0


def fill_tables(text: str, sections: dict[str, list[str]]) -> str:
  """Replaces each `<!-- generated:NAME -->...<!-- /generated -->` block of
  the hand-written results file with the table NAME."""
  for name, lines in sections.items():
    begin, end = f'<!-- generated:{name} -->', '<!-- /generated -->'
    if begin not in text:
      continue
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    text = head + begin + '\n' + '\n'.join(lines) + '\n' + end + tail
  return text


if __name__ == '__main__':
  sys.exit(main())
