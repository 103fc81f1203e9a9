#!/usr/bin/env bash
# The speed targets in one GPU call (about 2-3 minutes on one H100/H200, at most TIME_LIMIT_S), JSON into
# $OUT (default ./bench-out); then `python benchmarks/update_readme.py $OUT` writes the table of
# benchmarks/README.md from those files. Meant for a machine that has torch, timm, lightning and
# torchmetrics but not hydra-core/omegaconf/hydra-submitit-launcher: pass a folder of their wheels
# as WHEELS to install them to /tmp/site (see benchmarks/_device_env.sh).
#
#   CIFAR_ROOT=DIR bash benchmarks/gpu_session.sh                 # DIR holds cifar-10-batches-py
#   CIFAR_PACK=DIR WHEELS=.whl bash benchmarks/gpu_session.sh    # DIR: cifar10-jpeg.npz + make_cifar10_batches.py
#   TINY=1 ...                                                    # CPU dry run: digits, --quick sizes
#
# Runs: throughput.py (ncfine vs the plain loop, ResNet-18, CIFAR-10), analysis_overhead.py
# (ResNet-18, CIFAR-10, analysis every epoch), nc_metrics.py (60k x 512 x 10 and the ImageNet-scale
# row, re-timed after NC1 moved to QR + SVD), recovery.py --bundle-only (the per-epoch recovery bundle).
# $OUT receives 6 files: gpu.txt, session.log and four JSON files. A benchmark that fails does
# not stop the others; its output is in session.log and the script exits non-zero at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
TIME_LIMIT_S=${TIME_LIMIT_S:-230}
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
LOG="$OUT/session.log"
: >"$LOG"
if [ -n "${TINY:-}" ]; then
  export CIFAR_ROOT=${CIFAR_ROOT:-unused}  # --tiny trains on digits
  data=(--tiny --clock wall) epochs_t=2 epochs_a=2 nc=(--device cpu --quick --repeats 1 --sizes cifar10) rec=(--device cpu --quick --repeats 1)
else
  data=(--data-root) epochs_t=3 epochs_a=3 nc=(--device cuda --sizes cifar10,imagenet) rec=(--device cuda)
fi
# shellcheck source=benchmarks/_device_env.sh
source benchmarks/_device_env.sh || { echo "setup failed"; exit 2; }
[ -z "${TINY:-}" ] && data+=("$CIFAR_ROOT")

failed=()
# bench LINES CMD...: run CMD with its whole output appended to session.log; print the last LINES lines
# (the table; 0 = all), or the end of the output when it failed, and go on with the next benchmark.
# Each benchmark gets what is left of TIME_LIMIT_S (default 230 s from the script's start), so the
# call ends, with the JSON of every benchmark that finished, before the device call's timeout.
bench() {
  local lines=$1 rc start=$SECONDS step left=$((TIME_LIMIT_S - SECONDS))
  shift
  if [ "$left" -lt 10 ]; then
    failed+=("$*")
    echo "== SKIPPED (out of time: TIME_LIMIT_S=$TIME_LIMIT_S): $*" | tee -a "$LOG"
    return
  fi
  step=$(mktemp)
  echo "== $* (at most ${left} s)" | tee -a "$LOG"
  timeout "$left" "$@" 2>&1 | tee -a "$LOG" >"$step"
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
  echo "   ($((SECONDS - start)) s)"
  rm -f "$step"
}

bench 2 python3 benchmarks/throughput.py "${data[@]}" --backbone resnet18 --epochs "$epochs_t" \
  --json "$OUT/throughput_resnet18.json"
bench 2 python3 benchmarks/analysis_overhead.py "${data[@]}" --backbone resnet18 --epochs "$epochs_a" \
  --kmeans-backend torch --json "$OUT/analysis_overhead_resnet18.json"
bench 0 python3 benchmarks/nc_metrics.py "${nc[@]}" --json "$OUT/nc_metrics.json"
bench 0 python3 benchmarks/recovery.py "${rec[@]}" --bundle-only --json "$OUT/recovery.json"
echo "== done in ${SECONDS} s; the table: python benchmarks/update_readme.py $OUT"

if [ "${#failed[@]}" -gt 0 ]; then
  printf 'failed: %s\n' "${failed[@]}"
  exit 1
fi
