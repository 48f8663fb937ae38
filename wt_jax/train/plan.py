"""The numbers of one run (`Plan`): batch sizes, steps, and what happens
when (log, evaluate, call back, save), from `config.train` and the mesh.

The batch sizes follow `validation.batch_size` (split evenly over the
devices and processes), the length `length.run_length`.
"""
from __future__ import annotations

import dataclasses

import jax

from wt_jax.train.length import run_length
from wt_jax.util import validation


@dataclasses.dataclass(frozen=True)
class Plan:
  """The numbers of one run: batch sizes, steps, and what happens when."""
  batch_size: int
  eval_batch_size: int
  steps_per_epoch: int
  total_steps: int
  log_every: int
  eval_every: int
  checkpoint_every: int
  callback_every: int

  @classmethod
  def create(cls, train_config, num_train: int, num_devices: int,
             callback_every: int) -> 'Plan':
    pcount = jax.process_count()
    batch_size, eval_batch_size = (
        validation.batch_size(f'config.train.{name}',
                              int(getattr(train_config, name)),
                              devices=num_devices, processes=pcount)
        for name in ('batch_size', 'eval_batch_size'))
    length = run_length(train_config, num_train, pcount)
    if length.steps_per_epoch < 1:
      validation.fail('config.train.batch_size', batch_size,
                      f'at most the training split ({num_train} examples)')
    return cls(batch_size=batch_size, eval_batch_size=eval_batch_size,
               steps_per_epoch=length.steps_per_epoch,
               total_steps=length.total_steps,
               log_every=max(1, int(train_config.log_every)),
               eval_every=int(train_config.eval_every),
               checkpoint_every=int(train_config.checkpoint_every),
               callback_every=int(callback_every))

  def is_log(self, step: int, is_last: bool) -> bool:
    return step % self.log_every == 0 or is_last

  def is_eval(self, step: int, is_last: bool) -> bool:
    return self.eval_every > 0 and step % self.eval_every == 0 and not is_last

  def is_callback(self, step: int, is_last: bool) -> bool:
    return is_last or (self.callback_every > 0 and
                       step % self.callback_every == 0)

  def is_checkpoint(self, step: int, is_last: bool, stopped: bool) -> bool:
    return is_last or stopped or (self.checkpoint_every > 0 and
                                  step % self.checkpoint_every == 0)
