"""Device-resident training data (`data.placement`), the numpy host path
(`data.arrays`) and several steps per jitted call (`Plan.chunk`)."""
import shutil

import chex
import jax
import numpy as np
import pytest

from wt_jax import data
from wt_jax import train
from wt_jax.data import arrays
from wt_jax.data import placement
from wt_jax.nets import widths as W
from wt_jax.train.plan import Plan

from _tiny import tiny_config


def _coordinate_images(n, r):
  """uint8 images whose pixel (y, x) holds (y, x, example)."""
  y, x = np.meshgrid(np.arange(r), np.arange(r), indexing='ij')
  return np.stack([np.stack([y, x, np.full_like(y, i)], -1)
                   for i in range(n)]).astype(np.uint8)


def _reflect(i, r):
  """numpy 'reflect' padding's source index of padded coordinate i - pad."""
  i = np.abs(i)
  return np.where(i > r - 1, 2 * (r - 1) - i, i)


@pytest.mark.parametrize('r', [8, 32])
def test_crop_flip_is_a_window_of_the_padded_image_on_host_and_device(r):
  n, pad = 256, arrays.pad_of(r)
  images = _coordinate_images(n, r)
  dy, dx, flip = arrays.crop_flip_draws(seed=3, epoch=1, n=n, resolution=r)
  host = arrays.crop_flip(images, dy, dx, flip)
  device = np.asarray(jax.jit(placement.crop_flip)(images, dy, dx, flip))
  np.testing.assert_array_equal(device, host)  # the same pixels
  assert host.shape == images.shape
  for i in range(n):
    rows = _reflect(dy[i] - pad + np.arange(r), r)
    cols = _reflect(dx[i] - pad + np.arange(r), r)
    if flip[i]:
      cols = cols[::-1]
    np.testing.assert_array_equal(host[i, :, :, 0],
                                  np.broadcast_to(rows[:, None], (r, r)))
    np.testing.assert_array_equal(host[i, :, :, 1],
                                  np.broadcast_to(cols[None, :], (r, r)))
    assert (host[i, :, :, 2] == i).all()  # each crop from its own image
  # Offsets cover [0, 2 * pad] about uniformly; flips half the time.
  counts = np.bincount(np.concatenate([dy, dx]), minlength=2 * pad + 1)
  assert len(counts) == 2 * pad + 1 and counts.min() > 0
  expected = 2 * n / (2 * pad + 1)
  assert abs(counts - expected).max() < 5 * np.sqrt(expected)
  assert abs(flip.mean() - 0.5) < 5 * np.sqrt(0.25 / n)


def test_draws_differ_between_epochs_and_seeds_and_repeat_exactly():
  a = arrays.crop_flip_draws(0, 0, 100, 32)
  chex.assert_trees_all_equal(a, arrays.crop_flip_draws(0, 0, 100, 32))
  for other in (arrays.crop_flip_draws(0, 1, 100, 32),
                arrays.crop_flip_draws(1, 0, 100, 32)):
    assert any((x != y).any() for x, y in zip(a, other))


def _digits(**over):
  return tiny_config(**{'data.augment': 'cifar', **over}).data


def test_positions_batches_keep_labels_and_gather_the_host_pixels():
  dc = _digits()
  kwargs = dict(batch_size=32, seed=5, train=True, num_epochs=2)
  host = list(data.as_numpy(data.make_dataset(dc, 'train', **kwargs)))
  pos = list(data.as_numpy(data.make_dataset(dc, 'train', positions=True,
                                             **kwargs)))
  assert len(host) == len(pos) == 2 * (1292 // 32)
  mesh = train.make_mesh(jax.devices()[:1])
  split = placement.place_train_split(mesh, _with(dc, placement='device'))
  source = data.get_source(dc)
  indices = data.split_indices(dc)['train']
  labels = source.labels('train')[indices]
  gather = jax.jit(split.gather)
  for h, p in zip(host, pos):
    np.testing.assert_array_equal(p['label'], labels[p['position']])
    np.testing.assert_array_equal(h['label'], p['label'])
    got = gather(split.images, p)
    np.testing.assert_allclose(np.asarray(got['image']), h['image'],
                               rtol=0, atol=1e-6)
  # Every example once per epoch.
  per_epoch = 1292 // 32
  seen = np.concatenate([p['position'] for p in pos[:per_epoch]])
  assert len(np.unique(seen)) == len(seen)


def _with(data_config, **fields):
  dc = data_config.copy_and_resolve_references()
  for k, v in fields.items():
    dc[k] = v
  return dc


def test_placement_rules():
  dc = _digits()
  assert placement.resolve(_with(dc, placement='auto'), True, 10) == 'device'
  assert placement.resolve(_with(dc, placement='auto'), False, 10) == 'host'
  assert placement.resolve(_with(dc, placement='host'), True, 10) == 'host'
  huge = 10 * placement.device_memory_bytes()
  assert placement.resolve(_with(dc, placement='auto'), True, huge) == 'host'
  with pytest.raises(data.DataError, match=r'device_memory_fraction=0\.25'):
    placement.resolve(_with(dc, placement='device'), True, huge)
  with pytest.raises(data.DataError, match=r"placement='device' needs"):
    placement.resolve(_with(dc, placement='device'), False, 10)
  for field, value in (('placement', 'gpu'), ('device_memory_fraction', 0.0),
                       ('device_memory_fraction', 1.5)):
    with pytest.raises(data.DataError, match=f'config.data.{field}='):
      data.validate(_with(dc, **{field: value}))


def _capture(store):
  def callback(step, state):
    del step
    store['params'] = jax.device_get(state.params)
    store['batch_stats'] = jax.device_get(state.batch_stats)
  return callback


def _run(workdir=None, **over):
  # base_lr 0.05: low enough that float reduction-order differences (a
  # scanned step's) stay at float level over 8 steps; at 0.4 they grow to
  # ~1e-3 (tests/_two_process_worker.py).
  config = tiny_config(**{'data.augment': 'cifar', 'train.num_steps': 8,
                          'train.log_every': 4, 'train.checkpoint_every': 4,
                          'train.base_lr': 0.05, **over})
  captured = {}
  out = train.train_and_evaluate(config, W.uniform('resnet_tiny', 0.5),
                                 workdir, callback=_capture(captured))
  return out, captured


def _untimed(metrics):
  return {k: v for k, v in metrics.items()
          if k not in ('wall_time_s', 'img_per_s', 'time_parts')}


@pytest.mark.slow
def test_device_placement_and_scanned_steps_train_what_the_host_trains(
    tmp_path):
  """The device gathers the host's pixels: the same parameters, bit for
  bit. 4 steps per call (a lax.scan) compute what 4 calls compute, to float
  tolerance (XLA compiles a loop body differently); a run resumed from a
  checkpoint with scanned steps ends bit-identical to the straight run."""
  ref, ref_state = _run(**{'data.placement': 'host',
                           'train.steps_per_call': 1})
  out, state = _run(**{'data.placement': 'device', 'train.steps_per_call': 1})
  assert _untimed(out) == _untimed(ref)
  chex.assert_trees_all_equal(state, ref_state)
  scanned, scanned_state = _run(tmp_path / 'a', **{
      'data.placement': 'device', 'train.steps_per_call': 4})
  for name, (out, state) in {
      'device': (scanned, scanned_state),
      'host': _run(**{'data.placement': 'host', 'train.steps_per_call': 4}),
  }.items():
    assert out['steps'] == 8, name
    np.testing.assert_allclose(out['train_loss'], ref['train_loss'],
                               rtol=1e-5, err_msg=name)
    chex.assert_trees_all_close(state, ref_state, rtol=1e-4, atol=1e-6)
  # Resume from checkpoint 4 (the run's second call starts there).
  shutil.copytree(tmp_path / 'a', tmp_path / 'b')
  shutil.rmtree(tmp_path / 'b' / 'checkpoints' / '8')
  out, state = _run(tmp_path / 'b', **{'data.placement': 'device',
                                       'train.steps_per_call': 4})
  assert out['steps'] == 8 and _untimed(out) == _untimed(scanned)
  chex.assert_trees_all_equal(state, scanned_state)


def _plan(**over):
  fields = dict(batch_size=32, eval_batch_size=32, steps_per_epoch=10,
                total_steps=100, log_every=10, eval_every=0,
                checkpoint_every=25, callback_every=0, steps_per_call=16)
  fields.update(over)
  return Plan(**fields)


@pytest.mark.parametrize('step, last, over, kwargs, expected', [
    (0, 100, {}, {}, 8),  # next log step 10: 10 -> 8
    (8, 100, {}, {}, 2),
    (20, 100, {}, {'checkpoints': True}, 4),  # checkpoint at 25: 5 -> 4
    (20, 100, {}, {'checkpoints': False}, 8),  # no checkpoints: log at 30
    (0, 100, {'log_every': 64}, {}, 16),  # capped by steps_per_call
    (96, 100, {'log_every': 64}, {}, 4),  # the last step
    (0, 100, {'callback_every': 3}, {'callback': True}, 2),
    (0, 100, {'callback_every': 3}, {'callback': False}, 8),
    (0, 100, {'eval_every': 5}, {}, 4),
    (0, 100, {'steps_per_call': 1}, {}, 1),
])
def test_chunks_stop_at_every_step_where_something_happens(
    step, last, over, kwargs, expected):
  kwargs = {'callback': False, 'checkpoints': True, **kwargs}
  assert _plan(**over).chunk(step, last, **kwargs) == expected


def test_chunks_cover_the_run_and_are_a_function_of_the_step():
  plan = _plan(log_every=7, checkpoint_every=12, steps_per_call=16)
  step, ends = 0, []
  while step < 100:
    step += plan.chunk(step, 100, callback=False, checkpoints=True)
    ends.append(step)
  assert ends[-1] == 100
  must = {s for s in range(1, 101) if s % 7 == 0 or s % 12 == 0} | {100}
  assert must <= set(ends)
  # Resuming at any checkpoint (a chunk end) gives the same later chunks.
  resumed, step = [], 48
  while step < 100:
    step += plan.chunk(step, 100, callback=False, checkpoints=True)
    resumed.append(step)
  assert resumed == [e for e in ends if e > 48]
