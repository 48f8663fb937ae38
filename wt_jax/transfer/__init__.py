"""The transfer problem and its two array steps around the optimizer.

* `problem`: the `Problem` value (widths, data, resolution, classes,
  training examples), from a config.
* `projection`: `project(problem, knobs) -> Problem` (narrower, shallower,
  fewer and smaller images) and the analytic overhead.
* `extrapolate`: dimension, depth (layer stacking) and FLOPs matching of the
  optimized multipliers back onto the original network.
"""
