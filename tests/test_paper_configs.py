"""The paper's ImageNet configs run end to end under tfds.testing.mock_data.

Only the batch, the step counts and the seeds shrink: the resolution stays
224 with its inception-crop augmentation, bfloat16, the compound projection
to 112px and the configs' own stage lists.
"""
import os

import pytest
import tensorflow_datasets as tfds

from wt_jax import data
from wt_jax import defaults
from wt_jax import pipeline
from wt_jax import result as result_lib
from wt_jax import widths as W

from _tiny import REPO


def _paper_config(name):
  configs_dir = os.path.join(REPO, 'configs', '__init__.py')
  c = defaults.sibling(configs_dir, name).get_config()
  c.train.batch_size = 8
  c.train.eval_batch_size = 8
  c.train.num_steps = 2
  c.train.log_every = 1
  c.train.checkpoint_every = 1
  c.morphnet.num_steps = 2
  c.morphnet.export_every = 1
  c.seeds = (0,)
  return c


# Extended (130-250 s each on this 2-core machine): their blocks are those
# of the CIFAR and tiny test networks, their reader that of
# tests/test_data.py's mock TFDS tests, bfloat16 that of test_train.py.
@pytest.mark.extended
@pytest.mark.parametrize('name', ['resnet18', 'mobilenet_v2'])
def test_paper_config_runs_its_stages_on_mock_imagenet(tmp_path, name):
  c = _paper_config(name)
  assert c.data.source == 'imagenet2012' and c.data.resolution == 224
  assert c.data.augment == 'imagenet' and c.projection.resolution == 112
  data.clear_caches()
  with tfds.testing.mock_data(num_examples=64):
    res = pipeline.run(c, str(tmp_path))
  data.clear_caches()
  assert set(res['arms']) == {'uniform', 'transferred'}
  for arm in res['arms'].values():
    assert len(arm['top1']) == 1
  found = result_lib.load(str(tmp_path / 'optimize'))
  assert found.details['optimizer'] == 'morphnet'
  uniform = W.load(str(tmp_path / 'widths' / 'uniform.json'))
  transferred = W.load(str(tmp_path / 'widths' / 'transferred.json'))
  assert transferred.same_structure(uniform) and uniform.arch == name
  assert res['resolution'] == 224 and res['num_classes'] == 1000
  assert res['overhead']['macs_ratio'] > 10  # width x depth x resolution
