r"""Tables of the width-invariance grid: results/cifar10.{md,json} and a plot.

  python experiments/invariance_results.py --root=/work/invariance \
      [--records=results/cifar10.json]

Writes results/cifar10.json and results/cifar10_multipliers.png, and fills
the generated tables of the hand-written results/cifar10.md (between its
`<!-- generated:NAME -->` markers). Reads every run of
experiments/invariance_grid.py (`<root>/<optimizer>/
<arm>/seed_<s>`: the optimizer's summary.json and history.json, the
transferred multipliers, timing.json, and `<root>/runs.jsonl` for each
subprocess's wall time); a run whose workdir is gone is taken from the
committed records (`--records`, each marked with its `source`). Computes,
per optimizer:

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
from experiments import invariance_stats as stats
from wt_jax import report
from wt_jax.nets import architectures
from wt_jax.nets import cost
from wt_jax.optimizers import result as result_lib
from wt_jax.transfer import problem as problem_lib
from wt_jax.transfer import projection
from wt_jax.util import files
from wt_jax.util import workdir as workdir_lib
from wt_jax.util.workdir import Workdir
# pylint: enable=g-import-not-at-top,wrong-import-position

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
# Agreement of multiplier vectors: the rule of the module doc
# (experiments/invariance_stats.py computes it).
# ----------------------------------------------------------------------------


def normalized(m) -> np.ndarray:
  return np.exp(stats.normalized_log(m))


def _vec(run: dict, names) -> np.ndarray:
  return np.asarray([run['multipliers'][n] for n in names], np.float64)


class Networks:
  """The original and projected networks of the grid's runs."""

  def __init__(self):
    self._cache = {}

  def of(self, spec: str):
    """(original, the network the run of `spec` optimized) problems."""
    if spec not in self._cache:
      config = grid.get_config(spec)
      original = problem_lib.from_config(config)
      net = original if spec.split(':')[1] == 'direct' else (
          projection.project(original, config.projection,
                             divisor=config.transfer.divisor))
      self._cache[spec] = (original, net)
    return self._cache[spec]

  def kept(self, spec: str, widths: dict) -> float:
    """The fraction of its network's uniform MACs `widths` keep."""
    _, net = self.of(spec)
    w = net.widths.replace([widths[n] for n in net.widths.names])
    return (cost.macs(w, net.resolution, net.num_classes) /
            cost.macs(net.widths, net.resolution, net.num_classes))

  def per_channel_macs(self, spec: str) -> np.ndarray:
    """MACs of one more channel in each group of the original network."""
    original, _ = self.of(spec)
    w = original.widths
    graph = architectures.layer_graph(w.spec, w.values, original.resolution,
                                      original.num_classes)
    base = w.array()
    return np.asarray([graph.macs(base + np.eye(len(base), dtype=np.int64)[g])
                       - graph.macs(base) for g in range(len(base))],
                      np.float64)


def _rho(vectors_a, vectors_b) -> float:
  values = [report.rank_correlation(a, b) for a in vectors_a
            for b in vectors_b]
  values = [v for v in values if not math.isnan(v)]
  return float(np.mean(values)) if values else float('nan')


def _arm_row(optimizer, arm, p_vecs, q_vecs, uniform_d, kept, resamples):
  pooled = list(p_vecs) + list(q_vecs)
  d = stats.distance_matrix(pooled)
  p = list(range(len(p_vecs)))
  q = list(range(len(p_vecs), len(pooled)))
  row = dict(optimizer=optimizer, arm=arm, seeds=len(p), direct_seeds=len(q),
             **stats.summary(d, p, q, uniform_d, resamples=resamples),
             spearman=_rho(p_vecs, q_vecs))
  if kept:
    row.update(kept_mean=float(np.mean(kept)), kept_min=float(np.min(kept)),
               kept_max=float(np.max(kept)))
  return row


def invariance(runs: list[dict], names, nets: Networks, histories: dict,
               resamples: int = stats.RESAMPLES) -> tuple[list[dict], list]:
  """(rows of the rule per arm and null, rows of the matched-pruning check).

  `histories`: {direct spec: its exports (history.json)} where present."""
  rows, matched = [], []
  for optimizer in grid.OPTIMIZERS:
    direct = [r for r in runs if r['optimizer'] == optimizer and
              r['arm'] == 'direct']
    if len(direct) < 2:
      continue
    dvec = [_vec(r, names) for r in direct]
    uniform_d = float(np.mean([stats.distance(np.ones(len(names)), v)
                               for v in dvec]))
    kept = lambda rs: [r['kept_fraction'] for r in rs]
    d = stats.distance_matrix(dvec)
    q = list(range(len(dvec)))
    rows.append(dict(
        optimizer=optimizer, arm='noise floor: direct vs direct', seeds=0,
        direct_seeds=len(dvec), floor=stats.floor(d, q),
        margin=stats.margin(uniform_d, stats.floor(d, q)),
        uniform_distance=uniform_d, verdict='-',
        spearman=float(np.nanmean([report.rank_correlation(dvec[i], dvec[j])
                                   for i in q for j in q if i < j])),
        kept_mean=float(np.mean(kept(direct))),
        kept_min=float(np.min(kept(direct))),
        kept_max=float(np.max(kept(direct)))))
    for arm in grid.ARMS:
      proj = [r for r in runs if r['optimizer'] == optimizer and
              r['arm'] == arm and arm != 'direct']
      if proj:
        rows.append(_arm_row(optimizer, arm, [_vec(r, names) for r in proj],
                             dvec, uniform_d, kept(proj), resamples))
        matched += _matched(optimizer, arm, proj, direct, names, histories,
                            resamples)
    rng = np.random.default_rng(0)
    cost_null, exponent = stats.cost_ordered_null(
        nets.per_channel_macs(_spec(direct[0])), dvec)
    nulls = {
        'null: uniform multipliers': [np.ones(len(names))],
        'null: permuted direct multipliers': [rng.permutation(v)
                                              for v in dvec],
        f'null: cost-ordered (MACs per channel ^ -{exponent:.2f})':
            [cost_null],
    }
    for label, vecs in nulls.items():
      rows.append(_arm_row(optimizer, label, vecs, dvec, uniform_d, [],
                           resamples))
  return rows, matched


def _matched(optimizer, arm, proj, direct, names, histories, resamples):
  """The rule against each direct seed's export nearest the arm's mean kept
  fraction (direct seeds whose exports exist, >= 2 of them)."""
  target = float(np.mean([r['kept_fraction'] for r in proj]))
  exports = []
  for r in direct:
    history = histories.get(_spec(r))
    if not history:
      continue
    i = stats.nearest([h['macs_fraction'] for h in history], target)
    uniform = r['uniform_widths']
    exports.append((history[i], np.asarray(
        [history[i]['widths'][n] / uniform[n] for n in names], np.float64)))
  if len(exports) < 2:
    return []
  qvecs = [v for _, v in exports]
  uniform_d = float(np.mean([stats.distance(np.ones(len(names)), v)
                             for v in qvecs]))
  row = _arm_row(optimizer, arm, [_vec(r, names) for r in proj], qvecs,
                 uniform_d, [r['kept_fraction'] for r in proj], resamples)
  row.update(matched_fractions=[h['macs_fraction'] for h, _ in exports],
             matched_steps=[h['step'] for h, _ in exports])
  return [row]


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


def _ci(r) -> str:
  return (f'{_f(r["excess"])} [{_f(r["excess_low"])}, '
          f'{_f(r["excess_high"])}]')


def _p(r) -> str:
  return f'{r["p_value"]:.3f} ({r["splits"]})'


def _kept(r) -> str:
  if 'kept_mean' not in r:
    return '-'
  return (f'{r["kept_mean"]:.2f} ({r["kept_min"]:.2f}-{r["kept_max"]:.2f})')


_HEAD = ('| optimizer | projection | seeds x direct seeds | MACs kept | '
         'distance to direct | noise floor | excess over the floor [95% '
         'CI] | p (splits) | margin | verdict | Spearman rho |')


def _rule(r) -> str:
  """The rule's cells of a row: distance ... verdict."""
  return (f'{_f(r["cross"])} | {_f(r["floor"])} | {_ci(r)} | {_p(r)} | '
          f'{_f(r["margin"])} | {r["verdict"]}')


def invariance_md(rows: list[dict]) -> list[str]:
  out = [_HEAD, '|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|']
  for r in rows:
    if r['seeds'] == 0:  # the noise floor
      n, label = f'{r["direct_seeds"]} seeds', f'**{r["arm"]}**'
      rule = f'- | {_f(r["floor"])} | - | - | {_f(r["margin"])} | -'
    else:
      n, label = f'{r["seeds"]} x {r["direct_seeds"]}', _label(r['arm'])
      rule = _rule(r)
    out.append(f'| {r["optimizer"]} | {label} | {n} | {_kept(r)} | {rule} | '
               f'{_f(r["spearman"], ".2f")} |')
  return out


def matched_md(rows: list[dict]) -> list[str]:
  out = ['| optimizer | projection | seeds x direct exports | MACs kept | '
         'direct exports used (MACs kept, step) | distance | floor of the '
         'exports | excess [95% CI] | p (splits) | margin | verdict |',
         '|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|']
  for r in rows:
    used = ', '.join(f'{f:.2f} @ {s}' for f, s in zip(r['matched_fractions'],
                                                       r['matched_steps']))
    out.append(
        f'| {r["optimizer"]} | {_label(r["arm"])} | {r["seeds"]} x '
        f'{r["direct_seeds"]} | {_kept(r)} | {used} | {_rule(r)} |')
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


def _history(root: str, spec: str) -> Optional[list]:
  optimizer, arm, seed = spec.split(':')
  wd = Workdir(os.path.join(root, optimizer, arm, f'seed_{seed}'))
  return _read(workdir_lib.history(wd.optimize()))


def _all_subprocesses(root: str) -> dict:
  """Every subprocess the grid ran under `root` (runs.jsonl), superseded and
  failed ones included."""
  path = os.path.join(root, 'runs.jsonl')
  recs = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
  return dict(subprocesses=len(recs),
              wall_s=sum(r.get('wall_s') or 0.0 for r in recs),
              cpu_s=sum(r.get('cpu_s') or 0.0 for r in recs),
              failed=sum(r.get('rc') != 0 for r in recs))


def gather(root: str, records: Optional[str]) -> tuple[list[dict], dict]:
  """Every finished run: from its workdir under `root`, else (its workdir
  gone) from the committed `records` file, marked so; and the earlier
  record file's grid totals."""
  walls = _walls(root)
  runs = []
  for opt in grid.OPTIMIZERS:
    for arm in grid.ARMS:
      for seed in range(10):
        r = collect_run(root, opt, arm, seed, walls)
        if r is not None:
          runs.append(dict(r, source='workdir', cpu_s=walls[_spec(r)].get(
              'cpu_s')))
  earlier = {}
  if records and os.path.exists(records):
    old = files.read_json(records)
    have = {_spec(r) for r in runs}
    label = os.path.relpath(records, _ROOT)
    kept = [dict(r, source=r['source'] if r.get('source', 'workdir') !=
                 'workdir' else f'record ({label})')
            for r in old['runs'] if _spec(r) not in have]
    runs = sorted(runs + kept, key=lambda r: (
        grid.OPTIMIZERS.index(r['optimizer']), list(grid.ARMS).index(
            r['arm']), r['seed']))
    earlier = old.get('earlier_grid', old.get('total', {}))
  return runs, earlier


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root', default='/work/invariance')
  parser.add_argument('--out', default=os.path.join(_ROOT, 'results'))
  parser.add_argument('--records', default=os.path.join(_ROOT, 'results',
                                                        'cifar10.json'),
                      help='runs whose workdir is gone are read from here')
  parser.add_argument('--resamples', type=int, default=stats.RESAMPLES)
  args = parser.parse_args()
  runs, earlier = gather(args.root, args.records)
  if not runs:
    print(f'no finished runs under {args.root}', file=sys.stderr)
    return 1
  nets = Networks()
  for r in runs:
    original, _ = nets.of(_spec(r))
    r['kept_fraction'] = nets.kept(_spec(r), r['widths_before_flops_matching'])
    r['uniform_widths'] = original.widths.as_dict()
  names = list(runs[0]['multipliers'])
  histories = {_spec(r): h for r in runs if r['arm'] == 'direct' and
               (h := _history(args.root, _spec(r)))}
  inv, matched = invariance(runs, names, nets, histories, args.resamples)
  costs = cost_rows(runs)
  grid_log = [json.loads(l) for l in open(os.path.join(args.root,
                                                       'grid.jsonl'))] \
      if os.path.exists(os.path.join(args.root, 'grid.jsonl')) else []
  new = [r for r in runs if r['source'] == 'workdir']
  total = dict(runs=len(runs), runs_from_workdirs=len(new),
               wall_s_of_runs_from_workdirs=sum(r['wall_time_s'] for r in new),
               this_root=_all_subprocesses(args.root))
  print(f'{len(runs)} runs ({len(new)} from workdirs under {args.root}); '
        f'every subprocess under it: {total["this_root"]}')
  out = dict(runs=runs, invariance=inv, matched_pruning=matched, cost=costs,
             groups=names, grid=grid_log, total=total, earlier_grid=earlier,
             rule=dict(alpha=stats.ALPHA, level=stats.LEVEL,
                       resamples=args.resamples,
                       margin_fraction=stats.MARGIN_FRACTION))
  files.write_json(os.path.join(args.out, 'cifar10.json'), out)
  plot(runs, names, os.path.join(args.out, 'cifar10_multipliers.png'))
  sections = {'invariance': invariance_md(inv), 'matched': matched_md(matched),
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
