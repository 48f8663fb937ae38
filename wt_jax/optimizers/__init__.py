"""Width optimizers: `optimize(config, problem, workdir) -> OptimizeResult`.

* `registry`: every optimizer by name (`register`, public as
  `wt_jax.register_optimizer`), its config check, the stored result, the
  FLOPs match to `expand_to`.
* `result`: `OptimizeResult`, what every optimizer returns.
* `morphnet`: the FLOPs regularizer on BN scales.
* `autoslim/`, `dmcp/`: the two slimmable-network searches; what they share,
  which neither owns: `slim_space` (the sub-networks: first k channels per
  unit of tied groups, as masks) and `sandwich` (the sandwich rule with
  in-place distillation).
"""
