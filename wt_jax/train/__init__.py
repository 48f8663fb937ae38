"""Training and evaluation of one width vector: jit + sharding, multi-host.

`train_and_evaluate(config, widths, workdir, ...)` trains
`models.build_model(widths)` on `config.data` with the `config.train` recipe
and returns its final metrics. Width optimizers call it (MorphNet through
`extra_loss` + `callback`, AutoSlim through `loss_fn`), and so does the final
training of every arm.

Hooks
-----
* `extra_loss(params) -> scalar`: added to the objective inside the jitted,
  sharded step (MorphNet's FLOPs regularizer); logged as `extra_loss`.
* `loss_fn` (`LossFn`): replaces the per-batch loss (AutoSlim's sandwich
  rule); its metrics are logged as `train_<name>`.
* `extra_params` (`ExtraParams`): one more top-level entry of the params
  tree with its own optax transform (DMCP's architecture parameters).
* `callback(step, state) -> dict | None`: on the host every
  `callback_every` steps and after the last; `{'stop_training': True}` ends
  training after that step.

Sharding: one 1-D 'data' mesh over all devices of all processes, the state
replicated and the batch split (no pmap); BatchNorm statistics are global.
Multi-host: `maybe_initialize_distributed` before touching devices; only
process 0 writes metrics files and logs progress. Resume: a re-run with the
same workdir continues from the latest checkpoint bit-identically, after
checking that the checkpoints are of this width vector. NaN guard: a
non-finite loss stops training with `NonFiniteLossError` naming the step,
and no checkpoint with it behind is written. `workdir=None` trains in memory
only.

Modules, in the order a run uses them:

| module | holds |
|---|---|
| `sharding` | the mesh, the shardings, host <-> device transfers |
| `recipe` | SGD, weight decay, learning rate schedule, default loss, dtype |
| `step` | `TrainState` and `TrainStep` (init, jitted step, NaN record) |
| `batches` | the data order: batches of each step, per process |
| `length` | how long a run is: steps per epoch, total steps |
| `plan` | a run's batch sizes, steps, and when to log, evaluate, save |
| `evaluator` | the eval step and the evaluation over a split |
| `checkpoints` | structure check, restore or init, save (orbax) |
| `recalibration` | exact BN statistics for the current weights |
| `records` | metrics.jsonl, TensorBoard scalars, progress lines |
| `paths` | file names in the workdir |
| `loop` | `train_and_evaluate`: set-up, then the one `for step` loop |
| `seeds` | `train_and_evaluate_seeds`: the loop over `SeedsStep` (vmapped) |
"""
from wt_jax.util import lazy

# Each public name and the module that defines it, imported on first use:
# importing one module of this package (say `checkpoints`) does not import
# the others, nor what they import.
_EXPORTS = {
    'batch_sharding': 'wt_jax.train.sharding',
    'Callback': 'wt_jax.train.loop',
    'check_structure': 'wt_jax.train.checkpoints',
    'CheckpointMismatchError': 'wt_jax.errors',
    'compute_dtype': 'wt_jax.train.recipe',
    'cross_entropy_loss': 'wt_jax.train.recipe',
    'derive_train_config': 'wt_jax.train.recipe',
    'epoch_seed': 'wt_jax.train.batches',
    'evaluate_recalibrated': 'wt_jax.train.recalibration',
    'Evaluator': 'wt_jax.train.evaluator',
    'ExtraLoss': 'wt_jax.train.step',
    'ExtraParams': 'wt_jax.train.step',
    'global_batch': 'wt_jax.train.sharding',
    'learning_rate_schedule': 'wt_jax.train.recipe',
    'local_train_batches': 'wt_jax.train.batches',
    'LossFn': 'wt_jax.train.step',
    'make_mesh': 'wt_jax.train.sharding',
    'make_sgd': 'wt_jax.train.recipe',
    'maybe_initialize_distributed': 'wt_jax.train.sharding',
    'METRICS_FILE': 'wt_jax.train.paths',
    'NonFiniteLossError': 'wt_jax.errors',
    'peak_learning_rate': 'wt_jax.train.recipe',
    'recalibrate': 'wt_jax.train.recalibration',
    'replicate': 'wt_jax.train.sharding',
    'replicated': 'wt_jax.train.sharding',
    'SCHEDULES': 'wt_jax.train.recipe',
    'seeds_batch_sharding': 'wt_jax.train.sharding',
    'SeedsStep': 'wt_jax.train.seeds',
    'stacked_batch_sharding': 'wt_jax.train.sharding',
    'state_structure': 'wt_jax.train.checkpoints',
    'steps_per_epoch': 'wt_jax.train.batches',
    'STRUCTURE_FILE': 'wt_jax.train.paths',
    'to_host': 'wt_jax.train.sharding',
    'train_and_evaluate': 'wt_jax.train.loop',
    'train_and_evaluate_seeds': 'wt_jax.train.seeds',
    'TrainState': 'wt_jax.train.step',
    'TrainStep': 'wt_jax.train.step',
    'validate': 'wt_jax.train.recipe',
    'weight_decay_mask': 'wt_jax.train.recipe',
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy.face(__name__, _EXPORTS, globals())
