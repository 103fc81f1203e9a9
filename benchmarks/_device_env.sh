# Sourced by gpu_session.sh and gpu_reproduce.sh (run from the repository root): the device
# machine's Python setup, the CIFAR-10 copy, and $OUT/gpu.txt.
#   WHEELS=DIR      wheels (hydra-core, omegaconf, antlr4-python3-runtime) installed to /tmp/site
#   CIFAR_ROOT=DIR  a folder holding cifar-10-batches-py, or
#   CIFAR_PACK=DIR  cifar10-jpeg.npz + make_cifar10_batches.py, written out to /tmp/cifar
# Leaves CIFAR_ROOT set and PYTHONPATH pointing at src/ (and /tmp/site).
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$WHEELS"/*.whl || return 1
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if [ -z "${CIFAR_ROOT:-}" ]; then
  if [ -z "${CIFAR_PACK:-}" ]; then
    echo "set CIFAR_ROOT (a folder holding cifar-10-batches-py) or CIFAR_PACK (cifar10-jpeg.npz + make_cifar10_batches.py)" >&2
    return 2
  fi
  CIFAR_ROOT=/tmp/cifar
  [ -d "$CIFAR_ROOT/cifar-10-batches-py" ] || python3 "$CIFAR_PACK/make_cifar10_batches.py" "$CIFAR_ROOT" || return 1
fi
export CIFAR_ROOT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt" || return 1
echo "date $(date -u +%F)" | tee -a "$OUT/gpu.txt"
python3 -c "import torch, timm, pytorch_lightning as pl; print('torch', torch.__version__, 'timm', timm.__version__, 'lightning', pl.__version__)" \
  | tee -a "$OUT/gpu.txt" || return 1
