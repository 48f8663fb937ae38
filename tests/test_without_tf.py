"""A machine with JAX and no TensorFlow, TFDS or clu (a GPU or TPU image):
the CLI chain runs on digits and on a folder of JPEGs, and what needs the
missing packages exits 2 naming them, before any work.

Each run is a subprocess whose `sitecustomize` blocks the packages on
`sys.meta_path` (as ../shared/tools/block_tf does): importing any of them
raises ImportError.
"""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from _tiny import REPO

BLOCKED = ('tensorflow', 'tensorflow_datasets', 'clu', 'tf_keras', 'keras')
BLOCKER = f'''import importlib.abc
import sys


class _Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in {BLOCKED!r}:
      raise ImportError(name + ' is blocked by the test')
    return None


sys.meta_path.insert(0, _Block())
'''
TINY = ('--config.arch=resnet_tiny', '--config.seeds=0',
        '--config.train.num_steps=6', '--config.train.log_every=3',
        '--config.train.checkpoint_every=3', '--config.morphnet.num_steps=6',
        '--config.morphnet.export_every=3', '--config.train.batch_size=16',
        '--config.train.eval_batch_size=32', '--config.data.resolution=8',
        '--config.projection.resolution=6')


@pytest.fixture(scope='module')
def blocked_env(tmp_path_factory):
  site = tmp_path_factory.mktemp('blocker')
  (site / 'sitecustomize.py').write_text(BLOCKER)
  return dict(os.environ, PYTHONPATH=f'{site}{os.pathsep}{REPO}')


def _cli(env, workdir, *flags):
  return subprocess.run(
      [sys.executable, '-m', 'wt_jax.main',
       '--config=configs/quickstart.py', f'--workdir={workdir}', *flags],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _jpeg_folder(root, classes=3, train=24, test=4, side=12):
  """root/{train,test}/<class>/*.jpg: class c's images are bright in
  channel c (learnable), with noise."""
  rng = np.random.default_rng(0)
  for split, count in (('train', train), ('test', test)):
    for c in range(classes):
      folder = root / split / f'class{c}'
      folder.mkdir(parents=True)
      for i in range(count):
        image = rng.integers(0, 80, (side, side, 3), dtype=np.uint8)
        image[..., c] += 150
        Image.fromarray(image).save(folder / f'{i}.jpg', quality=95)
  return root


def test_blocker_blocks(blocked_env):
  proc = subprocess.run([sys.executable, '-c', 'import tensorflow'],
                        env=blocked_env, capture_output=True, text=True)
  assert proc.returncode == 1 and 'blocked by the test' in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize('source', ['digits', 'folder'])
def test_cli_chain_runs_without_tensorflow(blocked_env, tmp_path, source):
  flags = list(TINY)
  if source == 'folder':
    folder = _jpeg_folder(tmp_path / 'images')
    flags += [f'--config.data.source=folder:{folder}',
              '--config.data.augment=cifar', '--config.data.val_fraction=0.2']
  proc = _cli(blocked_env, tmp_path / 'work', *flags)
  assert proc.returncode == 0, proc.stderr[-4000:]
  with open(tmp_path / 'work' / 'results.json') as f:
    results = json.load(f)
  assert {'uniform', 'transferred'} <= set(results['arms'])
  with open(tmp_path / 'work' / 'train' / 'uniform' / 'seed_0' /
            'final.json') as f:
    final = json.load(f)
  assert final['num_eval_examples'] == (360 if source == 'digits' else 12)
  metrics = (tmp_path / 'work' / 'train' / 'uniform' / 'seed_0' /
             'metrics.jsonl')
  kinds = [json.loads(l)['kind'] for l in metrics.read_text().splitlines()]
  assert kinds.count('train') == 2 and kinds[-1] == 'final'


@pytest.mark.parametrize('flags, needed', [
    (('--config.data.source=cifar10',), 'tensorflow_datasets'),
    (('--config.data.augment=imagenet',), 'tensorflow'),
])
def test_what_needs_tensorflow_exits_2_naming_the_package(
    blocked_env, tmp_path, flags, needed):
  proc = _cli(blocked_env, tmp_path / 'work', *TINY, *flags)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert f"needs the Python package '{needed}'" in proc.stderr
  assert "pip install 'wt_jax[tfds]'" in proc.stderr
  assert not (tmp_path / 'work' / 'optimize').exists()  # before any work
