"""The wiring: the stages of a run and the command line's config.

* `stages`: the stage table (optimize, transfer, train the arms, report),
  which stage needs which, and each stage as a function of a `Run`.
* `pipeline`: validation before any work, and the run.
* `reuse`: reuse, resume or recompute each step (fingerprints, manifests).
* `cli_args`: the config file and its overrides, before absl parses them.
"""
