"""The numbers of one run (`Plan`): batch sizes, steps, and what happens
when (log, evaluate, call back, save), from `config.train` and the mesh.

The batch sizes follow `validation.batch_size` (split evenly over the
devices and processes), the length `length.run_length`.

Steps per call: the loop runs up to `steps_per_call` steps in one jitted
call (`chunk`), never past a step where something happens (a log, eval,
callback or checkpoint step, or the last), and in powers of two, so a run
compiles at most log2(steps_per_call) + 1 programs. The chunks are a
function of the step alone: a run resumed from a checkpoint (always a
chunk's end) makes the calls the uninterrupted run made.
"""
from __future__ import annotations

import dataclasses

from absl import logging
import jax

AUTO_STEPS_PER_CALL = {'cpu': 1}  # other platforms: ACCELERATOR_STEPS_PER_CALL
ACCELERATOR_STEPS_PER_CALL = 16

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
  steps_per_call: int = 1

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
               callback_every=int(callback_every),
               steps_per_call=steps_per_call(train_config))

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

  def chunk(self, step: int, last_step: int, *, callback: bool,
            checkpoints: bool) -> int:
    """How many steps the call after `step` runs: up to the next step
    where something happens, at most `steps_per_call`, a power of two."""
    periods = [self.log_every]
    if self.eval_every > 0:
      periods.append(self.eval_every)
    if callback and self.callback_every > 0:
      periods.append(self.callback_every)
    if checkpoints and self.checkpoint_every > 0:
      periods.append(self.checkpoint_every)
    nearest = min([last_step] + [(step // p + 1) * p for p in periods])
    room = min(nearest - step, self.steps_per_call)
    return 1 << (max(room, 1).bit_length() - 1)


def steps_per_call(train_config) -> int:
  """`config.train.steps_per_call`, 0 resolved for this platform."""
  value = int(train_config.get('steps_per_call', 0))
  backend = jax.default_backend()
  if value > 1 and backend == 'cpu':
    logging.warning(
        'config.train.steps_per_call=%d on CPU: XLA:CPU runs the '
        'convolutions of a scanned step about 35x slower than a single '
        "step's (ResNet-20, bench/seeds_step.py); 0 (auto) is 1 here.", value)
  if value:
    return value
  return AUTO_STEPS_PER_CALL.get(backend, ACCELERATOR_STEPS_PER_CALL)
