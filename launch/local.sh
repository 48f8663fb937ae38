#!/usr/bin/env bash
# Local run on this machine's CPU (or its one GPU, if jax[cuda] is installed).
#
# What it does: runs the width-transfer pipeline for one config into one
# workdir; a re-run with the same workdir resumes where it stopped.
# Assumes: `pip install -e .` done in the active Python environment, and the
# current directory is the repository root.
# On CPU, wt_jax turns XLA's YNN convolution fusions off by default
# (see wt_jax/__init__.py); set WT_JAX_KEEP_XLA_FLAGS=1 to keep XLA's default.
#
# Usage: launch/local.sh [CONFIG] [WORKDIR] [extra --config.* flags...]
set -euo pipefail
config=${1:-configs/quickstart.py}
workdir=${2:-workdir/$(basename "${config%.py}")}
shift $(( $# > 2 ? 2 : $# ))
exec python -m wt_jax.main --config="$config" --workdir="$workdir" "$@"
