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
#   4. deletes the TPU VM (set KEEP=1 to keep it)
# Assumes: gcloud is authenticated with a project that has TPU quota; the
# TFDS data (e.g. imagenet2012) is prepared in a GCS bucket given as
# TFDS_DATA_DIR=gs://...; WORKDIR is a gs:// path so all hosts share it.
#
# Usage: TPU_NAME=wt ZONE=us-central2-b ACCEL=v4-32 \
#        TFDS_DATA_DIR=gs://bucket/tfds WORKDIR=gs://bucket/wt/resnet18 \
#        launch/tpu_pod.sh configs/resnet18.py [extra --config.* flags...]
set -euo pipefail
config=${1:?config file}
shift
: "${TPU_NAME:?}" "${ZONE:?}" "${ACCEL:?e.g. v4-32}" "${TFDS_DATA_DIR:?gs://...}" "${WORKDIR:?gs://...}"
VERSION=${VERSION:-tpu-ubuntu2204-base}

gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" \
  --accelerator-type="$ACCEL" --version="$VERSION"
trap '[ "${KEEP:-0}" = 1 ] || gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" --quiet' EXIT

tar czf /tmp/wt_jax_src.tgz --exclude=.git --exclude='workdir*' --exclude=.venv .
gcloud compute tpus tpu-vm scp /tmp/wt_jax_src.tgz "$TPU_NAME":~/ --zone="$ZONE" --worker=all
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  set -e; mkdir -p ~/wt_jax && tar xzf ~/wt_jax_src.tgz -C ~/wt_jax && cd ~/wt_jax &&
  pip install -q -U 'jax[tpu]>=0.10,<0.11' && pip install -q -e ."

extra=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  cd ~/wt_jax && TFDS_DATA_DIR=$TFDS_DATA_DIR WT_JAX_DISTRIBUTED=1 \
  python -m wt_jax.main --config=$config --workdir=$WORKDIR \
    --config.data.data_dir=$TFDS_DATA_DIR $extra"
