"""The pipeline end to end on digits: files, resume, overhead, bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from wt_jax import data
from wt_jax import errors
from wt_jax.nets import cost
from wt_jax.nets import widths as W
from wt_jax.optimizers import registry
from wt_jax.optimizers import result as result_lib
from wt_jax.run import pipeline
from wt_jax.run import stages
from wt_jax.transfer import problem

from _tiny import REPO
from _tiny import tiny_config


@pytest.mark.slow
def test_full_chain_writes_every_output(tmp_path):
  # One seed: adding and aggregating seeds is tests/test_runs.py's.
  c = tiny_config(stages=tuple(pipeline.STAGES), seeds=(0,))
  res = pipeline.run(c, str(tmp_path))
  for name in ('uniform', 'projected_uniform', 'projected_optimized',
               'transferred', 'direct_optimized', 'direct'):
    assert (tmp_path / 'widths' / f'{name}.json').exists(), name
  for f in ('results.json', 'results.md', 'widths.png', 'overhead.png',
            'config.json'):
    assert (tmp_path / f).stat().st_size > 0, f
  uniform = W.load(str(tmp_path / 'widths' / 'uniform.json'))
  transferred = W.load(str(tmp_path / 'widths' / 'transferred.json'))
  assert transferred.same_structure(uniform)
  # Equal MACs: transferred and direct never above the uniform network.
  full = cost.macs(uniform, 8, 10)
  for arm in ('transferred', 'direct'):
    assert res['arms'][arm]['macs'] <= full
    assert len(res['arms'][arm]['top1']) == 1
  # Overhead: analytic ratio = MACs ratio x training-examples ratio.
  proj = W.load(str(tmp_path / 'widths' / 'projected_uniform.json'))
  ov = res['overhead']
  assert ov['macs_ratio'] == pytest.approx(full / cost.macs(proj, 6, 10))
  n = data.dataset_info(c.data).num_examples['train']
  n_proj = data.dataset_info(pipeline.prepare(c, str(tmp_path)).projected
                             .data).num_examples['train']
  assert n_proj == pytest.approx(n / 2, abs=10)  # class-balanced rounding
  assert ov['data_ratio'] == pytest.approx(n / n_proj)
  assert ov['cost_ratio'] == pytest.approx(ov['macs_ratio'] *
                                           ov['data_ratio'])
  summary = result_lib.load(str(tmp_path / 'optimize'))
  assert ov['projected_cost'] == summary.train_macs == (
      cost.train_macs_per_example(proj, 6, 10) * 10 * 64)
  assert 'measured_cost_ratio' in ov and 'rank_correlation' in res
  md = (tmp_path / 'results.md').read_text()
  assert '| transferred |' in md and '| direct |' in md
  assert 'reduction, analytic' in md


def test_rerun_skips_finished_stages(tmp_path, monkeypatch):
  c = tiny_config(stages=('optimize', 'transfer'))
  pipeline.run(c, str(tmp_path))
  before = (tmp_path / 'widths' / 'transferred.json').read_text()

  def boom(*a, **k):
    raise AssertionError('a finished stage ran again')
  monkeypatch.setattr(registry, 'optimize', boom)
  monkeypatch.setattr(stages, 'transfer', boom)
  pipeline.run(c, str(tmp_path))
  assert (tmp_path / 'widths' / 'transferred.json').read_text() == before


def _cli(workdir, *flags, wait=True):
  cmd = [sys.executable, '-m', 'wt_jax.main', '--config=configs/quickstart.py',
         f'--workdir={workdir}', *flags]
  if not wait:
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        timeout=600, check=False)


_FAST = ('--config.arch=resnet_tiny', '--config.data.resolution=0',
         '--config.train.num_steps=30', '--config.train.checkpoint_every=2',
         '--config.train.log_every=2', '--config.morphnet.num_steps=6',
         '--config.morphnet.export_every=3', '--config.seeds=0,',
         '--config.projection.resolution=6', '--config.transfer.divisor=2',
         '--config.transfer.min_width=2')


# Extended: test_train.py::test_resume_after_kill_is_bit_identical kills a
# training run the same way, test_runs.py the other stages' resumes.
@pytest.mark.extended
def test_killed_pipeline_resumes_to_the_same_result(tmp_path):
  straight = _cli(tmp_path / 'a', *_FAST)
  assert straight.returncode == 0, straight.stderr[-2000:]
  proc = _cli(tmp_path / 'b', *_FAST, wait=False)
  ckpt = tmp_path / 'b' / 'train' / 'uniform' / 'seed_0' / 'checkpoints'
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if ckpt.exists() and any(p.name.isdigit() and int(p.name) >= 4
                             for p in ckpt.iterdir()):
      break
    time.sleep(0.2)
  assert proc.poll() is None, 'finished before it could be killed'
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / 'b' / 'results.json').exists()
  resumed = _cli(tmp_path / 'b', *_FAST)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  a = json.loads((tmp_path / 'a' / 'results.json').read_text())
  b = json.loads((tmp_path / 'b' / 'results.json').read_text())
  for arm in ('uniform', 'transferred'):
    assert a['arms'][arm]['widths'] == b['arms'][arm]['widths']
    assert a['arms'][arm]['top1'] == b['arms'][arm]['top1']


# Extended: test_autoslim.py runs AutoSlim's optimize and resume on digits,
# test_a_registered_optimizer_runs_the_chain the chain around an optimizer.
@pytest.mark.extended
def test_quickstart_autoslim_runs_the_whole_chain(tmp_path):
  out = _cli(tmp_path, *_FAST, '--config.optimizer=autoslim',
             '--config.autoslim.num_steps=6', '--config.autoslim.eval_batches=1',
             '--config.autoslim.calib_batches=1')
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads((tmp_path / 'results.json').read_text())
  assert res['optimizer'] == 'autoslim'
  assert set(res['arms']) == {'uniform', 'transferred'}
  assert res['overhead']['projected_details']['optimizer'] == 'autoslim'
  assert '| transferred |' in out.stdout


@pytest.mark.parametrize('flag, message', [
    ('--config.stages=optimize,train_everything',
     "config.stages=.*allowed: a non-empty subset of optimize"),
    ('--config.projection.depth_mult=1.5',
     r'projection.depth_mult=1.5 is invalid; allowed: a number in \(0, 1\]'),
    ('--config.transfer.stacking=stack_first',
     "config.transfer.stacking='stack_first' is invalid; allowed: "
     'stack_last_block, stack_average_block'),
    ('--config.data.source=folder:/no/such/dir', '/no/such/dir'),
    ('--config.transfer.target_macs=1000',
     'target_macs=1,000 is infeasible'),
])
def test_bad_config_exits_2_naming_the_field(tmp_path, flag, message):
  out = _cli(tmp_path, flag)
  assert out.returncode == 2, out.stderr[-2000:]
  assert __import__('re').search(message, out.stderr), out.stderr[-2000:]
  assert not (tmp_path / 'widths' / 'transferred.json').exists()


def test_widths_file_of_another_architecture_is_refused(tmp_path):
  path = tmp_path / 'w.json'
  W.save(str(path), W.uniform('resnet56_cifar'))
  c = tiny_config(widths_file=str(path))
  with pytest.raises(errors.ConfigError,
                     match="config.widths_file: .*'resnet_tiny' is expected"):
    pipeline.run(c, str(tmp_path / 'wd'))


def test_widths_file_skips_the_optimizer(tmp_path):
  c = tiny_config(stages=('optimize', 'transfer'))
  proj = pipeline.prepare(c, str(tmp_path / 'wd')).projected
  opt = proj.widths.replace([max(2, v // 2) for v in proj.widths.values])
  W.save(str(tmp_path / 'opt.json'), opt)
  c.widths_file = str(tmp_path / 'opt.json')
  pipeline.run(c, str(tmp_path / 'wd'))
  assert W.load(str(tmp_path / 'wd' / 'widths' /
                    'projected_optimized.json')) == opt
  assert result_lib.load(str(tmp_path / 'wd' / 'optimize')).train_macs == 0


def test_nan_in_training_exits_3(tmp_path):
  out = _cli(tmp_path, *_FAST, '--config.stages=train_uniform',
             '--config.train.base_lr=1e12')
  assert out.returncode == 3, out.stderr[-2000:]
  assert 'training loss is' in out.stderr and 'at step' in out.stderr


@pytest.mark.parametrize('field, value', [
    ('train.batch_size', 0), ('train.schedule', 'step'),
    ('morphnet.threshold', 0.0), ('optimizer', 'slimmable'), ('seeds', ()),
    ('arch', 'resnet9000'), ('dtype', 'float16'), ('width_mult', -1.0)])
def test_config_fields_are_checked(field, value):
  c = tiny_config()
  node = c
  *path, leaf = field.split('.')
  for p in path:
    node = node[p]
  with c.unlocked() if hasattr(c, 'unlocked') else open(os.devnull):
    node[leaf] = value
  with pytest.raises(errors.ConfigError, match=f'config.{field}='):
    pipeline.validate(c)


@pytest.mark.slow
def test_morphnet_cuts_macs_while_loss_falls(tmp_path):
  """A short high-strength MorphNet run on digits: >= 30% fewer MACs."""
  c = tiny_config()
  c.arch = 'resnet20_cifar'
  c.morphnet.num_steps = 60
  c.morphnet.strength_knob = 8.0
  c.morphnet.shrink_to = 0.0  # run all steps
  c.morphnet.export_every = 20
  info = data.dataset_info(c.data)
  prob = problem.Problem(W.uniform('resnet20_cifar', 0.5), c.data,
                         info.resolution, info.num_classes,
                         info.num_examples['train'])
  result = registry.optimize(c, prob, str(tmp_path))
  d = result.details
  assert d['learned_macs'] <= 0.7 * d['start_macs']
  rows = [json.loads(l) for l in open(tmp_path / 'train' / 'metrics.jsonl')
          if '"train"' in l]
  ce = [r['train_loss'] - r['extra_loss'] for r in rows]
  assert ce[-1] < ce[0]  # the task loss still falls
  hist = json.loads((tmp_path / 'history.json').read_text())
  assert [h['step'] for h in hist] == [20, 40, 60]
  assert hist[-1]['macs'] == d['learned_macs']
  assert min(result.widths.values) >= c.morphnet.min_width
  np.testing.assert_array_less(0, result.widths.array())


def test_a_registered_optimizer_runs_the_chain(tmp_path):
  """A user's optimizer, registered by the module config.optimizer_module
  names, optimizes, transfers and is reported like the built-in ones."""
  c = tiny_config(stages=('optimize', 'transfer', 'train_transferred',
                          'report'), optimizer='random',
                  optimizer_module='_random_optimizer')
  res = pipeline.run(c, str(tmp_path))
  found = result_lib.load(str(tmp_path / 'optimize'))
  assert found.details['optimizer'] == 'random'
  proj = W.load(str(tmp_path / 'widths' / 'projected_uniform.json'))
  assert cost.macs(found.widths, 6, 10) <= 0.5 * cost.macs(proj, 6, 10)
  assert res['overhead']['projected_cost'] == found.train_macs
  assert len(res['arms']['transferred']['top1']) == 1


def test_an_unknown_optimizer_module_is_refused():
  c = tiny_config(optimizer='random', optimizer_module='no_such_module_x')
  with pytest.raises(errors.ConfigError,
                     match="config.optimizer_module='no_such_module_x' is "
                     'invalid; allowed: an importable module'):
    pipeline.validate(c)
