"""Records: metrics.jsonl and TensorBoard scalars, without TensorFlow or clu.

The event files are read back with TensorBoard's own reader; the
subprocess tests block TensorFlow, TFDS and clu (and then tensorboard) on
`sys.meta_path`, as on a JAX-only GPU or TPU machine.
"""
import json
import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from wt_jax.train import records
from wt_jax.train import summaries

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WRITES = (
    ('train', 1, {'train_loss': 2.5, 'lr': 0.1, 'note': 'warm-up'}),
    ('train', 2, {'train_loss': np.float32(1.2345678), 'lr': np.float64(0.05),
                  'flag': True}),
    ('eval', 3, {'top1': jnp.float32(0.625), 'seen': 96}),
    ('train', 4, {'train_loss': 0.75, 'lr': 1e-7}),
)


def _write(workdir, resume_step=0, writes=WRITES):
  r = records.Records(str(workdir), resume_step)
  for kind, step, values in writes:
    r.write(kind, step, values)
  r.close()


def _scalars(logdir):
  """{tag: [(step, value)]} of every event file in `logdir`."""
  acc = event_accumulator.EventAccumulator(
      str(logdir), size_guidance={event_accumulator.SCALARS: 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
          for tag in acc.Tags()['scalars']}


def _expected_scalars(writes):
  """What TensorBoard holds: Python and numpy numbers (not bools, not jax
  arrays: those go to metrics.jsonl only, as before) as float32."""
  out = {}
  for _, step, values in writes:
    for k, v in values.items():
      if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        out.setdefault(k, []).append((step, float(np.float32(v))))
  return out


def _lines(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _expected_lines(writes):
  return [{'kind': kind, 'step': step, **records.jsonable(values)}
          for kind, step, values in writes]


def _event_files(workdir):
  return sorted(n for n in os.listdir(workdir)
                if n.startswith('events.out.tfevents.'))


def test_scalars_and_metrics_read_back(tmp_path):
  _write(tmp_path)
  assert len(_event_files(tmp_path)) == 1  # in the workdir itself
  got = _scalars(tmp_path)
  assert got == _expected_scalars(WRITES)
  assert sorted(got) == ['lr', 'seen', 'train_loss']
  chex.assert_trees_all_close(
      {k: [v for _, v in pts] for k, pts in got.items()},
      {'train_loss': [2.5, 1.2345678, 0.75], 'lr': [0.1, 0.05, 1e-7],
       'seen': [96.0]}, rtol=1e-7)
  assert _lines(tmp_path) == _expected_lines(WRITES)
  assert _lines(tmp_path)[1:3] == [
      {'kind': 'train', 'step': 2, 'flag': True, 'lr': 0.05,
       'train_loss': float(np.float32(1.2345678))},
      {'kind': 'eval', 'step': 3, 'top1': 0.625, 'seen': 96}]


def test_resumed_records_truncate(tmp_path):
  _write(tmp_path)
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"kind": "final", "step": 4}\n{"kind": "tra')  # final + torn
  _write(tmp_path, resume_step=2, writes=(('train', 3, {'train_loss': 0.5}),))
  assert _lines(tmp_path) == _expected_lines(
      WRITES[:2] + (('train', 3, {'train_loss': 0.5}),))
  assert len(_event_files(tmp_path)) == 2
  # TensorBoard drops the first run's steps after the restart itself.
  assert _scalars(tmp_path)['train_loss'] == [
      (1, 2.5), (2, float(np.float32(1.2345678))), (3, 0.5)]


def test_no_workdir_and_other_processes_write_nothing(tmp_path, monkeypatch):
  r = records.Records(None, 0)
  r.write('train', 1, {'train_loss': 1.0})
  r.close()
  assert r.writer is None and r.path is None
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  _write(tmp_path)
  assert os.listdir(tmp_path) == []


def test_remote_workdir_without_tensorflow_logs_once(monkeypatch):
  said = []
  monkeypatch.setattr(summaries, '_writes_remote_files', lambda: False)
  monkeypatch.setattr(summaries, '_said', set())
  monkeypatch.setattr(summaries.logging, 'warning',
                      lambda msg, *args: said.append(msg % args))
  assert summaries.open_writer('gs://bucket/run') is None
  assert summaries.open_writer('gs://bucket/other') is None
  assert len(said) == 1 and 'gs://bucket/run' in said[0], said


def test_parameter_table():
  params = {'conv': {'kernel': jax.ShapeDtypeStruct((3, 3, 3, 8),
                                                    jnp.float32),
                     'bias': np.zeros(8, np.float32)},
            'fc': [jnp.zeros((1000, 10), jnp.bfloat16)]}
  table = records.parameter_table(params).splitlines()
  assert table[1].split() == ['|', 'Name', '|', 'Shape', '|', 'Dtype', '|',
                              'Size', '|']
  rows = [[c.strip() for c in line.strip('|').split('|')]
          for line in table[3:-2]]
  assert rows == [['conv/bias', '(8,)', 'float32', '8'],
                  ['conv/kernel', '(3, 3, 3, 8)', 'float32', '216'],
                  ['fc/0', '(1000, 10)', 'bfloat16', '10,000']]
  assert table[-1] == 'Total: 10,224 -- 20,896 bytes'
  assert len({len(line) for line in table[:-1]}) == 1  # aligned


# Hides the BLOCKED packages from every finder: `import` fails and
# `importlib.util.find_spec` returns None, as when they are not installed.
_BLOCKED = """
import sys

class _Hide:
  def __init__(self, finder):
    self.finder = finder

  def find_spec(self, name, path=None, target=None):
    if name.partition('.')[0] in BLOCKED:
      return None
    return self.finder.find_spec(name, path, target)

  def __getattr__(self, name):
    return getattr(self.finder, name)

sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
"""


def _run_blocked(blocked, body):
  code = (f'BLOCKED = {tuple(blocked)!r}\n' + _BLOCKED +
          textwrap.dedent(body))
  return subprocess.run([sys.executable, '-c', code], cwd=REPO,
                        capture_output=True, text=True, timeout=300,
                        check=False)


def test_records_without_tensorflow_or_clu(tmp_path):
  out = _run_blocked(('tensorflow', 'tensorflow_datasets', 'clu'), f"""
      import sys
      from wt_jax.train import records
      r = records.Records({str(tmp_path)!r}, 0)
      for step, loss in ((1, 2.5), (2, 1.25)):
        r.write('train', step, {{'train_loss': loss, 'lr': 0.1}})
      r.close()
      loaded = {{'tensorflow', 'tensorflow_datasets', 'clu'}} & set(
          sys.modules)
      assert not loaded, loaded
      """)
  assert out.returncode == 0, out.stderr
  assert 'TensorBoard summaries are off' not in out.stderr
  assert len(_event_files(tmp_path)) == 1
  assert _scalars(tmp_path) == {'train_loss': [(1, 2.5), (2, 1.25)],
                                'lr': [(1, float(np.float32(0.1))),
                                       (2, float(np.float32(0.1)))]}
  assert [r['step'] for r in _lines(tmp_path)] == [1, 2]


def test_records_without_tensorboard(tmp_path):
  out = _run_blocked(
      ('tensorflow', 'tensorflow_datasets', 'clu', 'tensorboard'), f"""
      from wt_jax.train import records
      for step in (1, 2):  # two runs, one log line
        r = records.Records({str(tmp_path)!r}, step - 1)
        r.write('train', step, {{'train_loss': 1.0 / step}})
        r.close()
        assert r.writer is None
      """)
  assert out.returncode == 0, out.stderr
  said = [line for line in out.stderr.splitlines()
          if 'TensorBoard summaries are off' in line]
  assert len(said) == 1 and 'tensorboard' in said[0], out.stderr
  assert _lines(tmp_path) == [
      {'kind': 'train', 'step': 1, 'train_loss': 1.0},
      {'kind': 'train', 'step': 2, 'train_loss': 0.5}]
  assert not _event_files(tmp_path)


if __name__ == '__main__':
  sys.exit(pytest.main([__file__, '-q']))
