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
from wt_jax.nets import widths as W
from wt_jax.optimizers import result as result_lib
from wt_jax.run import pipeline

from _tiny import REPO


def _paper_config(name, steps):
  configs_dir = os.path.join(REPO, 'configs', '__init__.py')
  c = defaults.sibling(configs_dir, name).get_config()
  c.train.batch_size = 8
  c.train.eval_batch_size = 8
  c.train.num_steps = steps
  c.train.log_every = 1
  c.train.checkpoint_every = 1
  c.morphnet.num_steps = steps
  c.morphnet.export_every = 1
  c.seeds = (0,)
  return c


# ResNet-18 trains 2 steps per stage (two saves in a row, which orbax once
# mishandled); MobileNetV2 one, as its 224px depthwise step costs ~10 s on
# XLA:CPU.
@pytest.mark.slow
@pytest.mark.parametrize('name, steps', [('resnet18', 2), ('mobilenet_v2', 1)])
def test_paper_config_runs_its_stages_on_mock_imagenet(tmp_path, name, steps):
  c = _paper_config(name, steps)
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
