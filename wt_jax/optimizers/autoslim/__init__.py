"""AutoSlim (Yu & Huang 2019): slimmable training, then greedy slimming.

A width optimizer: `optimize(config, problem, workdir) -> OptimizeResult`,
configured by `config.autoslim` (fields and defaults: `defaults.autoslim()`,
checked by `validate`). Both phases work on the problem's full widths (the
starting `Widths`, `problem.widths`):

1. **Slimmable training** (`sandwich`: `make_sandwich_loss`, run by
   `train.train_and_evaluate` as its `loss_fn`, in `workdir/train`). One set
   of weights serves every narrower sub-network of the slimming space
   (`space`: a sub-network keeps the first k channels of each group, on a
   grid per unit of tied groups, implemented with channel masks). Each step
   trains the full, the smallest and `num_random` random widths (the
   sandwich rule, with in-place distillation).

2. **Greedy slimming** (`slimming`: `greedy_slim`). From the full width,
   remove one grid step from the unit whose removal keeps the best val
   top-1, until the MACs reach the target. Each candidate's BN statistics
   are recalibrated on training batches, then it is scored on the held-out
   'val' split, many candidates per jitted, vmapped call (`evaluator`:
   `CandidateEvaluator`). The path goes to `history.json`; a re-run resumes
   training from its checkpoints and slimming from that history.

`optimize` returns the slimmed widths (`details['slimmed_widths']` too); a
FLOPs match to `expand_to` x the full MACs is the registry's, not this
package's.

Cost accounting (`OptimizeResult.train_macs`)
---------------------------------------------
In MAC x examples, the unit of MorphNet's count: training is
`cost.TRAIN_MACS_FACTOR` (3) x forward MACs per example, forward-only
evaluation (BN calibration and val evaluation) 1 x. `train_macs` counts each
sub-network at *its own* MACs (the analytic cost of the algorithm, as if each
width ran as a narrower network): per training example 3 x (MACs(full) +
MACs(smallest) + num_random x E[MACs(random)]), the expectation taken in
closed form over the sampling distribution (the draws live inside the jitted
step; the realized sum per step, relative to the full MACs, is logged as the
train metric `sandwich_macs`), plus, per candidate evaluation, MACs(candidate)
x (calibration + val examples). What the masked implementation actually
executes is every pass at the full width (and the padding rows of the last
candidate chunk); that count is in `details` as `train_macs_executed`.
Sub-network MACs are those of the masked structure (the full network's layer
graph with fewer channels), which equals `cost.macs` of the candidate's
`Widths` for every candidate greedy slimming evaluates (see the shortcut rule
in `slimming`). The training loop's own final full-width evaluation on 'val'
is not counted, as for MorphNet.
"""
from __future__ import annotations

from wt_jax.optimizers.autoslim.evaluator import BN_MOMENTUM
from wt_jax.optimizers.autoslim.evaluator import CandidateEvaluator
from wt_jax.optimizers.autoslim.search import FIELDS
from wt_jax.optimizers.autoslim.search import optimize
from wt_jax.optimizers.autoslim.search import validate
from wt_jax.optimizers.autoslim.slimming import candidates
from wt_jax.optimizers.autoslim.slimming import greedy_slim
from wt_jax.optimizers.autoslim.slimming import sample_batches
from wt_jax.optimizers.autoslim.slimming import take_batches
from wt_jax.optimizers.autoslim.slimming import target_of
from wt_jax.optimizers.sandwich import make_sandwich_loss
from wt_jax.optimizers.sandwich import slimmable_train_config
from wt_jax.optimizers.sandwich import train_macs_per_example
from wt_jax.optimizers.slim_space import make_space
from wt_jax.optimizers.slim_space import SlimSpace
from wt_jax.optimizers.slim_space import space_from_config
from wt_jax.optimizers.slim_space import width_grid

__all__ = [
    'BN_MOMENTUM', 'CandidateEvaluator', 'FIELDS', 'SlimSpace',
    'candidates', 'greedy_slim', 'make_sandwich_loss', 'make_space',
    'optimize', 'sample_batches', 'slimmable_train_config',
    'space_from_config', 'take_batches', 'target_of', 'train_macs_per_example',
    'validate', 'width_grid',
]
