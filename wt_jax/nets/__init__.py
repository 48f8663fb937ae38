"""The network: width vectors, networks by name, their layer graph and cost.

* `widths`: `Widths`, one channel count per group; `uniform`, multipliers,
  rounding, JSON.
* `architectures`: a name (and depth) to an `Arch`; its groups, uniform
  widths, layer graph and identity ties, the same for every network.
* `custom_archs`: the registry of networks (`register`, public as
  `wt_jax.register_arch`); `families`: the built-in ResNet and MobileNetV2
  modules, registered there like a user's network.
* `tracing` (with `trace_labels`, `trace_checks`): a network's layer graph,
  found by tracing its Flax module.
* `graph`: `Layer` and the one compiled `LayerGraph`; `cost`: MACs, params.
* `models`: `build_model(widths)`, the Flax module with AutoSlim's masks.
"""
