r"""Generates results/cifar10_accuracy.md and results/cifar10_accuracy_widths.png from the grid.

  python experiments/accuracy_results.py --budget=cpu --workdir_root=/work/grid_cifar10

Reads the arms' pipeline workdirs (WORKDIR_ROOT/BUDGET/ARM, see
experiments/accuracy_grid.py) as they are: finished arms are reported,
unfinished ones are marked. Per arm: MACs, params, top-1 mean ± std over the
seeds, the gain over the uniform baseline, the width optimization's cost
(analytic MAC·examples: the optimizer's `train_macs`), the overhead
reduction against the direct arm of the same optimizer (measured cost ratio,
analytic ratio from `projection.overhead`, wall-time ratio), the optimization
wall time, and Spearman's rank correlation of the transferred and direct
per-group multipliers (`report.rank_correlation`). Both files are written
atomically (`wt_jax.util.files`). The hand-written reading of the numbers is
included from experiments/accuracy_reading.md when it exists.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != _HERE]
sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

import wt_jax  # noqa: E402,F401  pylint: disable=unused-import
from experiments import accuracy_configs as grid_configs  # noqa: E402
from wt_jax import report  # noqa: E402
from wt_jax.nets import cost  # noqa: E402
from wt_jax.nets import widths as widths_lib  # noqa: E402
from wt_jax.optimizers import result as result_lib  # noqa: E402
from wt_jax.run import pipeline  # noqa: E402
from wt_jax.transfer import projection  # noqa: E402
from wt_jax.util import files  # noqa: E402
from wt_jax.util.workdir import Workdir  # noqa: E402

DEFAULT_ROOT = '/work/grid_cifar10'
READING = os.path.join(_HERE, 'accuracy_reading.md')
DIRECT_OF = {'morphnet': 'mn_direct', 'autoslim': 'as_direct'}


def _read(path):
  return files.read_json(path) if files.exists(path) else None


def _widths(workdir, name):
  path = Workdir(workdir).widths(name)
  return widths_lib.load(path) if files.exists(path) else None


def _wall_times(workdir):
  path = os.path.join(workdir, 'grid_wall_time.txt')
  if not os.path.exists(path):
    return []
  out = []
  for line in open(path):
    parts = line.split()
    if len(parts) >= 4 and parts[2].startswith('rc='):
      out.append((int(parts[2][3:]), float(parts[3])))
  return out


def collect_arm(budget, root, arm):
  """Everything about one arm, as plain values (None where missing).

  A per-seed arm (`accuracy_configs.per_seed`) is its runs merged: the
  final accuracies, seeds and wall times of every run (so their spread
  includes the optimizer's), the widths, cost and multipliers of the first
  run that has them (`runs_merged` says how many)."""
  seeds = grid_configs.runs(budget, arm)
  if seeds == (None,):
    return _collect_run(budget, root, arm, None)
  parts = [_collect_run(budget, root, arm, s) for s in seeds]
  first = next((p for p in parts if p.get('opt') is not None), parts[0])
  out = dict(first, seeds_wanted=list(seeds), runs_merged=len(parts),
             workdir=os.path.join(root, budget, arm),
             exists=any(p['exists'] for p in parts))
  for key in ('top1', 'seeds', 'train_wall_s', 'train_img_per_s',
              'train_steps', 'grid_runs'):
    out[key] = [v for p in parts for v in p[key]]
  out['top1_mean'], out['top1_std'] = report.mean_std(out['top1'])
  return out


def _collect_run(budget, root, arm, seed):
  """One run of an arm (its only run, or the run of `seed`)."""
  spec = grid_configs.ARMS[arm]
  config = grid_configs.arm_config(budget, arm, seed)
  workdir = os.path.join(root, budget, arm) if seed is None else (
      os.path.join(root, budget, arm, f'seed_{seed}'))
  run = pipeline.prepare(config, workdir)
  prob, proj, wd = run.original, run.projected, run.workdir
  out = dict(arm=arm, label=spec['label'], final=spec['final'],
             optimizer=spec['optimizer'], workdir=workdir,
             seeds_wanted=list(config.seeds), exists=os.path.isdir(workdir),
             grid_runs=_wall_times(workdir))
  w = _widths(workdir, spec['final'])
  out['widths'] = w
  if w is not None:
    out['macs'] = cost.macs(w, prob.resolution, prob.num_classes)
    out['params'] = cost.params(w, prob.resolution, prob.num_classes)
  finals = [f for f in (_read(wd.final(spec['final'], s))
                        for s in config.seeds) if f]
  out['top1'] = [f['top1'] for f in finals]
  out['seeds'] = [f['seed'] for f in finals]
  out['train_wall_s'] = [f['wall_time_s'] for f in finals]
  out['train_img_per_s'] = [f['img_per_s'] for f in finals]
  out['train_steps'] = [f['steps'] for f in finals]
  out['top1_mean'], out['top1_std'] = report.mean_std(out['top1'])
  out['uniform'] = prob.widths
  out['num_train'] = prob.num_train
  out['resolution'] = prob.resolution
  out['num_classes'] = prob.num_classes
  if spec['optimizer'] is None:
    return out
  is_direct = spec['final'] == 'direct'
  opt_dir = wd.optimize(direct=is_direct)
  opt = result_lib.load(opt_dir)
  out['opt'] = opt
  out['shared_from'] = spec.get('share_optimize_from') if os.path.exists(
      os.path.join(opt_dir, 'SHARED_FROM')) else None
  out['proj_uniform'] = proj.widths
  out['proj_resolution'] = proj.resolution
  out['proj_train'] = proj.num_train
  if opt is not None and not is_direct:
    out['overhead'] = projection.overhead(prob, proj, opt.train_macs)
  # Per-group multipliers relative to the original uniform widths.
  u = prob.widths.array().astype(np.float64)
  if is_direct:
    d = _widths(workdir, 'direct_optimized')
    out['multipliers'] = None if d is None else d.array() / u
    out['optimized'] = d
  else:
    t = _read(wd.widths('transferred'))
    out['multipliers'] = None if t is None else np.array(
        [t['multipliers'][n] for n in prob.widths.names])
    out['optimized'] = _widths(workdir, 'projected_optimized')
  out['final_multipliers'] = None if w is None else w.array() / u
  return out


def status(a):
  n, want = len(a['top1']), len(a['seeds_wanted'])
  if n == want:
    return 'done'
  if not a['exists']:
    return 'not started'
  if a['optimizer'] and a.get('opt') is None:
    return 'optimizing / not finished'
  return f'training: {n}/{want} seeds'


def _pm(mean, std, n):
  if not n:
    return 'n/a'
  return f'{100 * mean:.2f} ± {100 * std:.2f} (n={n})'


def _diff(a, b):
  """Mean difference a - b in points, ± its standard error."""
  if not a['top1'] or not b['top1']:
    return 'n/a', None
  d = 100 * (a['top1_mean'] - b['top1_mean'])
  se = 100 * math.sqrt(np.var(a['top1'], ddof=1) / len(a['top1']) +
                       np.var(b['top1'], ddof=1) / len(b['top1'])) if (
                           len(a['top1']) > 1 and len(b['top1']) > 1) else 0.0
  return f'{d:+.2f} ± {se:.2f}', d


def _fmt(x, spec='.3g'):
  return 'n/a' if x is None or (isinstance(x, float) and math.isnan(x)) \
      else format(x, spec)


def plot_widths(arms, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  uniform = next(iter(arms.values()))['uniform']
  names = list(uniform.names)
  x = np.arange(len(names))
  panels = [('MorphNet', [a for a in arms.values()
                          if a['optimizer'] == 'morphnet']),
            ('AutoSlim', [a for a in arms.values()
                          if a['optimizer'] == 'autoslim'])]
  fig, axes = plt.subplots(2, 1, figsize=(15, 9.5), sharex=True)
  styles = ['o-', 's--', '^-.', 'v:', 'D--', 'P-.', 'X:']
  for ax, (title, members) in zip(axes, panels):
    ax.bar(x, uniform.array(), 0.8, color='0.85', edgecolor='0.6',
           label=f'uniform ({cost.human(cost.macs(uniform, 32, 10))} MACs)')
    k = 0
    for a in members:
      if a['widths'] is None:
        continue
      vals = a['widths'].array()
      n_t = sum(1 for m in members if m['final'] == 'transferred')
      if a['final'] == 'direct':
        ax.plot(x, vals, 'k-', lw=2.8, marker='o', ms=7, zorder=5,
                label=f'direct ({cost.human(a["macs"])} MACs)')
      else:
        # A small horizontal offset per arm, so coinciding arms stay visible.
        dx = 0.09 * (k - (n_t - 1) / 2)
        ax.plot(x + dx, vals, styles[k % len(styles)], lw=1.4, ms=6,
                color=f'C{k}', alpha=0.9,
                label=f'transferred: {a["label"].split(": ", 1)[-1]} '
                      f'({cost.human(a["macs"])} MACs)')
        k += 1
    ax.set_title(f'{title}: per-group widths after FLOPs matching to the '
                 'uniform MACs (network order)')
    ax.set_ylabel('channels')
    ax.grid(axis='y', alpha=0.3)
    for b in range(1, 3):  # stage boundaries
      first = next((i for i, n in enumerate(names)
                    if n.startswith(f'stage{b + 1}')), None)
      if first is not None:
        ax.axvline(first - 0.5, color='0.5', lw=0.8, ls=':')
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1.0),
              framealpha=0.9)
  axes[-1].set_xticks(x)
  axes[-1].set_xticklabels(names, rotation=60, ha='right', fontsize=8)
  fig.tight_layout()
  import io as _io  # pylint: disable=g-import-not-at-top
  buf = _io.BytesIO()
  fig.savefig(buf, format='png', dpi=110)
  plt.close(fig)
  files.write_bytes(path, buf.getvalue())


def markdown(budget, root, arms, png_name, command):
  b = grid_configs.BUDGETS[budget]
  base = grid_configs.base(budget)
  u = arms['uniform']
  lines = [
      '# Width transfer on real CIFAR-10: a reproduction grid', '',
      'Claim under test (Chin, Marculescu, Morcos, CVPR-W 2021): widths '
      'optimized on a projected problem, then extrapolated, match direct '
      "optimization's accuracy gain over the uniform baseline at a fraction "
      'of the cost.', '',
      f'Generated by `{command}` from the workdirs under '
      f'`{os.path.join(root, budget)}` (budget preset `{budget}`). Arms that '
      'have not finished are marked as such. The grid itself (resumable; one '
      'subprocess per arm) ran as `nohup python experiments/accuracy_grid.py '
      f'--budget={budget} --workdir_root={root} > {root}/grid_{budget}.log '
      '2>&1 &`.', '',
      '## Set-up', '',
      f'* Data: the real CIFAR-10 JPEGs (`data.source=folder:'
      f'{grid_configs.DATA_DIR}`), {base.data.resolution}px. Original problem: '
      f'`data.sample_fraction={base.data.sample_fraction}` of the train split '
      f'minus the held-out val split -> {u["num_train"]:,} training images '
      f'(class-balanced); val (width decisions) = {base.data.val_fraction:.0%}'
      ' of the full train split; top-1 is on the full 10,000-image test '
      'split.',
      f'* Network: `{base.arch}` at `width_mult={base.width_mult}` '
      f'({", ".join(str(v) for v in sorted(set(u["uniform"].array())))} '
      f'channels per stage), {cost.human(cost.macs(u["uniform"], 32, 10))} '
      f'MACs, {cost.params(u["uniform"], 32, 10):,} params.',
      f'* Final training: {base.train.epochs:g} epochs, batch '
      f'{base.train.batch_size}, SGD Nesterov, cosine, base_lr '
      f'{base.train.base_lr} per 256, warm-up {base.train.warmup_epochs} '
      f'epochs, wd {base.train.weight_decay}; seeds {list(base.seeds)}. '
      'Every arm is FLOPs-matched to the uniform network\'s MACs '
      '(`transfer.target_macs=0`, `divisor=4`, `min_width=4`).',
      f'* MorphNet: shrink to {base.morphnet.shrink_to:.0%} of the starting '
      f'MACs (`shrink_to`; the run stops there), at most '
      f'{base.morphnet.epochs:g} epochs of its own (projected) training '
      f'split, strength knob {base.morphnet.strength_knob} (strength = knob '
      f'/ starting MACs), lr {base.morphnet.lr} per 256 constant, threshold '
      f'{base.morphnet.threshold}, export every {base.morphnet.export_every} '
      f'steps, min width {base.morphnet.min_width}.',
      f'* AutoSlim: {base.autoslim.epochs:g} epochs of slimmable training '
      '(sandwich rule, 2 random widths, in-place distillation), then greedy '
      f'slimming to {base.autoslim.target_fraction:.0%} of the MACs with '
      f'grid step {base.autoslim.step_fraction}, BN recalibration on '
      f'{base.autoslim.calib_batches} train batches, decisions on '
      + (f'{base.autoslim.eval_batches} val batches of '
         f'{base.train.eval_batch_size}' if base.autoslim.eval_batches
         else 'the whole val split')
      + f'; min width {base.autoslim.min_width}.',
      '* Transferred arms: the projection named in the arm, the optimizer on '
      'it, dimension + depth matching (`stack_last_block` unless named), '
      'then FLOPs matching to the uniform MACs. Direct arms: the optimizer on '
      'the original problem, then FLOPs matching. The uniform baseline is '
      'trained once and shared by all arms. `mn_depth_avg` reuses the '
      'optimization of `mn_depth_last` (same projected problem; only the '
      'stacking rule differs).' + (
          ' Each optimized arm is one run per seed, each its own '
          'optimization and one final training, so its accuracy spread '
          'includes the optimizer\'s own noise; its widths, cost and ρ '
          'columns are those of its first finished run.'
          if budget in grid_configs.PER_SEED_OPTIMIZATION else ''),
      f'* Budget preset `{budget}` (experiments/accuracy_configs.py): '
      + ', '.join(f'`{k}={v}`' for k, v in b.items()) + '.', '']

  # ---- Accuracy table.
  lines += ['## Accuracy at equal MACs', '',
            '| arm | status | MACs | params | top-1 % (mean ± std) | '
            'Δ vs uniform (pp ± s.e.) | Δ − Δ(direct, same optimizer) |',
            '|---|---|---:|---:|---:|---:|---:|']
  for name, a in arms.items():
    delta, d = _diff(a, u) if name != 'uniform' else ('—', None)
    gap = '—'
    direct = arms.get(DIRECT_OF.get(a['optimizer'], ''), None)
    if a['final'] == 'transferred' and direct is not None and d is not None:
      _, dd = _diff(direct, u)
      if dd is not None:
        gap = f'{d - dd:+.2f}'
    lines.append(
        f'| {a["label"]} | {status(a)} | '
        f'{cost.human(a["macs"]) if a["widths"] is not None else "n/a"} | '
        f'{a["params"]:,} | ' if a['widths'] is not None else
        f'| {a["label"]} | {status(a)} | n/a | n/a | ')
    lines[-1] += (f'{_pm(a["top1_mean"], a["top1_std"], len(a["top1"]))} | '
                  f'{delta} | {gap} |')

  # ---- Cost table.
  lines += ['', '## Width-optimization cost', '',
            'Cost = the optimizer\'s `train_macs` (analytic MAC·examples: '
            '3 x forward MACs per training example, forward MACs per '
            'evaluated example for AutoSlim\'s greedy slimming). '
            '"Measured" reduction = the direct arm\'s cost / this arm\'s '
            'cost, both as run (MorphNet stops at the MACs target, so the '
            'two may run different numbers of epochs); "analytic" = '
            '`projection.overhead`\'s ratio, which assumes the same number '
            'of epochs on both problems (MACs ratio x training-examples '
            'ratio). "Val top-1 at the end": the accuracy on the val split '
            'of the network the optimizer trained (MorphNet: the regularized '
            'net at its stopping step; AutoSlim: the full-width supernet), '
            'a measure of how trained the net was whose structure decided '
            'the widths.', '',
            '| arm | optimized problem | optimizer epochs (steps) | '
            'reached target | val top-1 at the end | cost '
            '(MAC·examples) | reduction, measured | reduction, analytic '
            '(MACs x data) | optimization wall time | wall-time reduction |',
            '|---|---|---:|---|---:|---:|---:|---:|---:|---:|']
  for name, a in arms.items():
    if a['optimizer'] is None:
      continue
    opt = a.get('opt')
    pu = a['proj_uniform'].as_dict()
    problem = (f'{pu["stage1"]}/{pu["stage2"]}/{pu["stage3"]} ch, depth '
               f'{"/".join(map(str, a["proj_uniform"].depth))}, '
               f'{a["proj_resolution"]}px, {a["proj_train"]:,} img')
    if opt is None:
      lines.append(f'| {a["label"]} | {problem} | {status(a)} | | | | | | | |')
      continue
    direct = arms.get(DIRECT_OF[a['optimizer']])
    dopt = direct.get('opt') if direct else None
    det = opt.details
    steps = det.get('stopped_at_step', det.get('train_steps', ''))
    reached = det.get('reached_target')
    if reached is None and det.get('optimizer') == 'autoslim':
      reached = True
    shared = (f' (shared with {a["shared_from"]})' if a.get('shared_from')
              else '')
    if a['final'] == 'direct':
      meas, anal, wall = '1x', '1x', '1x'
    else:
      meas = (f'{dopt.train_macs / opt.train_macs:.1f}x' if dopt else
              'n/a (direct not finished)')
      ov = a['overhead']
      anal = (f'{ov["cost_ratio"]:.1f}x ({ov["macs_ratio"]:.2f} x '
              f'{ov["data_ratio"]:.2f})')
      wall = (f'{dopt.wall_time_s / opt.wall_time_s:.1f}x' if dopt else 'n/a')
    vtop1 = det.get('val_top1', det.get('full_val_top1'))
    lines.append(
        f'| {a["label"]} | {problem} | {opt.epochs:.2f} ({steps}) | '
        f'{reached} | {_fmt(vtop1, ".3f")} | '
        f'{opt.train_macs:.3g}{shared} | {meas} | {anal} | '
        f'{opt.wall_time_s:.0f} s | {wall} |')

  # ---- Rank correlation.
  lines += ['', '## Invariance: rank correlation with the direct widths', '',
            'Spearman\'s ρ (`report.rank_correlation`, average ranks for '
            'ties) between the direct and the transferred per-group width '
            'multipliers relative to the uniform network, over the '
            f'{len(u["uniform"])} channel groups. "Before FLOPs matching": '
            'direct = the optimizer\'s output / uniform, transferred = the '
            'dimension- and depth-matched multipliers (`transferred.json`); '
            '"final": the trained widths / uniform (after FLOPs matching and '
            'rounding to multiples of 4, so with many ties).', '',
            '| transferred arm | ρ before FLOPs matching | ρ final widths |',
            '|---|---:|---:|']
  for name, a in arms.items():
    if a['final'] != 'transferred':
      continue
    direct = arms.get(DIRECT_OF[a['optimizer']])
    r1 = r2 = None
    if direct and direct.get('multipliers') is not None and a.get(
        'multipliers') is not None:
      r1 = report.rank_correlation(a['multipliers'], direct['multipliers'])
    if direct and direct.get('final_multipliers') is not None and a.get(
        'final_multipliers') is not None:
      r2 = report.rank_correlation(a['final_multipliers'],
                                   direct['final_multipliers'])
    lines.append(f'| {a["label"]} | {_fmt(r1, ".3f")} | {_fmt(r2, ".3f")} |')

  # ---- Widths.
  names = list(u['uniform'].names)
  cols = [a for a in arms.values() if a['widths'] is not None]
  lines += ['', '## Widths (final, FLOPs-matched)', '',
            f'![per-group widths]({png_name})', '',
            '| group | ' + ' | '.join(a['arm'] for a in cols) + ' |',
            '|---|' + '---:|' * len(cols)]
  for i, n in enumerate(names):
    lines.append(f'| {n} | ' + ' | '.join(
        str(a['widths'].array()[i]) for a in cols) + ' |')
  lines += ['', 'Optimizer outputs before FLOPs matching (on the projected '
            'net for transferred arms; 50% of the starting MACs):', '']
  for a in arms.values():
    if a.get('optimized') is not None:
      o = a['optimized']
      lines.append(f'* {a["arm"]} (depth {list(o.depth)}): '
                   + ', '.join(f'{k} {v}' for k, v in o.as_dict().items()))

  # ---- Wall time.
  lines += ['', '## Budget and measured wall time', '']
  total = 0.0
  rows = []
  for a in arms.values():
    runs = a['grid_runs']
    t = sum(dt for _, dt in runs)
    total += t
    tr = a['train_wall_s']
    rows.append(f'| {a["arm"]} | {status(a)} | {t:.0f} s | '
                + (f'{np.mean(tr):.0f} s, {np.mean(a["train_img_per_s"]):.0f}'
                   f' img/s, {a["train_steps"][0]} steps' if tr else 'n/a')
                + ' |')
  lines += [f'Whole grid (sum of the arms\' subprocess wall times, '
            f'including process start-up, JPEG decoding, compilation, '
            f'optimization, training and test evaluation): **{total / 60:.1f}'
            ' min**.', '',
            '| arm | status | arm wall time | final training per seed '
            '(training loop only) |', '|---|---|---:|---:|'] + rows
  if os.path.exists(READING):
    lines += ['', open(READING).read().rstrip()]
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--budget', default='cpu',
                      choices=sorted(grid_configs.BUDGETS))
  parser.add_argument('--workdir_root', default=DEFAULT_ROOT)
  parser.add_argument('--out_dir', default=os.path.join(_ROOT, 'results'))
  args = parser.parse_args()
  arms = {a: collect_arm(args.budget, args.workdir_root, a)
          for a in grid_configs.ORDER}
  png = 'cifar10_accuracy_widths.png'
  command = ('python experiments/accuracy_results.py '
             f'--budget={args.budget} --workdir_root={args.workdir_root}')
  plot_widths(arms, os.path.join(args.out_dir, png))
  files.write_text(os.path.join(args.out_dir, 'cifar10_accuracy.md'),
                markdown(args.budget, args.workdir_root, arms, png, command))
  print(f'wrote {os.path.join(args.out_dir, "cifar10_accuracy.md")}')


if __name__ == '__main__':
  main()
