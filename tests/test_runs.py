"""Trustworthy runs: fingerprints, superseded outputs, the lock, checks before
any work, exit codes and what a user sees."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from wt_jax import errors
from wt_jax import train
from wt_jax.nets import cost
from wt_jax.nets import widths as W
from wt_jax.optimizers import result as result_lib
from wt_jax.run import pipeline
from wt_jax.run import stages
from wt_jax.util import interrupts
from wt_jax.util.workdir import Lock

from _tiny import REPO
from _tiny import tiny_config


def _superseded(root):
  path = os.path.join(root, 'superseded')
  return sorted(os.listdir(path)) if os.path.isdir(path) else []


def _count_training(monkeypatch):
  """Counts train_and_evaluate calls made by the training stages."""
  calls = []
  real = train.train_and_evaluate

  def counting(config, widths, workdir, **kw):
    calls.append((workdir, kw.get('seed')))
    return real(config, widths, workdir, **kw)

  monkeypatch.setattr(stages.train, 'train_and_evaluate', counting)
  return calls


def test_changed_optimizer_recomputes_and_supersedes(tmp_path, capsys):
  root = str(tmp_path)
  c = tiny_config(stages=('optimize', 'transfer', 'report'))
  pipeline.run(c, root)
  before = result_lib.load(os.path.join(root, 'optimize'))
  assert before.details['optimizer'] == 'morphnet'
  capsys.readouterr()
  # The README's second example on the first one's workdir.
  c2 = tiny_config(stages=('optimize', 'transfer', 'report'),
                   optimizer='autoslim')
  res = pipeline.run(c2, root)
  after = result_lib.load(os.path.join(root, 'optimize'))
  assert after.details['optimizer'] == 'autoslim'
  assert res['optimizer'] == 'autoslim'
  assert res['overhead']['projected_details']['optimizer'] == 'autoslim'
  out = capsys.readouterr().out
  assert ("optimize: recomputing (autoslim: added; morphnet: dropped; "
          "optimizer: 'morphnet' -> 'autoslim')") in out, out
  moved = _superseded(root)
  assert any(m.startswith('optimize-') for m in moved), moved
  old = os.path.join(root, 'superseded', [m for m in moved if
                                          m.startswith('optimize-')][0])
  assert result_lib.load(os.path.join(old, 'optimize')).details[
      'optimizer'] == 'morphnet'
  # The transfer consumed the new widths: its upstream digest changed.
  assert any(m.startswith('transfer-') for m in moved), moved


def test_changed_arch_recomputes_instead_of_crashing(tmp_path):
  root = str(tmp_path)
  pipeline.run(tiny_config(stages=('optimize', 'transfer')), root)
  c = tiny_config(stages=('optimize', 'transfer'),
                  arch='resnet_bottleneck_tiny')
  pipeline.run(c, root)
  transferred = W.load(os.path.join(root, 'widths', 'transferred.json'))
  assert transferred.arch == 'resnet_bottleneck_tiny'
  assert W.load(os.path.join(root, 'widths', 'uniform.json')) == W.uniform(
      'resnet_bottleneck_tiny', 1.0, divisor=2)


@pytest.mark.slow
def test_train_steps_reuse_retrain_and_add_seeds(tmp_path, monkeypatch,
                                                 capsys):
  root = str(tmp_path)
  calls = _count_training(monkeypatch)
  c = tiny_config(stages=('train_uniform',), seeds=(0,))
  pipeline.run(c, root)
  final0 = os.path.join(root, 'train', 'uniform', 'seed_0', 'final.json')
  first = open(final0).read()
  assert len(calls) == 1
  # A result-free field (logging cadence): reused, nothing trains.
  pipeline.run(tiny_config(stages=('train_uniform',), seeds=(0,),
                           **{'train.log_every': 3}), root)
  assert len(calls) == 1 and open(final0).read() == first
  # Adding a seed trains only that seed.
  pipeline.run(tiny_config(stages=('train_uniform',), seeds=(0, 1)), root)
  assert [s for _, s in calls[1:]] == [1]
  assert open(final0).read() == first
  capsys.readouterr()
  # Another learning rate: both seeds retrain, the old ones are kept.
  pipeline.run(tiny_config(stages=('train_uniform',), seeds=(0, 1),
                           **{'train.base_lr': 0.2}), root)
  assert [s for _, s in calls[2:]] == [0, 1]
  out = capsys.readouterr().out
  assert 'train.base_lr: 0.4 -> 0.2' in out, out
  moved = _superseded(root)
  assert sum(m.startswith('train_uniform-seed_') for m in moved) == 2, moved
  # The retrained seed's result is another run's: its training loss (a
  # function of the learning rate, 12 steps) differs from the first one's.
  new, old = json.loads(open(final0).read()), json.loads(first)
  assert new['train_loss'] != old['train_loss']
  assert (new['eval_loss'], new['top1']) != (old['eval_loss'], old['top1'])


@pytest.mark.slow
def test_interrupted_step_resumes_only_with_the_same_inputs(tmp_path,
                                                            monkeypatch):
  root = str(tmp_path)
  calls = _count_training(monkeypatch)
  c = tiny_config(stages=('train_uniform',))
  pipeline.run(c, root)
  seed_dir = os.path.join(root, 'train', 'uniform', 'seed_0')
  final = json.loads(open(os.path.join(seed_dir, 'final.json')).read())
  # As if killed after its last checkpoint (no final.json, and no manifest,
  # which is written after it): the same inputs resume from it (no new
  # training records) and give the same result.
  os.remove(os.path.join(seed_dir, 'final.json'))
  os.remove(os.path.join(seed_dir, 'outputs.json'))
  pipeline.run(c, root)
  resumed = json.loads(open(os.path.join(seed_dir, 'final.json')).read())
  assert resumed['top1'] == final['top1'] and len(calls) == 2
  assert _superseded(root) == []
  # Killed again, then re-run with another learning rate: the checkpoint
  # is not resumed; it moves to superseded/ and training starts at step 0.
  os.remove(os.path.join(seed_dir, 'final.json'))
  os.remove(os.path.join(seed_dir, 'outputs.json'))
  pipeline.run(tiny_config(stages=('train_uniform',),
                           **{'train.base_lr': 0.1}), root)
  moved = _superseded(root)
  assert len(moved) == 1 and moved[0].startswith('train_uniform-seed_0-')
  old_ckpts = os.path.join(root, 'superseded', moved[0], 'train', 'uniform',
                           'seed_0', 'checkpoints')
  assert os.path.isdir(old_ckpts)
  steps = [json.loads(l)['step'] for l in open(os.path.join(
      seed_dir, 'metrics.jsonl')) if '"train"' in l]
  assert steps[0] == c.train.log_every  # trained from the start


@pytest.mark.slow
def test_corrupt_stage_file_is_recomputed_with_a_warning(tmp_path, capsys):
  root = str(tmp_path)
  c = tiny_config(stages=('optimize', 'transfer', 'train_uniform'))
  pipeline.run(c, root)
  final = os.path.join(root, 'train', 'uniform', 'seed_0', 'final.json')
  summary = os.path.join(root, 'optimize', 'summary.json')
  with open(final, 'w') as f:
    f.write('{"top1": 0.5, "arm": "unif\x01')
  with open(summary, 'w') as f:
    f.write('{"train_macs": ')
  capsys.readouterr()
  pipeline.run(c, root)
  out = capsys.readouterr().out
  assert 'corrupt train/uniform/seed_0/final.json' in out, out
  assert 'corrupt optimize/summary.json' in out, out
  assert json.loads(open(final).read())['arm'] == 'uniform'
  assert result_lib.load(os.path.join(root, 'optimize')).train_macs > 0


def test_report_shows_only_what_this_config_computed(tmp_path):
  root = str(tmp_path)
  pipeline.run(tiny_config(stages=('train_uniform', 'report')), root)
  res = pipeline.run(tiny_config(stages=('report',),
                                 **{'train.base_lr': 0.2}), root)
  assert res['arms']['uniform']['top1'] == []  # not computed with lr 0.2
  res = pipeline.run(tiny_config(stages=('report',)), root)
  assert len(res['arms']['uniform']['top1']) == 1


# ----------------------------------------------------------------------------
# One run per workdir.
# ----------------------------------------------------------------------------


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
  root = str(tmp_path)
  holder = subprocess.Popen([sys.executable, '-c', 'import time; '
                             'time.sleep(60)'])
  try:
    with open(os.path.join(root, '.lock'), 'w') as f:
      json.dump({'pid': holder.pid, 'host': os.uname().nodename,
                 'since': 'now'}, f)
    with pytest.raises(errors.WorkdirLockedError,
                       match=f'in use by pid {holder.pid}') as e:
      pipeline.run(tiny_config(stages=('report',)), root)
    assert errors.exit_code(e.value) == errors.EXIT_ENVIRONMENT
  finally:
    holder.kill()
    holder.wait()
  # The holder is gone now: its lock is taken over, and released after.
  pipeline.run(tiny_config(stages=('report',)), root)
  assert not os.path.exists(os.path.join(root, '.lock'))
  with Lock(root):
    assert json.load(open(os.path.join(root, '.lock')))['pid'] == os.getpid()


# ----------------------------------------------------------------------------
# Checks before any work; every message names its field or file.
# ----------------------------------------------------------------------------


def _refused(tmp_path, match, **over):
  root = tmp_path / 'wd'
  with pytest.raises(errors.BadInputError, match=match):
    pipeline.run(tiny_config(**over), str(root))
  assert not root.exists() or not any(root.iterdir()), list(root.iterdir())


def test_duplicate_seeds_are_refused(tmp_path):
  _refused(tmp_path, r'config.seeds=\(0, 0\) is invalid; allowed: a '
           'non-empty tuple of distinct integers', seeds=(0, 0))


def test_no_val_split_with_a_width_optimizer_is_refused(tmp_path):
  _refused(tmp_path, r'config.data.val_fraction=0.0 is invalid; allowed: .*'
           'width optimizer', **{'data.val_fraction': 0.0})


def test_absurd_target_macs_names_the_bound(tmp_path):
  full = cost.macs(W.uniform('resnet_tiny', 1.0, divisor=2), 8, 10)
  _refused(tmp_path, f'target_macs=10,000,000,000,000 is invalid: .*allowed: '
           f'.* to {64 * full:,}', **{'transfer.target_macs': int(1e13)})


def test_bad_image_in_the_test_split_stops_before_any_work(tmp_path):
  root = tmp_path / 'images'
  rng = np.random.default_rng(0)
  for split, n in (('train', 8), ('test', 2)):
    for label in ('a', 'b'):
      os.makedirs(root / split / label)
      for i in range(n):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(
            root / split / label / f'{i}.png')
  bad = root / 'test' / 'b' / 'broken.png'
  bad.write_bytes(b'not a png')
  _refused(tmp_path, f'cannot decode image file {bad}',
           **{'data.source': f'folder:{root}'})


def test_widths_file_with_a_short_depth_list_names_the_file(tmp_path):
  path = tmp_path / 'w.json'
  path.write_text(json.dumps({'arch': 'resnet20_cifar', 'depth': [3, 3],
                              'widths': {}}))
  with pytest.raises(errors.WidthError,
                     match=f"widths file '{path}': depth=.*expected 3"):
    W.load(str(path))


@pytest.mark.parametrize('args, message', [
    (['--arch=resnet18', '--num_classes=0'],
     'num_classes=0 is invalid; allowed: an integer >= 1'),
    (['--arch=resnet18', '--num_classes=-3'],
     'num_classes=-3 is invalid; allowed: an integer >= 1'),
    (['--arch=resnet18', '--depth=a,b,c'],
     "--depth='a,b,c' is invalid; allowed: comma-separated integers"),
])
def test_cost_cli_bad_input_exits_2(args, message):
  out = subprocess.run([sys.executable, '-m', 'wt_jax.cost', *args],
                       cwd=REPO, capture_output=True, text=True, timeout=120,
                       check=False, env=dict(os.environ, PYTHONPATH=REPO))
  assert out.returncode == 2, out.stderr[-2000:]
  assert message in out.stderr, out.stderr[-2000:]


def test_stages_accept_a_comma_list():
  c = tiny_config()
  c.stages = ('optimize,transfer',)
  pipeline.normalize(c)
  assert c.stages == ('optimize', 'transfer')
  pipeline.validate(c)


# ----------------------------------------------------------------------------
# The command line: exit codes and what it prints.
# ----------------------------------------------------------------------------

_FAST = ('--config.arch=resnet_tiny', '--config.data.resolution=0',
         '--config.train.num_steps=30', '--config.train.checkpoint_every=5',
         '--config.train.log_every=5', '--config.morphnet.num_steps=6',
         '--config.morphnet.export_every=3', '--config.seeds=0,',
         '--config.projection.resolution=6', '--config.transfer.divisor=2',
         '--config.transfer.min_width=2')


def _cli(workdir, *flag_list, cwd=REPO, config='configs/quickstart.py',
         prelude=''):
  code = (prelude + 'import sys; from absl import app; '
          'from wt_jax import main; sys.argv = ["wt_jax.main"] + sys.argv[1:]; '
          'app.run(lambda a: sys.exit(main.main(a)), '
          'flags_parser=main.parse_flags)')
  cmd = [sys.executable, '-c', code, f'--config={config}',
         f'--workdir={workdir}', *flag_list]
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                        timeout=600, check=False, env=env)


@pytest.mark.slow
def test_quickstart_output_is_short_and_quiet(tmp_path):
  out = _cli(tmp_path / 'wd', *_FAST)
  assert out.returncode == 0, out.stderr[-2000:]
  lines = (out.stdout + out.stderr).splitlines()
  assert len(lines) <= 60, '\n'.join(lines)
  assert not [l for l in lines if 'orbax' in l.lower() or
              'CheckpointManager' in l], '\n'.join(lines)
  for stage in ('optimize', 'transfer', 'train_transferred', 'train_uniform',
                'report'):
    assert f'Stage {stage}' in out.stdout
  assert '| transferred |' in out.stdout


@pytest.mark.parametrize('flag, code, message', [
    ('--config.trian.batch_size=3', 2,
     r"--config.trian.batch_size: config has no field 'trian'; did you mean "
     r'config.train or config.transfer\? config has: arch, '),
    ('--config.train.nonexistent=3', 2,
     r"--config.train.nonexistent: config.train has no field 'nonexistent'; "
     r'.*config.train has: base_lr, batch_seeds'),
    ('--config.seeds=0,0', 2, r'config.seeds=\(0, 0\) is invalid'),
    ('--config.data.split_seed=-1', 2,
     r'config.data.split_seed=-1 is invalid; allowed: an integer >= 0'),
])
def test_bad_input_exits_2_naming_the_field(tmp_path, flag, code, message):
  out = _cli(tmp_path / 'wd', flag)
  assert out.returncode == code, out.stderr[-2000:]
  assert re.search(message, out.stderr), out.stderr[-2000:]
  assert len(out.stderr.splitlines()) == 1, out.stderr[-2000:]  # one line
  assert not (tmp_path / 'wd').exists()


def test_a_config_file_that_does_not_compile_is_one_line(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_config(:\n  pass\n')
  out = _cli(tmp_path / 'wd', config=str(bad))
  assert out.returncode == 2, out.stderr[-2000:]
  assert re.fullmatch(
      re.escape(f'error: bad command line: --config={bad}: {bad} is not a '
                'valid Python config file: a syntax error at line 1 (') +
      r'.*\n', out.stderr), out.stderr[-2000:]


def test_a_field_given_twice_keeps_its_last_value(tmp_path):
  out = _cli(tmp_path / 'wd', '--config.seeds=0,1', '--config.seeds=2,',
             '--config.stages=report')
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'seeds: [2].' in out.stdout, out.stdout


def test_workdir_that_is_a_file_exits_2(tmp_path):
  path = tmp_path / 'afile'
  path.write_text('x')
  out = _cli(path, *_FAST)
  assert out.returncode == 2, out.stderr[-2000:]
  assert f"--workdir='{path}' is invalid; allowed: a directory" in out.stderr
  assert 'Traceback' not in out.stderr


def test_config_files_load_from_any_directory(tmp_path):
  user = tmp_path / 'my_configs'
  user.mkdir()
  (user / 'base.py').write_text(
      'from wt_jax import defaults\n\ndef get_config():\n'
      '  c = defaults.get_config()\n  c.arch = "resnet_tiny"\n  return c\n')
  (user / 'mine.py').write_text(
      'from wt_jax import defaults\n\ndef get_config():\n'
      '  c = defaults.sibling(__file__, "base").get_config()\n'
      '  c.stages = ("report",)\n  return c\n')
  out = _cli(tmp_path / 'wd', cwd=str(tmp_path), config=str(user / 'mine.py'))
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'resnet_tiny' in out.stdout
  out = _cli(tmp_path / 'wd2', '--config.stages=report', cwd=str(tmp_path),
             config=os.path.join(REPO, 'configs', 'quickstart.py'))
  assert out.returncode == 0, out.stderr[-2000:]


def test_disk_full_exits_4(tmp_path):
  prelude = ('import errno, os; from wt_jax.util import files; '
             'real = files.write_bytes\n'
             'def full(path, data):\n'
             '  if path.endswith("final.json"):\n'
             '    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)\n'
             '  return real(path, data)\n'
             'files.write_bytes = full\n')
  out = _cli(tmp_path / 'wd', *_FAST, '--config.stages=train_uniform',
             prelude=prelude)
  assert out.returncode == 4, out.stderr[-2000:]
  assert 'No space left on device' in out.stderr
  assert 'final.json' in out.stderr and 'Traceback' not in out.stderr


@pytest.mark.slow
def test_nan_in_the_optimize_stage_names_its_learning_rate(tmp_path):
  out = _cli(tmp_path / 'wd', *_FAST, '--config.stages=optimize',
             '--config.morphnet.lr=1e12')
  assert out.returncode == 3, out.stderr[-2000:]
  assert 'stage optimize' in out.stderr
  assert 'config.morphnet.lr' in out.stderr
  assert 'config.train.base_lr' not in out.stderr


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_inside_a_save_waits_for_its_end(sig):
  old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    interrupts.install()
    done = []
    with pytest.raises(KeyboardInterrupt):
      with interrupts.deferred():
        with interrupts.deferred():  # nested: held until the outer one ends
          os.kill(os.getpid(), sig)
          time.sleep(0.05)  # the handler runs between bytecodes, here
          done.append('inner')
        done.append('outer')
    assert done == ['inner', 'outer']
    with pytest.raises(KeyboardInterrupt):  # outside a block: at once
      os.kill(os.getpid(), sig)
      time.sleep(1)
      done.append('after')
    assert done == ['inner', 'outer']
    with interrupts.deferred():  # nothing pending from before
      pass
  finally:
    for s, h in old.items():
      signal.signal(s, h)


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line_and_resumes(tmp_path):
  workdir = tmp_path / 'wd'
  code = ('import sys; from absl import app; from wt_jax import main; '
          'sys.argv = ["wt_jax.main"] + sys.argv[1:]; '
          'app.run(lambda a: sys.exit(main.main(a)), '
          'flags_parser=main.parse_flags)')
  flags = ['--config=configs/quickstart.py', f'--workdir={workdir}', *_FAST,
           '--config.stages=train_uniform', '--config.train.num_steps=400',
           '--config.train.checkpoint_every=10']
  proc = subprocess.Popen([sys.executable, '-c', code, *flags], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=dict(os.environ, PYTHONPATH=REPO))
  ckpt = workdir / 'train' / 'uniform' / 'seed_0' / 'checkpoints'
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if ckpt.exists() and any(p.name.isdigit() for p in ckpt.iterdir()):
      break
    time.sleep(0.2)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 130, err[-2000:]
  lines = [l for l in err.splitlines() if l.startswith('interrupted')]
  assert len(lines) == 1 and re.match(
      r'interrupted in stage train_uniform/seed_0 at step \d+; re-run the '
      'same command to resume', lines[0]), err[-2000:]
  assert 'Traceback' not in err
