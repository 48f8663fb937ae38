#!/usr/bin/env bash
# Cloud TPU VM pod: create, install, run on all workers, delete.
#
# What it does, in order:
#   1. gcloud compute tpus tpu-vm create   (a TPU VM pod slice)
#   2. copies this repository to every worker and installs it with jax[tpu]
#   3. runs the same command on all workers (--worker=all); each process
#      calls jax.distributed.initialize() (WT_JAX_DISTRIBUTED=1), reads its
#      own shard of the data, and the batch is sharded over all chips of all
#      hosts; only process 0 writes results, orbax writes checkpoints
#   4. deletes the TPU VM (set KEEP=1 to keep it), also when a step fails
# Assumes: gcloud is authenticated with a project that has TPU quota; the
# TFDS data (e.g. imagenet2012) is prepared in a GCS bucket given as
# TFDS_DATA_DIR=gs://...; WORKDIR is a gs:// path so all hosts share it;
# the image (VERSION) has a python3 that jax supports (>= 3.11 for jax 0.10,
# >= 3.12 for jax 0.11; Ubuntu 22.04's own python3 is 3.10). Reading TFDS
# data needs TensorFlow: the install step adds the `tfds` extra.
#
# Usage: TPU_NAME=wt ZONE=us-central2-b ACCEL=v4-32 \
#        TFDS_DATA_DIR=gs://bucket/tfds WORKDIR=gs://bucket/wt/resnet18 \
#        launch/tpu_pod.sh [--dry-run] configs/resnet18.py [--config.* ...]
# --dry-run prints every command, one per line, and runs none (no gcloud).
set -euo pipefail
DRY=0
if [ "${1:-}" = --dry-run ]; then DRY=1; shift; fi
config=${1:?config file}
shift
: "${TPU_NAME:?}" "${ZONE:?}" "${ACCEL:?e.g. v4-32}" "${TFDS_DATA_DIR:?gs://...}" "${WORKDIR:?gs://...}"
VERSION=${VERSION:-tpu-ubuntu2204-base}

run() {  # run, or with --dry-run print, one command
  if [ "$DRY" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}
cleanup() {
  [ "${KEEP:-0}" = 1 ] || run gcloud compute tpus tpu-vm delete "$TPU_NAME" \
    --zone="$ZONE" --quiet
}

run gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" \
  --accelerator-type="$ACCEL" --version="$VERSION"
trap cleanup EXIT

run tar czf /tmp/wt_jax_src.tgz --exclude=.git --exclude='workdir*' --exclude=.venv .
run gcloud compute tpus tpu-vm scp /tmp/wt_jax_src.tgz "$TPU_NAME":~/ --zone="$ZONE" --worker=all
install="set -e; mkdir -p ~/wt_jax && tar xzf ~/wt_jax_src.tgz -C ~/wt_jax"
install+=" && cd ~/wt_jax && pip install -q -U 'jax[tpu]>=0.10,<0.12'"
install+=" && pip install -q -e '.[tfds]'"
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all \
  --command="$install"

extra=""
for arg in "$@"; do extra+=" $(printf '%q' "$arg")"; done
job="cd ~/wt_jax && TFDS_DATA_DIR=$TFDS_DATA_DIR WT_JAX_DISTRIBUTED=1"
job+=" python -m wt_jax.main --config=$config --workdir=$WORKDIR"
job+=" --config.data.data_dir=$TFDS_DATA_DIR$extra"
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all \
  --command="$job"
