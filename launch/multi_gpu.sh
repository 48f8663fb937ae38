#!/usr/bin/env bash
# Single-host, multi-GPU run: one process drives all local GPUs.
#
# What it does: runs the pipeline with the batch sharded over every visible
# GPU (a device Mesh with a 'data' axis; params replicated). Nothing else
# changes: the same config and command as a local run.
# Assumes: a CUDA build of jax on the host (jax 0.11 needs Python >= 3.12,
# jax 0.10 Python >= 3.11), e.g.
#   pip install -U "jax[cuda13]>=0.10,<0.12" && pip install -e '.[tfds]'
# (CUDA 13 wheels need an NVIDIA driver >= 580, as on current H100/H200/B200
# images; with an older driver, `nvidia-smi` showing CUDA 12.x, use
# "jax[cuda12]>=0.10,<0.12" instead). With no network, a machine that has
# JAX already needs nothing installed: see README ("On a GPU or TPU machine
# that has JAX but nothing else").
# Also: the current directory is the repository root, train.batch_size a
# multiple of the number of GPUs. TFDS datasets are read from TFDS_DATA_DIR
# (prepare them first, e.g. `tfds build imagenet2012 --manual_dir=...`); they
# need the `tfds` extra (TensorFlow + TFDS; `pip install -e .` without it is
# enough for `folder:` and `digits` data).
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
