r"""Optimization overhead of each projection: analytic, and measured on digits.

  python bench/overhead.py            # full (~3 min on 2 cores)
  python bench/overhead.py --quick    # 4 epochs, one pass

(a) The paper's setting: ResNet-18 on ImageNet at 224x224, 1000 classes,
    1,281,167 training images. For each projection (width 0.5; depth 0.5;
    10% of the samples; half resolution; all four compounded)
    `projection.overhead` gives the exact optimization-cost ratio (training
    MACs per example ratio x training examples ratio, MACs from
    `wt_jax.nets.cost`), next to the nominal factor the paper quotes (4, 2, 10,
    4; 4 x 2 x 10 x 4 = 320), with a per-part breakdown (stem conv, residual
    body, FC) that explains the gap.
(b) A small measured case: MorphNet structure learning
    (`wt_jax.optimizers.morphnet.optimize`) on scikit-learn's digits (source 'digits',
    upsampled to 16x16 as in configs/quickstart.py) with ResNet-20, a fixed
    number of epochs (no early stop), directly and under each projection.
    The measured ratio is direct / projected wall-clock time of the training
    loop in steady state (per-step time from the log intervals after the
    first, which holds the compile, times the run's steps); the raw loop
    time including the compile is shown too. The runs are sequential, so the
    machine's noise is not cancelled; two passes (the second in reverse
    order) are averaged, and the effective cores measured before each run
    are listed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import ml_collections  # pylint: disable=g-bad-import-order

import harness as H
import rendering as R
# wt_jax after harness, which puts this repository first on sys.path.
# pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
from wt_jax import defaults
from wt_jax.nets import architectures
from wt_jax.nets import cost
from wt_jax.nets import widths as W
from wt_jax.optimizers import morphnet
from wt_jax.transfer import problem
from wt_jax.transfer import projection
# pylint: enable=g-import-not-at-top,wrong-import-position,g-bad-import-order

IMAGENET_TRAIN = 1_281_167
PROJECTIONS = (
    # (name, projection fields, nominal factor)
    ('width 0.5', dict(width_mult=0.5), 4),
    ('depth 0.5', dict(depth_mult=0.5), 2),
    ('10% samples', dict(sample_fraction=0.1), 10),
    ('half resolution', dict(resolution=-2), 4),  # -2: original // 2
    ('compound (all four)', dict(width_mult=0.5, depth_mult=0.5,
                                 sample_fraction=0.1, resolution=-2), 320),
)


log = H.logger('overhead')


def _projection_cfg(fields, resolution):
  c = ml_collections.ConfigDict(dict(width_mult=1.0, depth_mult=1.0,
                                     sample_fraction=1.0, resolution=0))
  for k, v in fields.items():
    c[k] = resolution // 2 if (k == 'resolution' and v == -2) else v
  return c


def _parts(widths, resolution, num_classes):
  """MACs of the stem conv, the residual body and the FC layer."""
  out = {'stem': 0, 'body': 0, 'fc': 0}
  for layer in cost.count(widths, resolution, num_classes).layers:
    key = ('stem' if layer.name.startswith('stem') else
           'fc' if layer.kind == 'fc' else 'body')
    out[key] += layer.macs
  return out


def analytic_paper():
  """(a): ResNet-18 / ImageNet 224 / 1000 classes / 1.28M images."""
  orig = W.uniform('resnet18', 1.0)
  res, classes = 224, 1000
  data = defaults.get_config().data
  data.source = 'imagenet2012'
  base = _parts(orig, res, classes)
  rows, brows, raw = [], [], {}
  for name, fields, nominal in PROJECTIONS:
    knobs = _projection_cfg(fields, res)
    original = problem.Problem(orig, data, res, classes, IMAGENET_TRAIN)
    n_proj = int(round(IMAGENET_TRAIN * data.sample_fraction *
                       knobs.get('sample_fraction', 1.0)))
    proj = projection.project(original, knobs, num_train=n_proj)
    o = projection.overhead(original, proj, projected_cost=1.0)
    parts = _parts(proj.widths, proj.resolution, classes)
    sizes = [l.out_size for l in architectures.layers(
        proj.widths.spec, proj.widths.values, proj.resolution, classes)
             if l.kind == 'conv']
    rows.append([name, nominal, f'{o["cost_ratio"]:.1f}',
                 f'{o["macs_ratio"]:.3f}', f'{o["data_ratio"]:.3f}',
                 f'{o["projected_macs"] / 1e6:,.1f}',
                 f'{o["cost_ratio"] / nominal:.3f}'])
    brows.append([name, f'{base["stem"] / parts["stem"]:.2f}',
                  f'{base["body"] / parts["body"]:.2f}',
                  f'{base["fc"] / parts["fc"]:.2f}',
                  f'{o["macs_ratio"]:.3f}',
                  f'{proj.resolution}px, depth {list(proj.widths.depth)}, '
                  f'last stage {sizes[-1]}x{sizes[-1]}'])
    raw[name] = dict(o, nominal=nominal, parts=parts)
  orig_macs = sum(base.values())
  text = R.section(
      '### (a) Analytic: the paper\'s setting',
      R.facts({
          'network': 'ResNet-18, ImageNet 224x224, 1000 classes, 1,281,167 '
                     'training images',
          'original GMACs / image': f'{orig_macs / 1e9:.3f}',
          'of which stem conv, residual body, FC (MMACs)':
              f'{base["stem"] / 1e6:.1f}, {base["body"] / 1e6:.1f}, '
              f'{base["fc"] / 1e6:.3f}',
          'cost ratio': '`projection.overhead(...)["cost_ratio"]` = MACs '
                        'ratio x training examples ratio',
          'MACs': '`wt_jax.nets.cost` (taps in zero padding counted, as in the '
                  'published counts)'}, ('setting', 'value')),
      R.table(['projection', 'nominal (paper)', 'exact cost ratio',
               'MACs ratio', 'examples ratio', 'projected MMACs / image',
               'exact / nominal'], rows),
      '#### MACs ratio of each part, original / projected',
      R.table(['projection', 'stem conv', 'residual body', 'FC',
               'whole net', 'projected net'], brows))
  return text, raw


def _steady(workdir, batch):
  """(seconds per step after the first log interval, steps in it)."""
  path = os.path.join(workdir, 'train', 'metrics.jsonl')
  prev, secs, steps = 0, 0.0, 0
  first = True
  with open(path) as f:
    for line in f:
      rec = json.loads(line)
      if rec.get('kind') != 'train':
        continue
      n = rec['step'] - prev
      if not first and rec.get('img_per_s'):
        secs += n * batch / rec['img_per_s']
        steps += n
      first = False
      prev = rec['step']
  return (secs / steps if steps else float('nan')), steps


def _digits_config(args):
  """MorphNet on digits: a fixed number of epochs, no early stop."""
  config = defaults.get_config()
  config.arch = 'resnet20_cifar'
  config.data.source = 'digits'
  config.data.resolution = args.resolution
  config.data.augment = 'none'
  config.train.batch_size = args.batch
  config.train.checkpoint_every = 1_000_000
  config.morphnet.epochs = float(args.epochs)
  config.morphnet.num_steps = 0
  config.morphnet.shrink_to = 0.0  # a fixed budget: no early stop
  config.morphnet.export_every = 1_000_000  # export once, at the end
  config.morphnet.lr = 0.4
  config.morphnet.strength_knob = 2.0
  return config


def measured_digits(args):
  """(b): MorphNet on digits, direct vs each projection."""
  config = _digits_config(args)
  config.width_mult = 1.0
  original = problem.from_config(config)
  n_train = original.num_train
  specs = {'direct': None}
  specs.update({n: f for n, f, _ in PROJECTIONS})

  def run_one(name):
    fields = specs[name]
    run = original if fields is None else projection.project(
        original, _projection_cfg(fields, original.resolution))
    widths, r, n = run.widths, run.resolution, run.num_train
    per_epoch = n // args.batch
    total = int(round(args.epochs * per_epoch))
    config.train.log_every = max(1, total // 10)
    workdir = tempfile.mkdtemp(prefix='wt_bench_overhead_')
    cores = H.cpu_probe()
    t0 = time.perf_counter()
    try:
      result = morphnet.optimize(config, run, workdir)
      per_step, steady_steps = _steady(workdir, args.batch)
    finally:
      shutil.rmtree(workdir, ignore_errors=True)
    cost_ratio = projection.overhead(original, run, result.train_macs
                                     )['cost_ratio']
    log(f'{name}: {total} steps, {per_step * 1000:.1f} ms/step steady, loop '
         f'{result.wall_time_s:.1f} s (cores {cores:.2f})')
    return dict(train_macs=result.train_macs, loop_s=result.wall_time_s,
                per_step=per_step, steps=total, steady_steps=steady_steps,
                steady_s=per_step * total, examples=n, resolution=r,
                depth=list(widths.depth), cores=cores,
                total_s=time.perf_counter() - t0, cost_ratio=cost_ratio)

  # Pass 1: direct, then each projection; pass 2 the reverse order, so a
  # slow phase of the machine does not hit one side only.
  order = list(specs)
  # An untimed warm-up run (the cheapest) first: the process's first
  # tf.data and jit work (tracing, thread pools) must not land on 'direct'.
  run_one('compound (all four)')
  passes = []
  for k in range(args.passes):
    runs = {}
    for name in (order if k % 2 == 0 else order[::-1]):
      runs[name] = run_one(name)
    passes.append(runs)
  out = {name: dict(passes[0][name],
                    per_pass=[p[name] for p in passes]) for name in order}
  return _measured_text(args, out, passes, original.resolution, n_train,
                        original.num_classes), out


def _measured_text(args, out, passes, res, n_train, classes):
  d = out['direct']
  rows = []
  for name, _, nominal in PROJECTIONS:
    o = out[name]
    steady_each = [p['direct']['steady_s'] / p[name]['steady_s']
                   for p in passes]
    loop_each = [p['direct']['loop_s'] / p[name]['loop_s'] for p in passes]
    steady = sum(steady_each) / len(steady_each)
    o['measured'] = steady
    o['measured_loop'] = sum(loop_each) / len(loop_each)
    rows.append([name, nominal, f'{o["cost_ratio"]:.2f}',
                 f'{d["train_macs"] / o["train_macs"]:.2f}', f'{steady:.2f}',
                 ' / '.join(f'{x:.2f}' for x in steady_each),
                 f'{o["measured_loop"]:.2f}',
                 f'{steady / o["cost_ratio"]:.2f}', o['steps'],
                 ' / '.join(f'{p[name]["per_step"] * 1000:.1f}'
                            for p in passes),
                 ' / '.join(f'{p[name]["cores"]:.2f}' for p in passes)])

  def per_pass(key, scale, fmt):
    return ' / '.join(f'{p[key] * scale:{fmt}}' for p in d['per_pass'])

  return R.section(
      '### (b) Measured: MorphNet on digits, direct vs each projection',
      R.facts({
          'network': 'ResNet-20 (width 1.0)',
          'data': f'digits at {res}x{res}, {n_train} training images after '
                  f'the 10% val split, {classes} classes',
          'run': f'batch {args.batch}, {args.epochs} epochs of MorphNet '
                 'structure learning (`morphnet.optimize`, constant lr 0.4, '
                 'strength knob 2, no early stop)',
          'passes': f'{args.passes} over all runs, the second in reverse '
                    'order; ratios averaged over the passes',
          'direct: steps': d['steps'],
          'direct: ms per step in steady state': per_pass('per_step', 1000,
                                                          '.1f'),
          'direct: loop s, compile included': per_pass('loop_s', 1, '.1f'),
          'direct: effective cores': per_pass('cores', 1, '.2f'),
          'analytic cost ratio': '`projection.overhead` (MACs x examples, '
                                 'the same epochs)',
          'train-MACs ratio of the runs': 'of the `train_macs` the runs '
                                          'report (full batches only)'},
               ('setting', 'value')),
      R.table(['projection', 'nominal', 'analytic cost ratio',
               'train-MACs ratio of the runs', 'measured ratio (steady)',
               'per pass', 'measured ratio (loop incl. compile)',
               'measured / analytic', 'steps', 'ms / step', 'effective cores'],
              rows))


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--epochs', type=int, default=10)
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--resolution', type=int, default=16)
  p.add_argument('--passes', type=int, default=2,
                 help='passes over all runs (the second in reverse order)')
  p.add_argument('--no_measured', action='store_true')
  args = H.parse(p, dict(epochs=4, passes=1), '4 epochs, 1 pass')
  H.emit_parts(args, '## Projection overhead (`bench/overhead.py`)', {
      'analytic': lambda _: analytic_paper(),
      'measured': None if args.no_measured else measured_digits})


if __name__ == '__main__':
  main()
