"""The invariance grid's resume rule (experiments/invariance_grid.py): a run
is skipped only if it ended with the config it would run now."""
import json
import os
import sys

from _tiny import REPO

sys.path.insert(0, REPO)
from experiments import invariance_grid as grid  # noqa: E402  pylint: disable=g-import-not-at-top


def _stored(spec):
  """The config a run of `spec` stores in its workdir (config.json)."""
  config = grid.grid.get_config(spec)
  grid.pipeline.normalize(config)
  return json.loads(json.dumps(config.to_dict()))


def _record(root, spec, rc=0, digest=None, config=None):
  with open(os.path.join(root, 'runs.jsonl'), 'a') as f:
    rec = dict(spec=spec, rc=rc, wall_s=1.0)
    if digest is not None:
      rec['config_digest'] = digest
    f.write(json.dumps(rec) + '\n')
  if config is not None:
    wd = grid.workdir(str(root), spec)
    os.makedirs(wd, exist_ok=True)
    with open(os.path.join(wd, 'config.json'), 'w') as f:
      json.dump(config, f)


def test_only_runs_that_ended_with_this_config_are_skipped(tmp_path):
  a, b, c = 'morphnet:direct:0', 'autoslim:direct:0', 'morphnet:width:1'
  _record(tmp_path, a, digest=grid.current_digest(a))
  stale = grid.config_digest(dict(_stored(b), seed=7))
  _record(tmp_path, b, digest=stale)
  _record(tmp_path, c, rc=1, digest=grid.current_digest(c))
  done = grid.finished(str(tmp_path))
  assert done[a]['config_digest'] == grid.current_digest(a)
  assert done[b]['config_digest'] != grid.current_digest(b)  # changed
  assert c not in done  # failed: runs again
  # A later success of the same spec replaces the earlier record.
  _record(tmp_path, b, digest=grid.current_digest(b))
  assert (grid.finished(str(tmp_path))[b]['config_digest'] ==
          grid.current_digest(b))
  assert set(grid.ended_with_this_config(str(tmp_path))) == {a, b}


def test_digest_ignores_unused_optimizers_and_result_free_fields():
  spec = 'morphnet:compound:2'
  base = _stored(spec)
  other = json.loads(json.dumps(base))
  other['autoslim']['epochs'] = 99.0  # not this run's optimizer
  other['train']['log_every'] = 7  # result-free
  assert grid.config_digest(other) == grid.config_digest(base)
  other['morphnet']['epochs'] = 99.0  # this run's optimizer
  assert grid.config_digest(other) != grid.config_digest(base)
  other = json.loads(json.dumps(base))
  other['data']['sample_fraction'] = 0.5
  assert grid.config_digest(other) != grid.config_digest(base)


def test_a_record_without_a_digest_is_read_from_its_workdir(tmp_path):
  spec = 'morphnet:samples:0'
  legacy = _stored(spec)
  del legacy['arch_module'], legacy['train']['batch_seeds']  # added later
  _record(tmp_path, spec, config=legacy)
  assert (grid.finished(str(tmp_path))[spec]['config_digest'] ==
          grid.current_digest(spec))
  changed = dict(legacy, width_mult=0.25)
  _record(tmp_path, spec, config=changed)
  assert (grid.finished(str(tmp_path))[spec]['config_digest'] !=
          grid.current_digest(spec))


def test_accuracy_grid_plan_counts_the_gpu_preset_in_closed_form(
    tmp_path, monkeypatch):
  from experiments import accuracy_configs  # pylint: disable=g-import-not-at-top
  from experiments import accuracy_grid  # pylint: disable=g-import-not-at-top
  # The plan reads no data: the CIFAR-10 folder may be absent.
  monkeypatch.setattr(accuracy_configs, 'DATA_DIR', str(tmp_path / 'absent'))
  rows = {r['arm']: r for r in accuracy_grid.plan('gpu')}
  # 45,000 training images (10% val out of 50,000), batch 128, 3 seeds; the
  # train loop runs full batches only: epochs x floor(n / 128) steps.
  steps = lambda epochs, n: epochs * (n // 128) * 128
  final = 3 * (steps(30, 45_000) + 10_000 / 3)
  assert all(r['final'] == final for r in rows.values())
  assert rows['uniform']['optimize'] == 0
  assert rows['mn_depth_avg']['optimize'] == 0  # shares mn_depth_last's
  # One optimization per seed (its spread is part of the arm's): MorphNet's
  # fixed 5-epoch budget, on its own training split.
  assert rows['mn_direct']['optimizations'] == 3
  assert rows['uniform']['optimizations'] == 0
  assert rows['mn_direct']['optimize'] == 3 * steps(5, 45_000)
  assert rows['mn_samples']['optimize'] == 3 * steps(5, 4_500)
  # AutoSlim: 10 epochs of 4 passes, 39 rounds x 12 units (ResNet-20: the
  # stem stream of each stage and 9 block interiors) x (20 x 128 calibration
  # + 5,000 val images) forward passes.
  assert rows['as_direct']['optimize'] == 3 * (
      steps(10, 45_000) * 4 + 39 * 12 * (20 * 128 + 5_000) / 3)


def test_accuracy_grid_runs_each_optimized_arm_once_per_seed():
  from experiments import accuracy_configs as ac  # pylint: disable=g-import-not-at-top
  assert ac.runs('gpu', 'uniform') == (None,)
  assert ac.runs('gpu', 'mn_compound') == (0, 1, 2)
  assert ac.runs('cpu', 'mn_compound') == (None,)
  c = ac.get_config('gpu:mn_compound:2')
  assert (c.seed, tuple(c.seeds)) == (2, (2,))
  assert tuple(ac.get_config('gpu:uniform').seeds) == (0, 1, 2)
