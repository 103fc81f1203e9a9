#!/usr/bin/env bash
# Every GPU benchmark in one go (about 5 minutes on one H100), JSON results into $OUT (default
# ./bench-out). Meant for a machine that has torch, timm, lightning and torchmetrics but maybe
# not hydra-core/omegaconf: pass a folder of their wheels as WHEELS to install them to /tmp/site.
#
#   CIFAR_ROOT=DIR bash benchmarks/gpu_session.sh                 # DIR holds cifar-10-batches-py
#   CIFAR_PACK=DIR WHEELS=.whl bash benchmarks/gpu_session.sh    # DIR: cifar10-jpeg.npz + make_cifar10_batches.py
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if [ -z "${CIFAR_ROOT:-}" ]; then
  CIFAR_ROOT=/tmp/cifar
  python3 "$CIFAR_PACK/make_cifar10_batches.py" "$CIFAR_ROOT"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm, pytorch_lightning as pl; print('torch', torch.__version__, 'timm', timm.__version__, 'lightning', pl.__version__)" | tee -a "$OUT/gpu.txt"

for backbone in resnet18 vgg16_bn densenet121; do
  epochs=3; [ "$backbone" = densenet121 ] && epochs=2
  python3 benchmarks/throughput.py --data-root "$CIFAR_ROOT" --backbone "$backbone" --epochs "$epochs" \
    --json "$OUT/throughput_$backbone.json" 2>&1 | tail -2
done
python3 benchmarks/analysis_overhead.py --data-root "$CIFAR_ROOT" --backbone resnet18 --epochs 4 --kmeans-backend torch \
  --json "$OUT/analysis_overhead_resnet18.json" 2>&1 | tail -2
python3 benchmarks/nc_metrics.py --device cuda --json "$OUT/nc_metrics.json"
python3 benchmarks/recovery.py --device cuda --json "$OUT/recovery.json"
