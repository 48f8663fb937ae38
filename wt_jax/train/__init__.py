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
from wt_jax.errors import CheckpointMismatchError
from wt_jax.errors import NonFiniteLossError
from wt_jax.train.batches import epoch_seed
from wt_jax.train.batches import local_train_batches
from wt_jax.train.batches import steps_per_epoch
from wt_jax.train.checkpoints import check_structure
from wt_jax.train.checkpoints import state_structure
from wt_jax.train.evaluator import Evaluator
from wt_jax.train.loop import Callback
from wt_jax.train.loop import train_and_evaluate
from wt_jax.train.paths import METRICS_FILE
from wt_jax.train.paths import STRUCTURE_FILE
from wt_jax.train.recalibration import evaluate_recalibrated
from wt_jax.train.recalibration import recalibrate
from wt_jax.train.recipe import compute_dtype
from wt_jax.train.recipe import cross_entropy_loss
from wt_jax.train.recipe import derive_train_config
from wt_jax.train.recipe import learning_rate_schedule
from wt_jax.train.recipe import make_sgd
from wt_jax.train.recipe import peak_learning_rate
from wt_jax.train.recipe import SCHEDULES
from wt_jax.train.recipe import validate
from wt_jax.train.recipe import weight_decay_mask
from wt_jax.train.seeds import SeedsStep
from wt_jax.train.seeds import train_and_evaluate_seeds
from wt_jax.train.sharding import batch_sharding
from wt_jax.train.sharding import global_batch
from wt_jax.train.sharding import make_mesh
from wt_jax.train.sharding import maybe_initialize_distributed
from wt_jax.train.sharding import replicate
from wt_jax.train.sharding import replicated
from wt_jax.train.sharding import seeds_batch_sharding
from wt_jax.train.sharding import to_host
from wt_jax.train.step import ExtraLoss
from wt_jax.train.step import ExtraParams
from wt_jax.train.step import LossFn
from wt_jax.train.step import TrainState
from wt_jax.train.step import TrainStep

__all__ = [
    'Callback', 'CheckpointMismatchError', 'Evaluator',
    'ExtraLoss', 'ExtraParams', 'LossFn', 'METRICS_FILE',
    'NonFiniteLossError', 'SCHEDULES',
    'STRUCTURE_FILE', 'TrainState', 'TrainStep', 'batch_sharding',
    'check_structure', 'compute_dtype', 'cross_entropy_loss',
    'derive_train_config', 'epoch_seed', 'evaluate_recalibrated',
    'global_batch',
    'learning_rate_schedule', 'local_train_batches', 'make_mesh', 'make_sgd',
    'maybe_initialize_distributed', 'peak_learning_rate', 'recalibrate',
    'replicate',
    'replicated', 'SeedsStep', 'seeds_batch_sharding', 'state_structure',
    'steps_per_epoch',
    'to_host', 'train_and_evaluate', 'train_and_evaluate_seeds', 'validate',
    'weight_decay_mask',
]
