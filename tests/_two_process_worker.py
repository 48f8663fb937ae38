"""Subprocess worker for tests/test_train.py (not a test module).

  python tests/_two_process_worker.py two_process PORT PROCESS_ID OUT WORKDIR
    One of two processes of a `jax.distributed` run on 127.0.0.1:PORT (CPU
    collectives over gloo). Trains `config(...)` and writes OUT/result<ID>.json
    and OUT/params<ID>.npz (the params after the last step).

  python tests/_two_process_worker.py chain PORT PROCESS_ID OUT WORKDIR
    One of two processes running the whole pipeline on `chain_config()`;
    process 0 writes OUT/chain.json (the report).

  python tests/_two_process_worker.py kill WORKDIR KILL_STEP
    Trains `config(...)` in WORKDIR and SIGKILLs itself at step KILL_STEP,
    once the checkpoint of step KILL_STEP - 1 is committed.

The shared config and widths live here so the test process uses the same.
"""
import json
import os
import signal
import sys
import time

import numpy as np

WIDTH_VALUES = (4, 4, 4, 4, 8, 8, 8)  # resnet_tiny: 7 groups


def widths():
  from wt_jax.nets import widths as widths_lib  # pylint: disable=g-import-not-at-top
  return widths_lib.uniform('resnet_tiny').replace(WIDTH_VALUES)


def config(**train_overrides):
  """resnet_tiny on 8x8 digits; a few steps; no warm-up."""
  from wt_jax import defaults
  c = defaults.get_config()
  c.arch = 'resnet_tiny'
  c.seed = 0
  c.data.source = 'digits'
  c.data.augment = 'cifar'
  c.train.batch_size = 32
  c.train.eval_batch_size = 128
  c.train.num_steps = 8
  # Low enough that float reduction-order noise stays noise: at 0.4 these 8
  # steps amplify it from ~1e-7 to ~1e-3 (params), at 0.05 it stays ~1e-7.
  c.train.base_lr = 0.1
  c.train.warmup_epochs = 0.0
  c.train.schedule = 'cosine'
  c.train.label_smoothing = 0.1
  c.train.log_every = 2
  c.train.checkpoint_every = 4
  c.train.keep_checkpoints = 3
  for k, v in train_overrides.items():
    c.train[k] = v
  return c


def flat(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def _two_process(port, process_id, out, workdir):
  import jax  # pylint: disable=g-import-not-at-top
  jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}',
                             num_processes=2, process_id=process_id,
                             cluster_detection_method='deactivate',
                             initialization_timeout=60)
  from wt_jax import train  # pylint: disable=g-import-not-at-top
  assert jax.process_count() == 2 and jax.device_count() == 8, (
      jax.process_count(), jax.device_count())
  captured = {}

  def capture(step, state):
    captured['params'] = flat(train.to_host(state.params))
    captured['step'] = step

  result = train.train_and_evaluate(config(), widths(), workdir,
                                    callback=capture)
  np.savez(os.path.join(out, f'params{process_id}.npz'), **captured['params'])
  with open(os.path.join(out, f'result{process_id}.json'), 'w') as f:
    json.dump(result, f)
  jax.distributed.shutdown()


def chain_config():
  """The whole chain on digits, small: MorphNet, transfer, two arms."""
  c = config()
  c.train.num_steps = 6
  c.train.checkpoint_every = 3
  c.morphnet.num_steps = 6
  c.morphnet.export_every = 3
  c.morphnet.lr = 0.4
  c.projection.width_mult = 0.5
  c.projection.depth_mult = 0.5
  c.transfer.divisor = 2
  c.transfer.min_width = 2
  return c


def _chain(port, process_id, out, workdir):
  """One of two processes running `pipeline.run(chain_config())`."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}',
                             num_processes=2, process_id=process_id,
                             cluster_detection_method='deactivate',
                             initialization_timeout=60)
  from wt_jax.run import pipeline  # pylint: disable=g-import-not-at-top
  result = pipeline.run(chain_config(), workdir)
  if process_id == 0:
    with open(os.path.join(out, 'chain.json'), 'w') as f:
      json.dump(result, f)
  jax.distributed.shutdown()


def _kill(workdir, kill_step):
  from wt_jax import train  # pylint: disable=g-import-not-at-top
  committed = os.path.join(workdir, 'checkpoints', str(kill_step - 1))

  def kill(step, state):
    del state
    if step == kill_step:
      deadline = time.time() + 60
      while not os.path.isdir(committed) and time.time() < deadline:
        time.sleep(0.05)
      os.kill(os.getpid(), signal.SIGKILL)

  train.train_and_evaluate(config(), widths(), workdir, callback=kill,
                           callback_every=1)
  raise SystemExit('not killed')


if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  if sys.argv[1] == 'two_process':
    _two_process(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
  elif sys.argv[1] == 'chain':
    _chain(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
  elif sys.argv[1] == 'kill':
    _kill(sys.argv[2], int(sys.argv[3]))
  else:
    raise SystemExit(f'unknown mode {sys.argv[1]!r}')
