"""Training and evaluation of one width vector (see `loop`)."""
# Transitional: the public names of the former train.py.
from wt_jax.train.loop import *  # noqa: F401,F403
from wt_jax.train.loop import _tc  # noqa: F401
from wt_jax.train.sharding import *  # noqa: F401,F403


def validate(train_config) -> None:
  """Checks the `config.train` block (transitional home)."""
  from wt_jax import validation  # pylint: disable=g-import-not-at-top
  f = validation.Fields(train_config, 'train')
  f.number('batch_size', 1, integer=True)
  f.number('eval_batch_size', 1, integer=True)
  f.number('num_steps', 0, integer=True)
  f.number('epochs', 0)
  if train_config.num_steps == 0 and not train_config.epochs > 0:
    f.fail('epochs', '> 0 (or set train.num_steps > 0)')
  f.number('base_lr', 0, lo_open=True)
  f.choice('schedule', SCHEDULES)  # noqa: F405
  f.number('warmup_epochs', 0)
  f.number('momentum', 0, 1)
  f.number('weight_decay', 0)
  f.number('label_smoothing', 0, 1)
  for field in ('log_every', 'eval_every', 'checkpoint_every'):
    f.number(field, 0, integer=True)
  f.number('keep_checkpoints', 1, integer=True)
