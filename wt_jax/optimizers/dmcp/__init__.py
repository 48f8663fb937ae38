"""DMCP (Guo, Wang, Li, Yan, CVPR 2020): Differentiable Markov Channel Pruning.

A width optimizer: `optimize(config, problem, workdir) -> OptimizeResult`,
configured by `config.dmcp` (fields and defaults: `defaults.dmcp()`, checked
by `validate`). Our own implementation in JAX; the facts below are those of
the reference code (github.com/Zx55/dmcp, PyTorch), file by file.

The method, as the reference does it
------------------------------------
* Sub-groups (models/dmcp/alpha_op.py, `AlphaLayer._get_ch_indice`, with
  `width: [0.1, 1.0, 0.1]` in config/*/dmcp.yaml): a layer of C channels has
  (1.0 - 0.1) / 0.1 = 9 ordered sub-groups of int(0.1 x C) channels; the
  remaining C - 9 x int(0.1 C) (about 10%) are always kept (`alpha0` = 1).
  One alpha per sub-group, initialized to 0.
* Transitions (alpha_op.py, `prob_type: sigmoid` in every dmcp.yaml):
  P(keep sub-group j | j - 1 kept) = sigmoid(alpha_j); marginals
  m_j = cumprod (`get_marginal_prob`); E[channels] = min_ch + group_size x
  sum_j m_j (`expected_channel`).
* Architecture forward (alpha_op.py `forward`, dmcp_resnet.py,
  dmcp_mobilenet.py, with `alpha_training`): each sub-group's channels are
  multiplied by its marginal, after the BN (ResNet: before the ReLU;
  MobileNetV2: after it); the channels of a residual stream share one alpha
  (the projection block's; identity blocks reuse their input's), and a
  depthwise conv uses its expansion's.
* Expected FLOPs (dmcp_resnet.py / dmcp_mobilenet.py `expected_flops`,
  models/dmcp/utils.py `conv_compute_flops`): per conv
  k x k x H_out x W_out x E[c_in] x E[c_out] (depthwise: x E[c]), in MFLOPs.
* FLOPs loss (utils/loss_fn.py `flop_loss`, `floss_type: log_l1`,
  `flop_loss_weight: 0.1`, target from the command line `--flops`): two-sided
  log: log|E - t| below 0.95 t, 0 in [0.95 t, t), log(E - 0.95 t) above
  (a factor 0.1 inside the log when |E - t| > 200 MFLOPs changes the value
  only).
* Schedule (utils/tools.py `get_data_loader`, runner/dmcp_runner.py): the
  first half of the iterations trains the weights only (`arch.start_train =
  max_iter // 2`, the warm-up); then every iteration (`train_freq: 1`) does
  a weight step and then an architecture step on the same batch.
* Weight step (runner/us_runner.py `_train_one_batch`, dmcp.yaml
  `sample_type: [max, min, scheduled_random, scheduled_random]`): the
  sandwich rule with in-place distillation (KL at temperature 1 from the
  full network's detached output, no hard labels): the full, the smallest
  and 2 random sub-networks; 'scheduled_random' draws a random per-layer
  width with a probability starting at 1 and multiplied by 0.9999 every 10
  iterations, else samples the Markov chain (`direct_sampling`).
* Architecture step (dmcp_runner.py): the full network with marginal
  scaling, CE on the labels + the FLOPs loss, an SGD step of the alphas
  only (the weights' gradients are discarded).
* Learning rates (config/res18/dmcp.yaml, utils/tools.py, utils/
  lr_scheduler.py): weights SGD Nesterov momentum 0.9, lr 0.5 cosine to
  0.08, weight decay 1e-4 (none on BN and biases); alphas a separate SGD
  (same momentum, Nesterov, no weight decay), lr 0.5 held through the
  warm-up, then cosine to 0.1.
* Result (models/dmcp/utils.py `sample_model`, README: the retrain uses
  `model_sample/expected_ch`): "expected sampling", per layer
  round(E[channels] - 1e-4) channels (alpha_op.py `expected_sampling`); the
  direct samples it also draws are not used.

Ours
----
* `chain` (`Chain`, `make_chain`): the chain per unit of identity-tied
  groups (the reference's shared stream alphas), sub-groups of
  `group_fraction` (int(group_fraction x C), at least 1 channel) down to
  max(min_width, ceil(min_fraction x C)) channels; expected channels and the
  expected MACs through the layer graph `cost` uses (`graph.LayerGraph
  .macs`, the same closed form; MACs, no FC bias), masks, sampling, the
  result rule.
* `loss` (`make_dmcp_loss`): the weight step (AutoSlim's sandwich loss, its
  random draws DMCP's variant sampling) and the architecture step in one
  `train.LossFn`, inside the one jitted, sharded train step; the alphas are
  the params entry `params['dmcp']['alpha']` with their own optax SGD
  (`train.ExtraParams`). Both updates use the step's starting weights (the
  reference's architecture step sees the weights after that iteration's
  weight step: one step of lag). In the warm-up a `lax.cond` skips the
  architecture pass, except on CPU, where it runs and is zeroed (XLA:CPU
  runs a conditional's branch ~5x slower than the same ops outside one).
  The architecture pass's BN statistics are discarded; masks scale the BN
  output before the activation in both families (MobileNetV2's reference
  scales after ReLU6).
* `history` (`Exporter`, `train_costs`): the learned chain every
  `export_every` steps in history.json; the cost accounting.
* The FLOPs loss is in fractions of the start MACs, with the target
  `target_fraction` x start MACs; the weights' learning rate follows
  `config.train`'s schedule (cosine to 0) at `dmcp.lr`; the alphas' is
  absolute (not scaled by the batch size), as the reference's.

`optimize` trains in `workdir/train` (resumable from its checkpoints),
returns the width vector of the learned chain (a FLOPs match to `expand_to`
x the start MACs is the registry's), and measures the deciding net: that
width vector as a masked sub-network of the trained weights, on 'val' after
BN recalibration (`val_top1_recalibrated`; not charged: it decides nothing).
"""
from __future__ import annotations

from wt_jax.optimizers.dmcp.chain import Chain
from wt_jax.optimizers.dmcp.chain import chain_from_config
from wt_jax.optimizers.dmcp.chain import make_chain
from wt_jax.optimizers.dmcp.chain import sub_groups
from wt_jax.optimizers.dmcp.history import train_costs
from wt_jax.optimizers.dmcp.loss import arch_params
from wt_jax.optimizers.dmcp.loss import FixedMasks
from wt_jax.optimizers.dmcp.loss import flops_loss
from wt_jax.optimizers.dmcp.loss import make_dmcp_loss
from wt_jax.optimizers.dmcp.loss import PARAMS_ENTRY
from wt_jax.optimizers.dmcp.loss import skips_by_cond
from wt_jax.optimizers.dmcp.search import dmcp_train_config
from wt_jax.optimizers.dmcp.search import FIELDS
from wt_jax.optimizers.dmcp.search import optimize
from wt_jax.optimizers.dmcp.search import validate

__all__ = [
    'Chain', 'FIELDS', 'FixedMasks', 'PARAMS_ENTRY', 'arch_params',
    'chain_from_config',
    'dmcp_train_config', 'flops_loss', 'make_chain', 'make_dmcp_loss',
    'optimize', 'skips_by_cond', 'sub_groups', 'train_costs', 'validate',
]
