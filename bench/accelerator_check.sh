#!/usr/bin/env bash
# The prepared accelerator check: one command, about 5 minutes on one GPU.
# It installs nothing and downloads nothing: it uses the JAX it finds.
#
#   bench/accelerator_check.sh [--wheels=DIR] [--cifar=PATH] [--out=DIR]
#       on a GPU/TPU machine -> results/gpu.md (the pieces in results/gpu/)
#   bench/accelerator_check.sh --cpu-dry-run
#       the same steps, tiny, on CPU, into a temporary folder (minutes)
#
# Options and environment:
#   --wheels=DIR  a folder of pure-Python wheels for packages this machine
#                 lacks (a JAX-only GPU image had no ml_collections). They are
#                 unpacked with `pip install --no-index --no-deps --target`
#                 into a temporary folder put on PYTHONPATH (nothing is
#                 downloaded; the environment is not changed). Make the folder
#                 on a machine with internet:
#                   pip download --no-deps -d wheels ml_collections==1.1.0
#                 (and any other missing pure-Python requirement the versions
#                 step names), then copy it over with the checkout.
#   --cifar=PATH  CIFAR-10 JPEGs: a folder with train/ and test/, the zip
#                 (default ../shared/data/cifar10_jpeg.zip beside the
#                 repository), or the packed file of ../shared/tools/
#                 cifar_pack.py (`python3 cifar_pack.py pack ZIP cifar.npz`,
#                 56 MB: fits a checkout sent to a GPU machine; keep it in an
#                 ignored folder such as .whl/ or tmp/). A zip or packed file
#                 is unpacked once into $CIFAR_CACHE (/tmp/wt_cifar10_jpeg).
#   --out=DIR     where the pieces and gpu.md go (default results/gpu and
#                 results/gpu.md; the dry run: a temporary folder).
#   PYTHON        the interpreter (default python3), e.g. PYTHON=.venv/bin/python.
#                 The repository need not be pip-installed: it is put on
#                 PYTHONPATH.
#   PEAK_TFLOPS   the chip's peak for MFU (default 989: H100/H200 SXM dense
#                 bf16; e.g. 1979 for B200, 197 for a TPU v5e chip).
#   CHECK_DEADLINE_S  the wall-time budget (default 300; dry run 1800): a step
#                 is cut short (timeout) once it is spent, later ones skipped.
#
# Steps (each one's output is kept in the output folder; a failing step is
# recorded and the next one still runs; the exit code is 1 if any failed):
#   1. versions: python, jax, jaxlib, flax, optax, orbax-checkpoint, chex,
#      numpy, ml_collections, ..., whether tensorflow / tensorflow_datasets /
#      clu are importable, the devices (and nvidia-smi). Stops here if a core
#      requirement is missing or, on an accelerator run, JAX sees only a CPU.
#   2. tests that exercise the device path on ONE chip: the learning-rate
#      schedule, a digits training run with its outputs, bfloat16, the NaN and
#      huge-learning-rate guards, MorphNet's regularizer (closed form, gradient,
#      all-alive cost), AutoSlim's masked sub-networks, sandwich loss and
#      optimization on digits. None assumes 8 devices (the 8-device tests use
#      XLA's host device count, a CPU-only flag) and, without TensorFlow, a
#      test that fails only by importing it is reported as skipped
#      (bench/skip_without_tf.py). On an accelerator the tests run with
#      JAX_DEFAULT_MATMUL_PRECISION=highest: their float32 tolerances were
#      set on CPU, not for TF32.
#   3. ResNet-18 at 224px, 1000 classes, bfloat16, batch 256: our train step
#      against the plain Flax reference (bench/train_throughput.py, same-run
#      ratio) and MFU from the ANALYTIC work, 6 x MACs x batch per step (MACs
#      from wt_jax.cost) / step time / PEAK_TFLOPS; XLA's own count
#      (cost_analysis, which on GPUs leaves out the cuDNN convolutions) is
#      shown beside it.
#   4. CIFAR-10 ResNet-20 through the CLI: MorphNet on the compound
#      projection, transfer, then the uniform and the transferred network,
#      3 seeds, 2 epochs, batch 128, with the defaults an accelerator gets:
#      the seeds one after another, the training split on the device
#      (data.placement='auto'), 16 steps per jitted call
#      (train.steps_per_call=0)
#      (the workdir is a temporary folder; results, timing and final.json
#      are copied to the output folder).
#   5. the accuracy grid's accelerator preset (`experiments/accuracy_grid.py
#      --budget=gpu --plan`) at step 4's per-seed training rate.
#   6. gpu.md: what each step measured, the versions, the wall time.
# The input pipeline benchmark (bench/input_pipeline.py) is not a step: it
# measures tf.data, which a JAX-only accelerator machine does not have.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
DRY=0; WHEELS=''; CIFAR_SRC=''; OUT=''
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) DRY=1 ;;
    --wheels=*) WHEELS=${arg#--wheels=} ;;
    --cifar=*) CIFAR_SRC=${arg#--cifar=} ;;
    --out=*) OUT=${arg#--out=} ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
PEAK=${PEAK_TFLOPS:-989}
if [ -z "$OUT" ]; then
  if [ "$DRY" = 1 ]; then OUT=$(mktemp -d /tmp/wt_accel_dry.XXXXXX); MD=$OUT/gpu.md
  else OUT=results/gpu; MD=results/gpu.md; fi
else
  MD=$OUT/gpu.md
fi
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) && MD=$(cd "$(dirname "$MD")" && pwd)/$(basename "$MD")
: > "$OUT/steps.tsv"
# The budget, and a scale on each step's own cap (a shared CPU is slower).
if [ "$DRY" = 1 ]; then DEADLINE=${CHECK_DEADLINE_S:-1800}; CAP_SCALE=4
else DEADLINE=${CHECK_DEADLINE_S:-300}; CAP_SCALE=1; fi
echo "accelerator check -> $OUT (dry run: $DRY, budget ${DEADLINE} s)"
t0=$(date +%s)

# The environment of every step: the repository (and the wheels) importable,
# GPU memory taken as needed (two benchmark processes share the chip), one
# chip. Nothing here is installed into $PY's environment.
SITE=''
if [ -n "$WHEELS" ]; then
  SITE=$(mktemp -d /tmp/wt_accel_site.XXXXXX)
  shopt -s nullglob; whls=("$WHEELS"/*.whl); shopt -u nullglob
  if [ ${#whls[@]} = 0 ]; then echo "--wheels=$WHEELS: no .whl files" >&2; exit 2; fi
  echo "wheels: ${whls[*]##*/} -> $SITE"
  "$PY" -m pip install -q --no-index --no-deps --disable-pip-version-check \
    --target "$SITE" "${whls[@]}" || { echo "pip could not unpack the wheels" >&2; exit 2; }
fi
export PYTHONPATH="${SITE:+$SITE:}$REPO${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
if [ "$DRY" = 1 ]; then
  export JAX_PLATFORMS=cpu
else
  export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}  # one GPU; tests hide GPUs without it
fi

FAILED=0
# step NAME CAP_SECONDS CMD...: runs CMD with its output in $OUT/NAME.log,
# cut at CAP_SECONDS (x CAP_SCALE) or at what is left of the budget; records
# rc and seconds in $OUT/steps.tsv.
step() {
  local name=$1 cap=$(( $2 * CAP_SCALE )); shift 2
  local left=$(( DEADLINE - ($(date +%s) - t0) ))
  local limit=$(( left < cap ? left : cap ))
  if [ "$limit" -lt 15 ]; then
    printf '%s\tskip\t0\tbudget spent\n' "$name" >> "$OUT/steps.tsv"
    echo "[$name] skipped: budget spent"; FAILED=1; return 1
  fi
  echo "[$name] started (at most ${limit} s)"
  local s=$(date +%s) rc
  if command -v timeout > /dev/null; then
    timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1; rc=$?
  else
    "$@" > "$OUT/$name.log" 2>&1; rc=$?
  fi
  local note=''
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then note="after ${limit} s"; fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - s ))" "$note" >> "$OUT/steps.tsv"
  echo "[$name] exit $rc in $(( $(date +%s) - s )) s"
  if [ "$rc" != 0 ]; then FAILED=1; tail -5 "$OUT/$name.log" | sed "s/^/[$name]   /"; fi
  return "$rc"
}

summary() {
  local commit
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if ! git diff --quiet HEAD 2>/dev/null; then commit="$commit + uncommitted changes"; fi
  "$PY" bench/accelerator_parts.py summary "$OUT" "$MD" --seconds=$(( $(date +%s) - t0 )) \
    $([ "$DRY" = 1 ] && echo --dry) --date="$(date -u '+%Y-%m-%d %H:%M UTC')" \
    --commit="$commit" --tests_selection="${TESTS[*]} -k \"$SELECT\"" \
    --command="bench/accelerator_check.sh $*"
}

# The tests of the device path (none needs 8 devices or TensorFlow).
TESTS=(tests/test_train.py tests/test_morphnet.py tests/test_autoslim.py)
SELECT="closed_form or digits or bfloat16 or nan or huge or gradient or all_alive or masked or sandwich_loss"

# 1. Versions and devices.
expect=$([ "$DRY" = 1 ] || echo --expect_accelerator)
if ! step versions 120 "$PY" bench/accelerator_parts.py versions "$OUT" $expect; then
  cat "$OUT/versions.log" >&2
  summary "$@"; exit 2
fi
cat "$OUT/versions.log"

# 2. The tests.
TENV=(PYTHONPATH="$REPO/bench:$PYTHONPATH")
if [ "$DRY" = 0 ]; then TENV+=(JAX_DEFAULT_MATMUL_PRECISION=highest); fi
step tests 120 env "${TENV[@]}" "$PY" -m pytest -q -n 0 -rfEs -p no:cacheprovider \
  -p skip_without_tf --durations=8 "${TESTS[@]}" -k "$SELECT"

# 3. ResNet-18 224 bf16: our step vs the reference, MFU (WT_BENCH_*: bench/contenders.py).
if [ "$DRY" = 1 ]; then TP=(--archs=resnet18:0.125 --batch=8 --rounds=2 --steps=1)
else TP=(--archs=resnet18:1.0 --batch=256 --rounds=5 --steps=10); fi
step throughput 150 env WT_BENCH_RESOLUTION=224 WT_BENCH_CLASSES=1000 \
  "$PY" bench/train_throughput.py "${TP[@]}" --contenders=ours_bf16,ref_bf16 \
  --no_torch --peak_tflops="$PEAK" --out="$OUT/throughput.md" --json="$OUT/throughput.json"

# 4. CIFAR-10 ResNet-20 through the CLI: uniform vs compound-transferred, 3 seeds.
if [ -z "$CIFAR_SRC" ] && [ -e "$REPO/../shared/data/cifar10_jpeg.zip" ]; then
  CIFAR_SRC=$REPO/../shared/data/cifar10_jpeg.zip
fi
if [ "$DRY" = 1 ]; then
  # Tiny: 4 steps, 5% of the images, half width, 16px (the test-set
  # evaluation of 3 seeds x 2 arms is most of the time on a CPU).
  RUN=(--config.train.num_steps=4 --config.morphnet.num_steps=4
       --config.data.sample_fraction=0.05 --config.train.batch_size=32
       --config.train.eval_batch_size=500 --config.width_mult=0.5
       --config.data.resolution=16 --config.projection.resolution=8)
else
  RUN=(--config.train.epochs=2 --config.morphnet.epochs=2 --config.train.batch_size=128)
fi
if [ -n "$CIFAR_SRC" ]; then
  step cifar10 180 "$PY" bench/accelerator_parts.py cifar_run "$CIFAR_SRC" \
    "${CIFAR_CACHE:-/tmp/wt_cifar10_jpeg}" "$OUT" -- "${RUN[@]}"
else
  printf 'cifar10\tskip\t0\tno CIFAR-10: pass --cifar=PATH\n' >> "$OUT/steps.tsv"
  echo "[cifar10] skipped: no CIFAR-10 (pass --cifar=PATH)"; FAILED=1
fi

# 5. The accuracy grid's accelerator preset at step 4's per-seed training rate.
FINAL=$OUT/cifar10/train/uniform/seed_0/final.json
if [ -f "$FINAL" ]; then
  RATE=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['img_per_s'])" "$FINAL")
  step plan 60 sh -c '"$0" experiments/accuracy_grid.py --budget=gpu --plan --img_per_s="$1" > "$2"' \
    "$PY" "$RATE" "$OUT/plan.md"
fi

# 6. The summary.
summary "$@"
echo "wall time: $(( $(date +%s) - t0 )) s; failed steps: $FAILED"
exit $FAILED
