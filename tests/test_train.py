"""The training loop: sharding, multi-process, resume, guards, recipe."""
import errno
import gc
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from tensorboard.backend.event_processing import event_accumulator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _two_process_worker as worker  # pylint: disable=g-import-not-at-top,g-bad-import-order
from wt_jax import defaults
from wt_jax import errors
from wt_jax import train
from wt_jax.nets import cost
from wt_jax.nets import models
from wt_jax.nets import widths as W
from wt_jax.run import pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, 'tests', '_two_process_worker.py')
TIMING_KEYS = ('wall_time_s', 'img_per_s', 'time_parts')


def _train_config(**overrides):
  """The full `config.train` block of wt_jax/defaults.py, with overrides."""
  tc = defaults.get_config().train
  for name, value in overrides.items():
    tc[name] = value
  return tc


def _records(workdir):
  with open(os.path.join(workdir, train.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


def _untimed(d):
  return {k: v for k, v in d.items() if k not in TIMING_KEYS}


def _capture_params(into):
  def callback(step, state):
    into['step'] = step
    into['params'] = jax.device_get(state.params)
    into['batch_stats'] = jax.device_get(state.batch_stats)
  return callback


# --------------------------------------------------------------------------
# Recipe: schedule and weight decay.
# --------------------------------------------------------------------------


@pytest.mark.parametrize('schedule', ['cosine', 'linear', 'constant'])
def test_learning_rate_schedule_closed_form(schedule):
  tc = _train_config(batch_size=512, base_lr=0.1, warmup_epochs=2.0,
                     schedule=schedule)
  peak = 0.1 * 512 / 256
  lr = train.learning_rate_schedule(tc, total_steps=30, steps_per_epoch=5)
  # Warm-up: 10 steps, linear from 0.
  for count in (0, 1, 5, 9):
    np.testing.assert_allclose(lr(count), peak * count / 10, rtol=1e-6)
  after = {
      'cosine': lambda p: peak * 0.5 * (1 + math.cos(math.pi * p)),
      'linear': lambda p: peak * (1 - p),
      'constant': lambda p: peak,
  }[schedule]
  for count in (10, 15, 20, 25, 29, 30):
    np.testing.assert_allclose(lr(count), after((count - 10) / 20), rtol=1e-5,
                               atol=1e-7)
  # No warm-up: the first update uses the peak.
  lr0 = train.learning_rate_schedule(
      _train_config(batch_size=256, base_lr=0.3, warmup_epochs=0.0,
                    schedule=schedule), total_steps=8, steps_per_epoch=4)
  np.testing.assert_allclose(lr0(0), 0.3, rtol=1e-6)


def test_unknown_schedule_is_rejected():
  with pytest.raises(ValueError, match='schedule'):
    train.learning_rate_schedule(_train_config(schedule='step'), 10, 5)


def test_weight_decay_mask_excludes_bn_and_bias():
  model = models.build_model(worker.widths(), 10)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 8, 8, 3)))['params']
  off = train.weight_decay_mask(params, decay_bn_and_bias=False)
  on = train.weight_decay_mask(params, decay_bn_and_bias=True)
  for path, decayed in jax.tree_util.tree_leaves_with_path(off):
    name = path[-1].key
    assert decayed == (name == 'kernel'), jax.tree_util.keystr(path)
  assert off['fc']['kernel'] and not off['fc']['bias']
  assert not off['stem']['bn']['scale'] and not off['stem']['bn']['bias']
  assert all(jax.tree.leaves(on))
  # The optimizer applies it: with zero gradients, momentum 0 and lr 1, the
  # update is -wd * p on kernels and 0 on BN scale/bias and the FC bias.
  params = jax.tree.map(lambda x: np.linspace(1.0, 2.0, x.size, dtype=np.float32
                                              ).reshape(x.shape), params)
  for switch in (False, True):
    tc = _train_config(weight_decay=0.01, momentum=0.0,
                       decay_bn_and_bias=switch)
    tx = train.make_sgd(tc, lambda count: 1.0)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    mask = train.weight_decay_mask(params, switch)
    jax.tree.map(
        lambda u, p, m: np.testing.assert_allclose(u, -0.01 * p if m else 0 * p,
                                                   rtol=1e-6),
        updates, params, mask)


# --------------------------------------------------------------------------
# Sharding: 8 simulated devices == 1 device, BN statistics global.
# --------------------------------------------------------------------------


def _l2_extra_loss(params):
  return 1e-3 * sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(params))


def _sandwich_loss(model, params, batch_stats, batch, rng, train_config):
  """AutoSlim-style: full network + a random narrower one distilled from it."""
  variables = {'params': params, 'batch_stats': batch_stats}
  logits, new_vars = model.apply(variables, batch['image'], train=True,
                                 mutable=['batch_stats'])
  full = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch['label']).mean()
  keep = jax.random.randint(rng, (), 2, 9)
  masks = {'stage2': (jnp.arange(8) < keep).astype(jnp.float32)}
  narrow, _ = model.apply(variables, batch['image'], train=True, masks=masks,
                          mutable=['batch_stats'])
  distill = optax.softmax_cross_entropy(
      narrow, jax.nn.softmax(jax.lax.stop_gradient(logits))).mean()
  del train_config
  return full + distill, (new_vars['batch_stats'], {'distill': distill})


def _run_steps(mesh, batches, *, loss_fn=None, extra_loss=None):
  step = train.TrainStep(
      models.build_model(worker.widths(), 10),
      _train_config(batch_size=16, base_lr=0.8, warmup_epochs=0.0), mesh,
      seed=0, image_shape=(8, 8, 3), total_steps=10, steps_per_epoch=5,
      loss_fn=loss_fn, extra_loss=extra_loss)
  state = step.init()
  for batch in batches:
    state = step(state, train.global_batch(mesh, batch))
    assert state.params['fc']['kernel'].sharding.is_fully_replicated
  return train.to_host(state)


def _random_batches(n, size=16):
  rng = np.random.default_rng(0)
  return [{'image': rng.normal(1.0, 2.0, (size, 8, 8, 3)).astype(np.float32),
           'label': rng.integers(0, 10, size).astype(np.int32),
           'mask': np.ones(size, np.float32)} for _ in range(n)]


@pytest.mark.parametrize('variant', ['default', 'extra_loss+loss_fn'])
def test_sharded_step_equals_single_device_step(variant):
  assert jax.device_count() == 8
  kwargs = {'default': {},
            'extra_loss+loss_fn': {'extra_loss': _l2_extra_loss,
                                   'loss_fn': _sandwich_loss}}[variant]
  batches = _random_batches(2)
  one = _run_steps(train.make_mesh(jax.devices()[:1]), batches, **kwargs)
  eight = _run_steps(train.make_mesh(), batches, **kwargs)
  chex.assert_trees_all_close(eight, one, rtol=2e-5, atol=2e-6)
  assert int(eight.step) == 2 and int(eight.nonfinite_step) == -1
  assert float(eight.sums['count']) == 2.0
  if kwargs:
    assert set(eight.sums) == {'loss', 'extra_loss', 'distill', 'count'}
    assert float(eight.sums['extra_loss']) > 0
    assert float(eight.sums['distill']) > 0


def test_bn_statistics_are_global():
  """The 8-device step's BN statistics are those of the whole batch.

  After one step the running statistics depend only on the initial
  parameters and the batch, so the sharded step must give what the
  1-device step gives on the same 16 examples, and not what a step on
  device 0's shard alone (its 2 examples) gives.
  """
  mesh = train.make_mesh()
  batch = _random_batches(1)[0]
  batch['image'][:2] += 3.0  # device 0's examples differ from the rest
  shard = train.global_batch(mesh, batch)['image'].addressable_shards[0]
  assert shard.device == jax.devices()[0]
  device0 = {'image': np.asarray(shard.data), 'label': batch['label'][:2],
             'mask': batch['mask'][:2]}
  np.testing.assert_array_equal(device0['image'], batch['image'][:2])

  eight = _run_steps(mesh, [batch]).batch_stats
  one = _run_steps(train.make_mesh(jax.devices()[:1]), [batch]).batch_stats
  local = _run_steps(train.make_mesh(jax.devices()[:1]), [device0]).batch_stats
  chex.assert_trees_all_close(eight, one, rtol=2e-5, atol=2e-6)
  # Every statistic (mean and var of every BN layer) is far from the local
  # one: by more than 100x the tolerance the equal ones meet.
  gaps = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(),
                                      eight, local))
  assert len(gaps) == len(jax.tree.leaves(one)) and min(gaps) > 100 * 2e-6


# --------------------------------------------------------------------------
# End to end on digits: accuracy, outputs, callback, files.
# --------------------------------------------------------------------------


def test_trains_digits_and_writes_outputs(tmp_path):
  config = worker.config(batch_size=64, num_steps=60, log_every=15,
                         eval_every=30, checkpoint_every=0, base_lr=0.4,
                         label_smoothing=0.0)
  config.data.augment = 'none'
  calls = []

  def callback(step, state):
    calls.append(step)
    assert int(train.to_host(state.step)) == step
    return {'fc_norm': float(jnp.linalg.norm(state.params['fc']['kernel']))}

  w = worker.widths()
  out = train.train_and_evaluate(config, w, str(tmp_path), callback=callback,
                                 callback_every=20)
  assert out['top1'] > 0.5, out  # chance: 0.1
  assert out['top5'] >= out['top1']
  assert out['num_eval_examples'] == 360  # every test example exactly once
  assert out['steps'] == 60 and out['examples_seen'] == 60 * 64
  assert out['train_macs'] == cost.train_macs_per_example(w, 8, 10) * 3840
  assert out['macs'] == cost.macs(w, 8, 10)
  assert out['params'] == cost.params(w, 8, 10)
  for key in ('eval_loss', 'train_loss', 'wall_time_s', 'img_per_s'):
    assert np.isfinite(out[key]) and out[key] > 0, key
  assert calls == [20, 40, 60]
  records = _records(str(tmp_path))
  assert [r['step'] for r in records if r['kind'] == 'train'] == [15, 30, 45,
                                                                  60]
  assert [r['step'] for r in records if r['kind'] == 'eval'] == [30]
  assert [r['step'] for r in records if r['kind'] == 'callback'] == [20, 40, 60]
  assert records[-1]['kind'] == 'final' and records[-1]['top1'] == out['top1']
  events = event_accumulator.EventAccumulator(str(tmp_path))
  events.Reload()
  tags = set(events.Tags()['tensors']) | set(events.Tags()['scalars'])
  assert {'train_loss', 'lr', 'test_top1', 'fc_norm', 'top1'} <= tags, tags
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['60',
                                                          'structure.json']


def test_callback_can_stop_training(tmp_path):
  config = worker.config(num_steps=8, log_every=4, checkpoint_every=0)
  calls = []

  def stop_at_3(step, state):
    del state
    calls.append(step)
    return {'stop_training': step == 3}

  out = train.train_and_evaluate(config, worker.widths(), str(tmp_path),
                                 callback=stop_at_3, callback_every=1)
  assert calls == [1, 2, 3]
  assert out['steps'] == 3 and out['stopped_early']
  assert out['examples_seen'] == 3 * 32
  assert [r['step'] for r in _records(str(tmp_path))
          if r['kind'] == 'train'] == [3]  # the partial interval is logged
  assert ocp.CheckpointManager(tmp_path / 'checkpoints').latest_step() == 3
  # A re-run does not train past the stop.
  again = train.train_and_evaluate(config, worker.widths(), str(tmp_path))
  assert _untimed(again) == _untimed(out)


def test_bfloat16_compute(tmp_path):
  config = worker.config(num_steps=2, log_every=1)
  config.dtype = 'bfloat16'
  captured = {}
  out = train.train_and_evaluate(config, worker.widths(), None,
                                 callback=_capture_params(captured))
  assert np.isfinite(out['train_loss']) and out['steps'] == 2
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(captured['params']))


# --------------------------------------------------------------------------
# Non-finite loss guard.
# --------------------------------------------------------------------------


def test_nan_extra_loss_stops_with_the_step(tmp_path):
  config = worker.config(num_steps=10, log_every=5, checkpoint_every=2)
  with pytest.raises(train.NonFiniteLossError, match=r'at step 1 of 10') as e:
    train.train_and_evaluate(config, worker.widths(), str(tmp_path),
                             extra_loss=lambda params: jnp.float32(jnp.nan))
  assert isinstance(e.value, FloatingPointError)
  assert e.value.step == 1 and math.isnan(e.value.value)
  # Detected before the first checkpoint (step 2): none was written.
  assert ocp.CheckpointManager(tmp_path / 'checkpoints').latest_step() is None


def test_huge_learning_rate_stops_with_the_step():
  config = worker.config(num_steps=6, log_every=3, base_lr=1e12,
                         weight_decay=0.0)
  with pytest.raises(FloatingPointError, match=r'training loss is .* at step'
                     ) as e:
    train.train_and_evaluate(config, worker.widths(), None)
  assert 2 <= e.value.step <= 6
  assert not np.isfinite(e.value.value)
  assert f'at step {e.value.step} of 6' in str(e.value)


# --------------------------------------------------------------------------
# Checkpoints: bit-identical resume after a SIGKILL; structure check.
# --------------------------------------------------------------------------


@pytest.fixture(scope='module')
def straight_run(tmp_path_factory):
  """8 steps without interruption (checkpoints at 4 and 8)."""
  workdir = str(tmp_path_factory.mktemp('straight'))
  captured = {}
  out = train.train_and_evaluate(worker.config(), worker.widths(), workdir,
                                 callback=_capture_params(captured))
  return workdir, out, captured


@pytest.mark.slow
def test_resume_after_kill_is_bit_identical(tmp_path, straight_run):
  ref_dir, ref_out, ref_state = straight_run
  workdir = str(tmp_path)
  # Really kill a training process at step 5, after checkpoint 4 committed.
  proc = subprocess.run([sys.executable, WORKER, 'kill', workdir, '5'],
                        cwd=REPO, capture_output=True, text=True, timeout=240,
                        env=dict(os.environ, PYTHONPATH=REPO))
  assert proc.returncode == -9, proc.stderr[-3000:]
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '4'))
  assert not os.path.isdir(os.path.join(workdir, 'checkpoints', '8'))
  steps = [r['step'] for r in _records(workdir)]
  assert max(steps) == 4  # the killed run logged steps 2 and 4

  captured = {}
  out = train.train_and_evaluate(worker.config(), worker.widths(), workdir,
                                 callback=_capture_params(captured))
  chex.assert_trees_all_equal(captured['params'], ref_state['params'])
  chex.assert_trees_all_equal(captured['batch_stats'],
                              ref_state['batch_stats'])
  assert _untimed(out) == _untimed(ref_out)
  assert ([_untimed(r) for r in _records(workdir)] ==
          [_untimed(r) for r in _records(ref_dir)])


def test_checkpoint_of_other_widths_is_refused_before_restore(
    tmp_path, straight_run, monkeypatch):
  ref_dir = straight_run[0]
  workdir = str(tmp_path / 'copy')
  shutil.copytree(ref_dir, workdir)

  def no_restore(*args, **kwargs):
    raise AssertionError('restore() called before the structure check')

  monkeypatch.setattr(ocp.CheckpointManager, 'restore', no_restore)
  other = worker.widths().replace([4, 4, 4, 4, 8, 16, 8])
  with pytest.raises(train.CheckpointMismatchError,
                     match=r'different width vector of resnet_tiny: '
                     r'stage2/block1/conv1: 8 \(checkpoint\) vs 16'):
    train.train_and_evaluate(worker.config(), other, workdir)
  with pytest.raises(train.CheckpointMismatchError, match='arch'):
    train.train_and_evaluate(
        worker.config(),
        W.uniform('resnet_bottleneck_tiny', 0.25), workdir)
  # Without structure.json the shapes in orbax's metadata are compared.
  os.remove(os.path.join(workdir, 'checkpoints', train.STRUCTURE_FILE))
  with pytest.raises(train.CheckpointMismatchError,
                     match=r'stage2/block1/conv1/kernel: \[3, 3, 4, 8\] '
                     r'\(checkpoint\) vs \[3, 3, 4, 16\]'):
    train.train_and_evaluate(worker.config(), other, workdir)


def test_torn_latest_checkpoint_falls_back_to_the_newest_intact_one(
    tmp_path, straight_run, caplog):
  """A garbled checkpoint 8 (a save torn by a crash): the run resumes from
  checkpoint 4 with one warning naming both, and trains steps 5-8 to the
  same result as the run that never stopped."""
  ref_dir, ref_out, ref_state = straight_run
  workdir = str(tmp_path / 'copy')
  shutil.copytree(ref_dir, workdir)
  for root, _, names in os.walk(os.path.join(workdir, 'checkpoints', '8')):
    for name in names:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'\x00garbage')
  captured = {}
  with caplog.at_level('WARNING'):
    out = train.train_and_evaluate(worker.config(), worker.widths(), workdir,
                                   callback=_capture_params(captured))
  torn = [r.getMessage() for r in caplog.records
          if 'is corrupt' in r.getMessage()]
  assert len(torn) == 1 and 'step 8' in torn[0] and (
      'falling back to step 4' in torn[0]), torn
  chex.assert_trees_all_equal(captured['params'], ref_state['params'])
  assert _untimed(out) == _untimed(ref_out)


def test_a_torn_checkpoint_prints_nothing_but_its_warning(tmp_path,
                                                         straight_run,
                                                         monkeypatch):
  """Checkpoint 8's array data cut short: orbax's failed reads leave
  callbacks on an event loop it has closed ("RuntimeError: Event loop is
  closed", 98 tracebacks in a CLI run). None of them reaches the unraisable
  hook; the run falls back to checkpoint 4 and ends as the straight run."""
  ref_dir, ref_out, _ = straight_run
  workdir = str(tmp_path / 'copy')
  shutil.copytree(ref_dir, workdir)
  cut = 0
  for root, _, names in os.walk(os.path.join(workdir, 'checkpoints', '8',
                                             'state')):
    if os.path.basename(root) == 'd':
      for name in names:
        os.truncate(os.path.join(root, name), 10)
        cut += 1
  assert cut
  seen = []
  monkeypatch.setattr(sys, 'unraisablehook',
                      lambda u: seen.append(repr(u.exc_value)))
  out = train.train_and_evaluate(worker.config(), worker.widths(), workdir)
  for _ in range(3):  # late callbacks of orbax's reader threads
    gc.collect()
    time.sleep(0.2)
  assert seen == []
  assert _untimed(out) == _untimed(ref_out)


def test_disk_full_in_a_checkpoint_save_is_exit_4_and_keeps_the_last_one(
    tmp_path, straight_run, monkeypatch):
  """The save of step 8 fails as TensorStore reports a full disk (a
  ValueError carrying the OS error code, raised when orbax's commit is
  waited for): EnvironmentFailure naming the directory and the step;
  checkpoint 4 stays, and a re-run resumes from it to the straight run's
  result."""
  ref_dir, ref_out, _ = straight_run
  del ref_dir
  workdir = str(tmp_path)
  failing = {}
  real_save = ocp.CheckpointManager.save
  real_wait = ocp.CheckpointManager.wait_until_finished

  def save(self, step, *args, **kwargs):
    if step == 8:
      failing['step'] = step
      return True
    return real_save(self, step, *args, **kwargs)

  def wait(self):
    real_wait(self)
    if failing:
      raise ValueError(
          'RESOURCE_EXHAUSTED: Error writing "params.fc.kernel/0.0" in OCDBT '
          f'database at local file "{workdir}/checkpoints/8.orbax-'
          'checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/": '
          'Failed to write 20608 bytes to file 5: No space left on device '
          "[os_error_code='28']")

  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  monkeypatch.setattr(ocp.CheckpointManager, 'wait_until_finished', wait)
  with pytest.raises(errors.EnvironmentFailure) as e:
    train.train_and_evaluate(worker.config(), worker.widths(), workdir)
  assert e.value.errno == errno.ENOSPC
  assert e.value.filename == os.path.join(workdir, 'checkpoints')
  assert e.value.strerror == ('No space left on device (saving the '
                              'checkpoint of step 8)')
  assert errors.exit_code(e.value) == errors.EXIT_ENVIRONMENT
  assert sorted(p for p in os.listdir(os.path.join(workdir, 'checkpoints'))
                if p.isdigit()) == ['4']
  monkeypatch.undo()
  out = train.train_and_evaluate(worker.config(), worker.widths(), workdir)
  assert _untimed(out) == _untimed(ref_out)


# --------------------------------------------------------------------------
# Two processes (jax.distributed, gloo CPU collectives) == one process.
# --------------------------------------------------------------------------


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start_two_processes(mode, out_dir, workdir):
  """The two jax.distributed processes of `_two_process_worker.py MODE`,
  4 CPU devices each, on a free port of 127.0.0.1."""
  out_dir.mkdir()
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS=(
      '--xla_force_host_platform_device_count=4 '
      '--xla_cpu_experimental_ynn_fusion_type='))
  return [subprocess.Popen(
      [sys.executable, WORKER, mode, str(port), str(i), str(out_dir),
       str(workdir)], cwd=REPO, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(2)]


def _feed_both_blocks(monkeypatch):
  """This (one-process, 8-device) run's global batches = process 0's block
  of the data followed by process 1's, as the two processes feed them."""
  original = train.batches.local_train_batches

  def both_blocks(data_config, *, batch_size, seed, start_step, process_index,
                  process_count, **kwargs):
    assert (process_index, process_count) == (0, 1)
    parts = [original(data_config, batch_size=batch_size, seed=seed,
                      start_step=start_step, process_index=i, process_count=2,
                      **kwargs)
             for i in range(2)]
    for a, b in zip(*parts):
      yield {k: np.concatenate([a[k], b[k]]) for k in a}

  monkeypatch.setattr(train.batches, 'local_train_batches', both_blocks)


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path, monkeypatch):
  out_dir, workdir = tmp_path / 'out', tmp_path / 'work'
  procs = _start_two_processes('two_process', out_dir, workdir)
  # Meanwhile, the reference: one process with 8 devices, fed the same global
  # batches (process 0's block of the data, then process 1's).
  _feed_both_blocks(monkeypatch)
  captured = {}
  ref = train.train_and_evaluate(worker.config(), worker.widths(), None,
                                 callback=_capture_params(captured))

  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=240)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  for i, p in enumerate(procs):
    assert p.returncode == 0, f'process {i}:\n{logs[i][-4000:]}'
  ref_params = worker.flat(captured['params'])
  for i in range(2):
    with np.load(out_dir / f'params{i}.npz') as f:
      params = dict(f)
    chex.assert_trees_all_close(params, ref_params, rtol=1e-4, atol=1e-5)
    with open(out_dir / f'result{i}.json') as f:
      result = json.load(f)
    assert result['steps'] == ref['steps'] == 8
    assert result['examples_seen'] == ref['examples_seen'] == 8 * 32
    assert result['num_eval_examples'] == 360
    np.testing.assert_allclose(result['train_loss'], ref['train_loss'],
                               rtol=1e-4)
    np.testing.assert_allclose(result['eval_loss'], ref['eval_loss'],
                               rtol=1e-4)
    assert abs(result['top1'] - ref['top1']) <= 1 / 360
  # Only process 0 wrote metrics; orbax wrote the checkpoints of both.
  assert [r['kind'] for r in _records(str(workdir))].count('final') == 1
  assert sorted(os.listdir(workdir / 'checkpoints')) == [
      '4', '8', 'structure.json']


@pytest.mark.slow
def test_two_processes_run_the_chain_like_one_process(tmp_path, monkeypatch):
  """The whole pipeline (MorphNet, transfer, two trained arms) in two
  jax.distributed processes, each reading its own block: the same widths
  and metrics as one process fed the same global batches."""
  out_dir, workdir = tmp_path / 'out', tmp_path / 'work'
  procs = _start_two_processes('chain', out_dir, workdir)
  _feed_both_blocks(monkeypatch)
  ref = pipeline.run(worker.chain_config(), str(tmp_path / 'ref'))
  logs = [p.communicate(timeout=400)[0] for p in procs]
  for i, p in enumerate(procs):
    assert p.returncode == 0, f'process {i}:\n{logs[i][-4000:]}'
  with open(out_dir / 'chain.json') as f:
    two = json.load(f)
  assert two['arms'].keys() == ref['arms'].keys() == {'uniform',
                                                       'transferred'}
  for arm in ref['arms']:
    assert two['arms'][arm]['widths'] == ref['arms'][arm]['widths'], arm
    np.testing.assert_allclose(two['arms'][arm]['top1'],
                               ref['arms'][arm]['top1'], atol=1 / 360 + 1e-9)
  assert two['overhead']['projected_cost'] == ref['overhead'][
      'projected_cost']


def test_maybe_initialize_distributed_is_off_by_default(monkeypatch):
  monkeypatch.delenv('WT_JAX_DISTRIBUTED', raising=False)
  assert not train.maybe_initialize_distributed(
      ml_collections.ConfigDict({'distributed': False}))
  assert not jax.distributed.is_initialized()
