"""The report: results.json, results.md, widths.png and overhead.png.

Reads what the pipeline's stages left in the workdir (width vectors, the
optimizers' summaries, one final.json per arm and seed) and writes, all
atomically:
* `results.json`: per arm MACs, params, top-1/top-5 per seed with mean and
  std, optimization cost and wall time; the overhead accounting; the widths;
  the rank correlation of transferred and direct per-group multipliers;
* `results.md`: the same as tables;
* `widths.png`: per-group widths of the arms side by side, in network order;
* `overhead.png`: top-1 against width-optimization cost.
"""
from __future__ import annotations

import io
from typing import Any, Callable, Optional

from matplotlib.figure import Figure
import numpy as np

from wt_jax.nets import cost
from wt_jax.nets import widths as widths_lib
from wt_jax.optimizers import result as result_lib
from wt_jax.transfer import projection
from wt_jax.transfer.problem import Problem
from wt_jax.util import files
from wt_jax.util import fingerprint
from wt_jax.util.workdir import Workdir

ARM_LABELS = {'uniform': 'uniform baseline', 'transferred': 'transferred',
              'direct': 'direct'}


def _load(path) -> Optional[Any]:
  return files.read_json(path) if files.exists(path) else None


def mean_std(values) -> tuple[float, float]:
  v = np.asarray(values, dtype=np.float64)
  if not v.size:
    return float('nan'), float('nan')
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def rank_correlation(a, b) -> float:
  """Spearman's rho (average ranks for ties)."""
  def ranks(x):
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind='mergesort')
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=np.float64)
    for v in np.unique(x):  # average ranks of ties
      r[x == v] = r[x == v].mean()
    return r
  ra, rb = ranks(a), ranks(b)
  if ra.std() == 0 or rb.std() == 0:
    return float('nan')
  return float(np.corrcoef(ra, rb)[0, 1])


def _arm(wd: Workdir, arm: str, seeds, prob: Problem,
         fresh: Callable[[str], bool]) -> Optional[dict]:
  """One arm's widths and its per-seed final metrics (None if not made).

  Only outputs made from this run's inputs count (`fresh`); the uniform
  widths are rewritten by every run.
  """
  path = wd.widths(arm)
  if not files.exists(path) or (arm != 'uniform' and not fresh(path)):
    return None
  w = widths_lib.load(path)
  finals = [f for f in (_load(p) for p in (wd.final(arm, s) for s in seeds)
                        if fresh(p)) if f]
  top1 = [f['top1'] for f in finals]
  top5 = [f['top5'] for f in finals]
  return dict(
      macs=cost.macs(w, prob.resolution, prob.num_classes),
      params=cost.params(w, prob.resolution, prob.num_classes),
      seeds=[f['seed'] for f in finals], top1=top1, top5=top5,
      top1_mean=mean_std(top1)[0], top1_std=mean_std(top1)[1],
      top5_mean=mean_std(top5)[0], top5_std=mean_std(top5)[1],
      train_wall_time_s=float(sum(f['wall_time_s'] for f in finals)),
      widths=w.as_dict(), opt_cost=0.0, opt_wall_time_s=0.0)


def _overhead(original: Problem, projected: Problem, opt, direct) -> dict:
  ov = projection.overhead(original, projected, opt.train_macs,
                           opt.details.get('macs_not_scaling_with_data', 0))
  ov.update(projected_wall_time_s=opt.wall_time_s,
            projected_epochs=opt.epochs, projected_details=opt.details)
  if direct is not None:
    ov.update(direct_cost_measured=direct.train_macs,
              direct_wall_time_s=direct.wall_time_s,
              measured_cost_ratio=(direct.train_macs / opt.train_macs
                                   if opt.train_macs else float('nan')),
              wall_time_ratio=(direct.wall_time_s / opt.wall_time_s
                               if opt.wall_time_s else float('nan')))
  return ov


def _result(path: str, fresh: Callable[[str], bool]):
  return result_lib.load(path) if fresh(path) else None


def collect(config, original: Problem, projected: Problem, wd: Workdir,
            fresh: Callable[[str], bool] = lambda path: True) -> dict:
  """Everything the report shows, as plain values.

  `fresh(path)` says whether an output was made from this run's inputs;
  the pipeline passes its fingerprint check, so a report never shows a
  number this config did not compute.
  """
  arms = {a: v for a in ('uniform', 'transferred', 'direct')
          if (v := _arm(wd, a, config.seeds, original, fresh)) is not None}
  out: dict[str, Any] = dict(arch=original.widths.arch,
                             depth=list(original.widths.depth),
                             resolution=original.resolution,
                             num_classes=original.num_classes,
                             optimizer=(None if config.widths_file else
                                        config.optimizer),
                             widths_from=widths_source(config),
                             projection=config.projection.to_dict(),
                             stacking=config.transfer.stacking,
                             seeds=list(config.seeds), arms=arms)
  opt = _result(wd.optimize(), fresh)
  direct = _result(wd.optimize(direct=True), fresh)
  if opt is not None:
    out['overhead'] = _overhead(original, projected, opt, direct)
    if 'transferred' in arms:
      arms['transferred'].update(opt_cost=float(opt.train_macs),
                                 opt_wall_time_s=opt.wall_time_s)
  if direct is not None and 'direct' in arms:
    arms['direct'].update(opt_cost=float(direct.train_macs),
                          opt_wall_time_s=direct.wall_time_s)
  if 'transferred' in arms and 'direct' in arms:
    u = original.widths.array()
    t = np.array(list(arms['transferred']['widths'].values())) / u
    d = np.array(list(arms['direct']['widths'].values())) / u
    out['rank_correlation'] = rank_correlation(t, d)
  return out


def widths_source(config) -> str:
  """Where the transferred widths come from: the width optimizer run on the
  projected problem, or the widths file given instead."""
  if config.widths_file:
    digest = fingerprint.file_digest(config.widths_file)
    return (f'widths file {config.widths_file} (sha256 '
            f'{(digest or "missing")[:12]}), no optimizer run')
  return f'optimizer {config.optimizer}'


def _fmt_pm(mean, std, scale=100.0):
  if np.isnan(mean):
    return 'n/a'
  return f'{mean * scale:.2f} ± {std * scale:.2f}'


def _header(r: dict) -> list[str]:
  return [f'# wt_jax results: {r["arch"]} at {r["resolution"]}px, '
          f'{r["num_classes"]} classes', '',
          f'Widths from: {r["widths_from"]}; projection: '
          + ', '.join(f'{k}={v}' for k, v in r['projection'].items())
          + f'; stacking: {r["stacking"]}; seeds: {r["seeds"]}.']


def _arm_table(r: dict) -> list[str]:
  lines = ['| arm | MACs | params | top-1 % (mean ± std) | top-5 % | '
           'seeds | optimization cost (MAC·examples) | overhead vs direct | '
           'optimization wall time | training wall time |',
           '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  ov = r.get('overhead', {})
  direct_cost = ov.get('direct_cost_measured', ov.get('direct_cost_analytic'))
  for arm, a in r['arms'].items():
    if arm == 'uniform':
      overhead = '-'
    elif arm == 'direct':
      overhead = '1x'
    else:
      overhead = (f'{direct_cost / a["opt_cost"]:.1f}x less'
                  if a['opt_cost'] and direct_cost else '-')
    lines.append(
        f'| {ARM_LABELS[arm]} | {cost.human(a["macs"])} | {a["params"]:,} | '
        f'{_fmt_pm(a["top1_mean"], a["top1_std"])} | '
        f'{_fmt_pm(a["top5_mean"], a["top5_std"])} | {len(a["seeds"])} | '
        f'{a["opt_cost"]:.3g} | {overhead} | {a["opt_wall_time_s"]:.1f} s | '
        f'{a["train_wall_time_s"]:.1f} s |')
  return lines


def _overhead_table(ov: dict) -> list[str]:
  lines = ['## Optimization overhead', '', '| quantity | value |',
           '|---|---:|',
           f'| projected optimization cost (MAC·examples) | '
           f'{ov["projected_cost"]:.4g} |',
           f'| direct optimization cost, analytic (same epochs) | '
           f'{ov["direct_cost_analytic"]:.4g} |',
           f'| reduction, analytic | {ov["cost_ratio"]:.1f}x |',
           f'| of which MACs per example | {ov["macs_ratio"]:.2f}x |',
           f'| of which training examples | {ov["data_ratio"]:.2f}x |',
           f'| projected optimization wall time | '
           f'{ov["projected_wall_time_s"]:.1f} s |']
  if 'direct_cost_measured' in ov:
    lines += [f'| direct optimization cost, measured | '
              f'{ov["direct_cost_measured"]:.4g} |',
              f'| reduction, measured cost | '
              f'{ov["measured_cost_ratio"]:.1f}x |',
              f'| direct optimization wall time | '
              f'{ov["direct_wall_time_s"]:.1f} s |',
              f'| reduction, wall time | {ov["wall_time_ratio"]:.1f}x |']
  return lines


def _widths_table(r: dict) -> list[str]:
  if not r['arms']:
    return []
  arms = list(r['arms'])
  names = list(r['arms'][arms[0]]['widths'])
  return (['## Widths', '', '| group | ' + ' | '.join(arms) + ' |',
           '|---|' + '---:|' * len(arms)] +
          [f'| {n} | ' + ' | '.join(str(r['arms'][a]['widths'][n])
                                    for a in arms) + ' |' for n in names])


def markdown(results: dict, full: bool = True) -> str:
  """results.md; `full=False`: the header and the two tables (what the CLI
  prints)."""
  r = results
  parts = [_header(r), _arm_table(r)]
  if r.get('overhead'):
    parts.append(_overhead_table(r['overhead']))
  if 'rank_correlation' in r:
    parts.append([f'Rank correlation (Spearman) of transferred vs direct '
                  f'per-group multipliers: {r["rank_correlation"]:.3f}'])
  if full:
    parts += [_widths_table(r), ['![widths](widths.png)', '',
                                 '![overhead](overhead.png)']]
  return '\n\n'.join('\n'.join(p) for p in parts if p) + '\n'


def _png(fig) -> bytes:
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=120, bbox_inches='tight')
  return buf.getvalue()


def plot_widths(results: dict) -> bytes:
  arms = list(results['arms'])
  names = list(results['arms'][arms[0]]['widths'])
  x = np.arange(len(names))
  width = 0.8 / len(arms)
  fig = Figure(figsize=(max(8, 0.35 * len(names) + 2), 4.5))
  ax = fig.subplots()
  for i, arm in enumerate(arms):
    vals = [results['arms'][arm]['widths'][n] for n in names]
    ax.bar(x + (i - (len(arms) - 1) / 2) * width, vals, width,
           label=f'{ARM_LABELS[arm]} ({cost.human(results["arms"][arm]["macs"])}'
                 ' MACs)')
  ax.set_xticks(x)
  ax.set_xticklabels(names, rotation=90, fontsize=7)
  ax.set_ylabel('channels')
  ax.set_title(f'{results["arch"]}: per-group widths, network order')
  ax.legend(fontsize=8)
  ax.grid(axis='y', alpha=0.3)
  data = _png(fig)
  return data


def plot_overhead(results: dict) -> bytes:
  fig = Figure(figsize=(6.5, 4.5))
  ax = fig.subplots()
  ov = results.get('overhead', {})
  for arm, a in results['arms'].items():
    if np.isnan(a['top1_mean']):
      continue
    y, e = 100 * a['top1_mean'], 100 * a['top1_std']
    if arm == 'uniform':
      ax.axhspan(y - e, y + e, color='gray', alpha=0.2)
      ax.axhline(y, color='gray', ls='--', label='uniform baseline (no search)')
    elif a['opt_cost'] > 0:
      ax.errorbar([a['opt_cost']], [y], yerr=[e], fmt='o', capsize=4,
                  label=ARM_LABELS[arm])
  if 'direct' not in results['arms'] and ov.get('direct_cost_analytic'):
    ax.axvline(ov['direct_cost_analytic'], color='C3', ls=':',
               label='direct optimization cost (analytic)')
  ax.set_xscale('log')
  lo, hi = ax.get_ylim()
  ax.set_ylim(lo, min(hi, 100.5))
  ax.set_xlabel('width-optimization cost (MAC·examples, log)')
  ax.set_ylabel('top-1 (%)')
  ax.set_title('accuracy vs optimization cost')
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  data = _png(fig)
  return data


def write_report(config, original: Problem, projected: Problem,
                 wd: Workdir,
                 fresh: Callable[[str], bool] = lambda path: True) -> dict:
  results = collect(config, original, projected, wd, fresh)
  files.write_json(wd.report('json'), results)
  files.write_text(wd.report('markdown'), markdown(results))
  if results['arms']:
    files.write_bytes(wd.report('widths_plot'), plot_widths(results))
    files.write_bytes(wd.report('overhead_plot'), plot_overhead(results))
  return results
