#!/usr/bin/env bash
# The paper's CIFAR-10 result in one GPU call (Yang, Steinhardt & Hu 2023, with ncfine itself):
# ResNet-18, VGG-16-bn and DenseNet-121 on the 5 coarse labels (fine mod 5), and ResNet-18 on the
# 10 fine labels (the normal-accuracy baseline), 30 epochs each, all four at once on the one GPU
# (bf16, channels_last, data held on the GPU), NC1-NC4 and fine recovery every epoch.
#
#   CIFAR_PACK=.device WHEELS=.whl OUT=DIR bash benchmarks/gpu_reproduce.sh
#   ncfine-collect --reproduction DIR/reproduction.tar.gz --results docs/RESULTS.md --figures docs/figures
#
# Setting: experiment=paper_cifar10 (SGD momentum 0.9, lr 0.1, wd 5e-4 on every parameter, /10 at
# 50% and 75% of the epochs, random crop + flip) with trainer=gpu, except batch BATCH (default 512
# instead of the paper's 128, lr kept at 0.1, so 30 epochs of 4 runs fit the time). Every run stops
# by itself at the time budget (trainer.max_time), analyses the epoch it stopped in and writes its
# results; runs still alive 20 s after that are killed, and the tarball is written regardless.
#
# $OUT (default ./reproduce-out) gets 4 files: reproduction.tar.gz (one folder per run: config.yaml,
# metrics.csv, results.json, plots/, train.log; plus manifest.json and gpu.txt), reproduce.log (this
# script's output: a progress line per run every PROGRESS_S seconds), gpu.txt, manifest.json.
#
# Knobs (environment): EPOCHS (30), BATCH (512), BUDGET_S (480: seconds from the start of this script
# to the tarball; the device call's timeout must be larger), PROGRESS_S (20), RUNS (the run names to
# start, default all four), EXTRA (overrides appended to every run, e.g. for a CPU dry run), PYTHON
# (python3), THREADS (CPU threads per run, 4).
set -uo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
OUT=${OUT:-reproduce-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/reproduce.log"
EPOCHS=${EPOCHS:-30}
BATCH=${BATCH:-512}
BUDGET_S=${BUDGET_S:-480}
PROGRESS_S=${PROGRESS_S:-20}
THREADS=${THREADS:-4}
PYTHON=${PYTHON:-python3}
RUNS=${RUNS:-"resnet18_coarse vgg16_bn_coarse densenet121_coarse resnet18_fine"}

main() {
# shellcheck source=benchmarks/_device_env.sh
source benchmarks/_device_env.sh || { echo "setup failed"; return 2; }
WORK=$(mktemp -d /tmp/ncfine-reproduce.XXXXXX)
cp "$OUT/gpu.txt" "$WORK/gpu.txt"

# The time the runs may train: the budget less what setup took, less about 60 s for the last
# epoch's analysis and plots after the Timer stops a run, and for the tarball.
train_s=$((BUDGET_S - (SECONDS - START) - 60))
if [ "$train_s" -lt 30 ]; then
  echo "BUDGET_S=$BUDGET_S leaves ${train_s} s of training after setup; give more" >&2
  return 2
fi
max_time=$(printf '00:%02d:%02d:%02d' $((train_s / 3600)) $((train_s % 3600 / 60)) $((train_s % 60)))
echo "== $(date -u +%FT%TZ) setup took $((SECONDS - START)) s; training budget ${train_s} s per run (trainer.max_time=$max_time)"

run_args() {  # run name -> its ncfine-train overrides
  local backbone=${1%_*} labels=${1##*_}
  local experiment=paper_cifar10
  [ "$labels" = fine ] && experiment=paper_cifar10_fine
  echo "experiment=$experiment model.backbone=$backbone"
}

pids=()
for name in $RUNS; do
  mkdir -p "$WORK/$name"
  # shellcheck disable=SC2046,SC2086
  OMP_NUM_THREADS=$THREADS "$PYTHON" -m ncfine.train $(run_args "$name") \
    "data.source.root=$CIFAR_ROOT" trainer=gpu "trainer.max_epochs=$EPOCHS" "+trainer.max_time=$max_time" \
    "data.batch_size=$BATCH" data.device_resident=true data.num_workers=0 \
    "hydra.run.dir=$WORK/$name" "task_name=reproduce_$name" logger=csv callbacks.progress_bar.refresh_rate=0 \
    print_summary=false resume=false ${EXTRA:-} >"$WORK/$name/train.log" 2>&1 &
  pids+=($!)
  echo "== started $name (pid $!): $(run_args "$name")"
done

alive() { local n=0 p; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done; echo $n; }
hard_stop=$((START + BUDGET_S - 25))
last=$SECONDS
while [ "$(alive)" -gt 0 ] && [ "$SECONDS" -lt "$hard_stop" ]; do
  sleep 2
  if [ $((SECONDS - last)) -ge "$PROGRESS_S" ]; then
    last=$SECONDS
    "$PYTHON" benchmarks/_progress.py "$WORK" "$EPOCHS" "$((SECONDS - START))" $RUNS
  fi
done
for p in "${pids[@]}"; do
  if kill -0 "$p" 2>/dev/null; then
    echo "== killing pid $p at the budget"
    kill "$p"; sleep 5; kill -9 "$p" 2>/dev/null
  fi
done
status=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"; rc=$?
  name=$(echo $RUNS | cut -d' ' -f$((i + 1)))
  [ "$rc" -ne 0 ] && { status=1; echo "== $name exited $rc; the end of its log:"; tail -n 15 "$WORK/$name/train.log"; }
done
"$PYTHON" benchmarks/_progress.py "$WORK" "$EPOCHS" "$((SECONDS - START))" $RUNS

cat >"$WORK/manifest.json" <<JSON
{"date": "$(date -u +%F)", "script": "benchmarks/gpu_reproduce.sh", "epochs": $EPOCHS, "batch_size": $BATCH,
 "budget_s": $BUDGET_S, "train_budget_s": $train_s, "runs": "$RUNS", "extra": "${EXTRA:-}", "wall_s": $((SECONDS - START))}
JSON
cp "$WORK/manifest.json" "$OUT/manifest.json"
# Checkpoints and saved features stay behind: the tarball holds what the tables and figures need.
tar -czf "$OUT/reproduction.tar.gz" -C "$WORK" --exclude='checkpoints' --exclude='*.ckpt' --exclude='features_*.pt' \
  --exclude='csv' manifest.json gpu.txt $RUNS
echo "== $(date -u +%FT%TZ) wrote $OUT/reproduction.tar.gz ($(du -h "$OUT/reproduction.tar.gz" | cut -f1)) after $((SECONDS - START)) s"
return $status
}

# Everything into reproduce.log as it happens (a call cut at its limit still returns the log).
main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
