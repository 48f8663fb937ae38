"""A remote workdir (gs://...) works end to end through one path layer.

Offline, `etils.epath.testing.mock_epath` maps gs://bucket/... onto a local
directory, so every non-orbax read and write (widths, summaries,
fingerprints, config.json, timing.json, superseded moves, metrics.jsonl,
the report and its plots) goes through epath's remote code path. Orbax's
checkpoints write through tensorstore's own GCS driver and TensorBoard
events through TF's, which no offline file system serves; they are left
out.
"""
import contextlib
import json
import os
from unittest import mock

from etils import epath
from etils.epath import gpath
from etils.epath import testing as epath_testing

from wt_jax.nets import widths as W
from wt_jax.optimizers import result as result_lib
from wt_jax.run import pipeline
from wt_jax.train import records
from wt_jax.train import summaries

from _tiny import tiny_config


@contextlib.contextmanager
def fake_gcs(root):
  """gs://bucket/<path> -> <root>/<path> for every epath operation."""
  def local(path):
    path = os.fspath(path)
    return os.path.join(root, path[len('gs://'):]) if path.startswith(
        'gs://') else path

  def one(fn, path, *args, **kwargs):
    return fn(local(path), *args, **kwargs)

  def two(fn, path, dst, *args, **kwargs):
    return fn(local(path), local(dst), *args, **kwargs)

  names = ('open', 'exists', 'isdir', 'listdir', 'makedirs', 'mkdir',
           'remove', 'rmtree', 'stat', 'walk', 'glob')
  # With TensorFlow installed epath sends gs:// to tf.io.gfile, past the
  # mock's backends: make it pick the (mocked) registered backend.
  with epath_testing.mock_epath(**{n: one for n in names}, rename=two,
                                replace=two, copy=two), \
      mock.patch.object(gpath, '_is_tf_installed', lambda: False):
    yield


def test_pipeline_on_a_remote_workdir(tmp_path):
  bucket = tmp_path / 'bucket'
  wd = 'gs://bucket/wt/run'
  c = tiny_config(stages=('optimize', 'transfer', 'report'))
  proj = pipeline.prepare(c, str(tmp_path / 'local')).projected
  for k, scale in ((1, 2), (2, 4)):
    path = tmp_path / f'opt{k}.json'
    W.save(str(path), proj.widths.replace(
        [max(2, v // scale) for v in proj.widths.values]))
  with fake_gcs(str(tmp_path)):
    c.widths_file = str(tmp_path / 'opt1.json')
    res = pipeline.run(c, wd)
    assert epath.Path(wd + '/results.md').exists()
    assert result_lib.load(wd + '/optimize').train_macs == 0
    c2 = tiny_config(stages=('optimize', 'transfer', 'report'),
                     widths_file=str(tmp_path / 'opt2.json'))
    pipeline.run(c2, wd)  # another widths file: recomputed, old moved
  local = bucket / 'wt' / 'run'
  for name in ('config.json', 'timing.json', 'results.json', 'results.md',
               'widths.png', 'overhead.png', 'widths/transferred.json',
               'optimize/fingerprint.json', 'transfer/fingerprint.json'):
    assert (local / name).exists(), name
  moved = sorted(os.listdir(local / 'superseded'))
  assert [m.split('-')[0] for m in moved] == ['optimize', 'transfer'], moved
  assert (local / 'superseded' / moved[0] / 'optimize' / 'summary.json'
          ).exists()
  assert res['arms']['transferred']['macs'] > 0
  assert not (local / '.lock').exists()


def test_metrics_records_on_a_remote_workdir(tmp_path, monkeypatch):
  # TensorBoard events go to a remote workdir only through TF's own GCS
  # client (like orbax's arrays through tensorstore's): as on a machine
  # without TF, they are off here (metrics.jsonl is ours).
  monkeypatch.setattr(summaries, '_writes_remote_files', lambda: False)
  with fake_gcs(str(tmp_path)):
    writer = records.Records('gs://bucket/run', resume_step=0)
    assert writer.writer is None
    writer.write('train', 1, {'train_loss': 2.0})
    writer.write('train', 2, {'train_loss': 1.5})
    writer.close()
    resumed = records.Records('gs://bucket/run', resume_step=1)  # cut back
    resumed.close()
  lines = (tmp_path / 'bucket' / 'run' / 'metrics.jsonl').read_text()
  assert [json.loads(l)['step'] for l in lines.splitlines()] == [1]
