#!/usr/bin/env bash
# The check to run on a GPU machine before trusting acnet_jax there, within
# about 10 minutes; everything it prints goes into one file ($OUT/gpu_check.txt,
# OUT defaults to /tmp/gpu_check):
#   1. the numerical tests (blocks, fusion, train steps, models) on the GPU;
#   2. bitwise resume: a run killed during a save and resumed ends with the
#      same parameters as one without a break (with XLA's deterministic ops);
#   3. the benchmark of rc56 and resnet50, normal and acnet, float32 and
#      bfloat16 (train step, eval, fused deploy eval);
#   4. the training loop against the bare jitted step (rc8, batch 32);
#   5. one epoch of Cifar-quick ACNet on real CIFAR-10 images, if an image
#      folder is given (CIFAR10_DIR, split/class/ layout), through the real command.
# A failed section says so in the file (`(exit N ...)`) and the script goes on.
# The benchmarks' rows (acnet_jax.benchmarking.results) go to $OUT/results.
#
#   bash benchmarks/gpu_check.sh
#   BACKEND=cpu SMOKE=1 bash benchmarks/gpu_check.sh   # the same at toy sizes, to check the script
#
# JAX with CUDA: the machine's own if it sees a GPU, else the project's pinned
# CUDA build, `pip install -e '.[cuda]'`. Wheels put in .whl/ (for a machine
# without a package index) are installed first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
log="$OUT/gpu_check.txt"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ -d .whl ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
backend=${BACKEND:-gpu}
if [ "$backend" = gpu ] && ! "$python" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
  "$python" -m pip install -q -e '.[cuda]'
fi
"$python" -c "import pytest" 2>/dev/null || "$python" -m pip install -q -e '.[test]'
# One process per test session holding the GPU: no preallocation of its memory.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# Sizes: the GPU's, or toy ones (SMOKE=1) with 4x each section's time limit:
# a slow 2-core CPU beside other tests compiles bfloat16 steps for minutes.
slack=1
if [ -n "${SMOKE:-}" ]; then
  slack=4
  rc56="--model=rc8 --batch_size=8 --eval_batch_size=16 --steps=1 --warmup=1 --train_examples=64 --matmul_size=256"
  resnet50="--model=resnet18 --image_size=32 --batch_size=4 --eval_batch_size=4 --steps=1 --warmup=1 --matmul_size=256"
  loop="--model=rc8 --batch_size=8 --steps=250"
  epochs="--config.max_train_examples=256 --config.batch_size=32 --config.eval_batch_size=500"
  numerics="-m not(slow)and(not(full)) tests/test_fusion.py"
else
  rc56="--model=rc56 --batch_size=128 --eval_batch_size=500 --steps=20 --warmup=5"
  resnet50="--model=resnet50 --image_size=224 --batch_size=128 --eval_batch_size=256 --steps=10 --warmup=3"
  loop="--model=rc8 --batch_size=32 --steps=2000"
  epochs=""
  numerics="-m not(slow) tests/blocks tests/test_fusion.py tests/training/test_steps.py tests/models"
fi
pytest="$python -m pytest -p no:cacheprovider -q -n0 -o addopts="

section() { echo; echo "== $* ($(date +%H:%M:%S))"; } >>"$log"
run() {
  local limit=$(($1 * slack))
  timeout "$limit" "${@:2}" >>"$log" 2>&1 || echo "(exit $? after at most $limit s)" >>"$log"
}

{ echo "gpu_check $(git rev-parse --short HEAD 2>/dev/null) $(date -u)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$python" -c "import jax; print('jax', jax.__version__, jax.devices())"; } >>"$log" 2>&1

section the numerical tests on $backend
run 300 $pytest $numerics
section bitwise resume after a kill during a save
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_deterministic_ops=true" \
  run 240 $pytest -m full tests/commands/test_main.py -k "kill_9_during_the_save_of_step_n"
bench="$python -m acnet_jax.benchmark --backend=$backend --dtypes=float32,bfloat16 --acb_impls=branches --results_dir=$OUT/results"
section rc56: train step, eval, fused eval
run 150 $bench $rc56 --output="$OUT/rc56.json"
section resnet50 at 224 px
run 150 $bench $resnet50 --output="$OUT/resnet50.json"
section the loop against the bare step
run 60 "$python" -m acnet_jax.benchmark --backend=$backend --loop $loop --output="$OUT/loop.json" \
  --results_dir="$OUT/results"
if [ -n "${CIFAR10_DIR:-}" ]; then
  section Cifar-quick ACNet, one epoch of real CIFAR-10 '(390 steps)'
  rm -rf /tmp/gpu_check_run
  run 150 "$python" -m acnet_jax.main --config=configs/cfqkbnc_acnet.py --workdir=/tmp/gpu_check_run \
    --config.dataset=image_folder --config.data_dir="$CIFAR10_DIR" --config.num_epochs=1 \
    --config.log_every_steps=100 $epochs
  grep train_steps_per_s /tmp/gpu_check_run/metrics.jsonl | tail -n 2 >>"$log" 2>&1
  cat /tmp/gpu_check_run/eval.json >>"$log" 2>&1
fi
section done
cat "$log"
