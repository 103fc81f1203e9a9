#!/usr/bin/env bash
# Every GPU benchmark in one go (about 5 minutes on one H100), JSON results into $OUT (default
# ./bench-out). Meant for a machine that has torch, timm, lightning and torchmetrics but maybe
# not hydra-core/omegaconf: pass a folder of their wheels as WHEELS to install them to /tmp/site.
#
#   CIFAR_ROOT=DIR bash benchmarks/gpu_session.sh                 # DIR holds cifar-10-batches-py
#   CIFAR_PACK=DIR WHEELS=.whl bash benchmarks/gpu_session.sh    # DIR: cifar10-jpeg.npz + make_cifar10_batches.py
#
# Through the device tool (the ../shared beside the checkout does not travel): copy the pack into the
# ignored folder .device/ (cp ../shared/datasets/{cifar10-jpeg.npz,make_cifar10_batches.py} .device/),
# keep the hydra-core, omegaconf and antlr4-python3-runtime wheels in the ignored .whl/, then
#   run(command="CIFAR_PACK=.device WHEELS=.whl bash benchmarks/gpu_session.sh", carry=[".device", ".whl"], timeout_s=600)
# $OUT receives 8 files (the tool's limit): gpu.txt, session.log and six JSON files. A benchmark that
# fails does not stop the others; its output is in session.log and the script exits non-zero at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
LOG="$OUT/session.log"
: >"$LOG"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
set -e
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if [ -z "${CIFAR_ROOT:-}" ]; then
  if [ -z "${CIFAR_PACK:-}" ]; then
    echo "set CIFAR_ROOT (a folder holding cifar-10-batches-py) or CIFAR_PACK (cifar10-jpeg.npz + make_cifar10_batches.py)" >&2
    exit 2
  fi
  CIFAR_ROOT=/tmp/cifar
  python3 "$CIFAR_PACK/make_cifar10_batches.py" "$CIFAR_ROOT"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm, pytorch_lightning as pl; print('torch', torch.__version__, 'timm', timm.__version__, 'lightning', pl.__version__)" | tee -a "$OUT/gpu.txt"
set +e

failed=()
# bench LINES CMD...: run CMD with its whole output appended to session.log; print the last LINES lines
# (the table; 0 = all), or the end of the output when it failed, and go on with the next benchmark.
bench() {
  local lines=$1 rc start=$SECONDS step
  step=$(mktemp)
  shift
  echo "== $*" | tee -a "$LOG"
  "$@" 2>&1 | tee -a "$LOG" >"$step"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    failed+=("$*")
    echo "FAILED (exit $rc) after $((SECONDS - start)) s; the end of its output:"
    tail -n 15 "$step"
  elif [ "$lines" -gt 0 ]; then
    tail -n "$lines" "$step"
  else
    cat "$step"
  fi
  rm -f "$step"
}

for backbone in resnet18 vgg16_bn densenet121; do
  epochs=3; [ "$backbone" = densenet121 ] && epochs=2
  bench 2 python3 benchmarks/throughput.py --data-root "$CIFAR_ROOT" --backbone "$backbone" --epochs "$epochs" \
    --json "$OUT/throughput_$backbone.json"
done
bench 2 python3 benchmarks/analysis_overhead.py --data-root "$CIFAR_ROOT" --backbone resnet18 --epochs 4 \
  --kmeans-backend torch --json "$OUT/analysis_overhead_resnet18.json"
bench 0 python3 benchmarks/nc_metrics.py --device cuda --json "$OUT/nc_metrics.json"
bench 0 python3 benchmarks/recovery.py --device cuda --json "$OUT/recovery.json"

if [ "${#failed[@]}" -gt 0 ]; then
  printf 'failed: %s\n' "${failed[@]}"
  exit 1
fi
