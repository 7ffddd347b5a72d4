#!/usr/bin/env bash
# Everything the GPU issue measures, in ONE call on a lent GPU machine (device tool `run`):
#   carry [".whl/one"], command: bash benchmarks/gpu_session.sh [probe|full|final]
# final: for a short lease: the train benchmark alone first (its ratio must not share the machine),
# then the quick demo in the background beside the GPU tests and the projection benchmark.
# Prepare the carry here first: bash ../shared/tools/gpu-wheels.sh && python3 benchmarks/gpu_wheels.py
# Each step has its own time limit so one slow step cannot eat the lease; logs and JSON go to $OUT.
set -uo pipefail
MODE=${1:-full}
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/one/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 WANDB_MODE=disabled RAY_DEDUP_LOGS=0
step() {  # step NAME SECONDS CMD...: run with a limit, keep its log, print one status line
  local name=$1 limit=$2; shift 2
  local s=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  echo "== $name rc=$rc $(( $(date +%s) - s )) s"; tail -n 4 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, ray; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ray', ray.__version__)"
if [ "$MODE" = final ]; then
  step train 150 python3 benchmarks/train_throughput.py --device cuda --no-extras --rows 1048576 --epochs 2 \
    --out "$OUT/train_throughput.json"
  ( s=$(date +%s); timeout 250 python3 -m crossadapt.cli demo --quick --out /tmp/demo \
      --set resources.use_gpu=true > "$OUT/demo.log" 2>&1; echo "rc=$? wall=$(( $(date +%s) - s )) s" > "$OUT/demo_wall.txt"
    cp /tmp/demo/results.json "$OUT/demo_results.json" 2>/dev/null ) &
  step pytest_gpu 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
  step projection 90 python3 benchmarks/projection.py --device cuda --actors 1 --rows 10000000 --cpu-rows 2000000 --out "$OUT/projection.json"
  wait; echo "== demo $(cat "$OUT/demo_wall.txt")"; tail -n 4 "$OUT/demo.log"
  echo "total $(( $(date +%s) - t0 )) s"; exit 0
fi
step pytest_gpu 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
DEMO_LIMIT=300; [ "$MODE" = probe ] && DEMO_LIMIT=180
step demo $DEMO_LIMIT python3 -m crossadapt.cli demo --quick --out /tmp/demo --set resources.use_gpu=true
cp /tmp/demo/results.json "$OUT/demo_results.json" 2>/dev/null
if [ "$MODE" = full ]; then
  step train 240 python3 benchmarks/train_throughput.py --device cuda --epochs 2 --out "$OUT/train_throughput.json"
  step projection 150 python3 benchmarks/projection.py --device cuda --actors 1 2 --out "$OUT/projection.json"
  [ -f benchmarks/scale.py ] && step scale 300 python3 benchmarks/scale.py --device cuda --out "$OUT/scale.json"
fi
echo "total $(( $(date +%s) - t0 )) s"
