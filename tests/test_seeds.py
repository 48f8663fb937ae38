"""Seeds in one program (`train.batch_seeds`): each seed equals its own run,
checkpoints and resume keep working, and the pipeline groups the seeds."""
import json
import os
import shutil
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _two_process_worker as worker  # pylint: disable=g-import-not-at-top,g-bad-import-order
from wt_jax import train
from wt_jax.run import pipeline

from _tiny import tiny_config

SEEDS = (0, 3)
TIMING_KEYS = ('wall_time_s', 'img_per_s', 'time_parts', 'seeds_in_program')


def _records(workdir):
  with open(os.path.join(workdir, train.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


def _untimed(d):
  return {k: v for k, v in d.items() if k not in TIMING_KEYS}


def _stored_params(workdir, step):
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  state = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))['state']
  manager.close()
  return state['params'], state['batch_stats']


def _assert_close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


@pytest.fixture(scope='module')
def batched(tmp_path_factory):
  """Two seeds in one program: 8 steps, checkpoints at 4 and 8."""
  root = tmp_path_factory.mktemp('batched')
  dirs = [str(root / f'seed_{s}') for s in SEEDS]
  config = worker.config(eval_every=4)
  return dirs, train.train_and_evaluate_seeds(config, worker.widths(), dirs,
                                              SEEDS)


def test_each_seed_equals_its_separate_run(tmp_path, batched):
  dirs, finals = batched
  config = worker.config(eval_every=4)
  # The two seeds are two networks, not one network twice.
  assert finals[0]['train_loss'] != finals[1]['train_loss']
  for seed, workdir, together in zip(SEEDS, dirs, finals):
    alone_dir = str(tmp_path / f'alone_{seed}')
    alone = train.train_and_evaluate(config, worker.widths(), alone_dir,
                                     seed=seed)
    assert together['seeds_in_program'] == 2
    for key in ('steps', 'examples_seen', 'num_eval_examples', 'train_macs',
                'macs', 'params', 'lr', 'stopped_early'):
      assert together[key] == alone[key], key
    # Float tolerance: the batched convolutions may sum in another order.
    for key in ('top1', 'top5', 'eval_loss', 'train_loss'):
      np.testing.assert_allclose(together[key], alone[key], rtol=1e-4,
                                 err_msg=key)
    ours, theirs = _records(workdir), _records(alone_dir)
    assert [(r['kind'], r['step']) for r in ours] == [
        (r['kind'], r['step']) for r in theirs]
    for a, b in zip(ours, theirs):
      for key in ('train_loss', 'test_top1', 'test_eval_loss', 'lr'):
        if key in b:
          np.testing.assert_allclose(a[key], b[key], rtol=1e-4, err_msg=key)
    # The checkpoints are a separate run's, leaf for leaf.
    for step in (4, 8):
      _assert_close(_stored_params(workdir, step),
                    _stored_params(alone_dir, step), rtol=1e-4, atol=1e-6)


def test_resume_from_the_last_intact_checkpoint_is_bit_identical(
    tmp_path, batched):
  dirs, finals = batched
  copies = [str(tmp_path / os.path.basename(d)) for d in dirs]
  for src, dst in zip(dirs, copies):
    shutil.copytree(src, dst)
    shutil.rmtree(os.path.join(dst, 'checkpoints', '8'))  # killed at 5..8
  again = train.train_and_evaluate_seeds(worker.config(eval_every=4),
                                         worker.widths(), copies, SEEDS)
  assert [_untimed(f) for f in again] == [_untimed(f) for f in finals]
  for src, dst in zip(dirs, copies):
    assert ([_untimed(r) for r in _records(dst)] ==
            [_untimed(r) for r in _records(src)])
    for a, b in zip(_stored_params(dst, 8), _stored_params(src, 8)):
      jax.tree.map(np.testing.assert_array_equal, a, b)


def test_seeds_at_different_steps_train_one_by_one(tmp_path, batched, caplog):
  """A kill between two seeds' saves: seed 0 resumes from step 4, seed 3
  is finished; each continues on its own to its separate result."""
  dirs, finals = batched
  copies = [str(tmp_path / os.path.basename(d)) for d in dirs]
  for src, dst in zip(dirs, copies):
    shutil.copytree(src, dst)
  shutil.rmtree(os.path.join(copies[0], 'checkpoints', '8'))
  with caplog.at_level('WARNING'):
    again = train.train_and_evaluate_seeds(worker.config(eval_every=4),
                                           worker.widths(), copies, SEEDS)
  assert any('different steps ([4, 8])' in r.getMessage()
             for r in caplog.records)
  for ours, theirs in zip(again, finals):
    assert ours['steps'] == 8 and 'seeds_in_program' not in ours
    for key in ('top1', 'eval_loss', 'train_loss'):
      np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4)


def test_the_pipeline_trains_an_arms_seeds_in_one_program(tmp_path, capsys):
  c = tiny_config(stages=('train_uniform',), seeds=(0, 1))
  c.train.batch_seeds = True
  pipeline.run(c, str(tmp_path))
  out = capsys.readouterr().out
  assert out.count('2 seeds in one program') == 2, out
  finals = [json.loads((tmp_path / 'train' / 'uniform' / f'seed_{s}' /
                        'final.json').read_text()) for s in (0, 1)]
  assert [f['seed'] for f in finals] == [0, 1]
  assert all(f['seeds_in_program'] == 2 for f in finals)
  # One program or one by one: the same inputs, so a switch reuses them.
  c.train.batch_seeds = False
  pipeline.run(c, str(tmp_path))
  assert capsys.readouterr().out.count('reused') == 2

