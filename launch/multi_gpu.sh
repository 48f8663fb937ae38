#!/usr/bin/env bash
# Single-host, multi-GPU run: one process drives all local GPUs.
#
# What it does: runs the pipeline with the batch sharded over every visible
# GPU (a device Mesh with a 'data' axis; params replicated). Nothing else
# changes: the same config and command as a local run.
# Assumes: a CUDA build of jax on the host, e.g.
#   pip install -U "jax[cuda12]>=0.10,<0.11" && pip install -e .
# the current directory is the repository root, and train.batch_size is a
# multiple of the number of GPUs. TFDS datasets are read from TFDS_DATA_DIR
# (prepare them first, e.g. `tfds build imagenet2012 --manual_dir=...`).
#
# Usage: launch/multi_gpu.sh [--dry-run] CONFIG WORKDIR [--config.* ...]
# --dry-run prints the commands, one per line, and runs none.
set -euo pipefail
DRY=0
if [ "${1:-}" = --dry-run ]; then DRY=1; shift; fi
config=${1:?config file}
workdir=${2:?workdir}
shift 2
run() {  # run, or with --dry-run print, one command
  if [ "$DRY" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}
# Let XLA take GPU memory as needed rather than 75% up front; TF (data only)
# never sees the GPUs (wt_jax/data/ hides them).
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
run nvidia-smi -L || true
run python -m wt_jax.main --config="$config" --workdir="$workdir" "$@"
