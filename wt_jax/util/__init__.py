"""Leaf helpers that know nothing of networks or training.

* `files`: atomic writes, local or remote paths.
* `console`: what a user sees (stage headers, one-line summaries,
  progress).
* `validation`: the one helper behind every config and argument check.
* `interrupts`: Ctrl-C and SIGTERM as `KeyboardInterrupt`, held back during
  a save.
* `fingerprint`: what a step was made from.
* `workdir`: every path inside a workdir, and its lock.
* `lazy`: a package face whose names are imported on first use.
"""
