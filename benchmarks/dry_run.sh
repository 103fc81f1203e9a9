#!/usr/bin/env bash
# A CPU dry run of the prepared GPU calls, with a stand-in for the device machine: its python3 has
# torch, timm, lightning, pandas, matplotlib but not hydra-core, omegaconf, antlr4 or faiss, which
# come only from the wheels in WHEELS (as through the device tool), ncfine only from src/ (no
# install), and nvidia-smi is a script that names the CPU. Tiny settings: a few hundred images,
# one epoch, resnet18 / vgg16_bn / densenet121 at 32x32 as on the GPU.
#
#   WHEELS=.whl CIFAR_PACK=../shared/datasets bash benchmarks/dry_run.sh reproduce   # -> dry-out/reproduce
#   WHEELS=.whl CIFAR_PACK=../shared/datasets bash benchmarks/dry_run.sh session     # -> dry-out/session
#
# Needs the project venv (.venv) for the stand-in's packages; writes only under /tmp and dry-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?reproduce or session}
REPO=$PWD
VENV_SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
BASE_PYTHON=$(.venv/bin/python -c "import sys; print(sys._base_executable)")
STANDIN=/tmp/ncfine-standin
rm -rf "$STANDIN" /tmp/site
mkdir -p "$STANDIN/site" "$STANDIN/bin"
# Every package of the venv except the ones the device lacks (and the editable ncfine install).
for entry in "$VENV_SITE"/*; do
  case "$(basename "$entry")" in
    hydra|hydra_core-*|hydra_plugins|hydra_submitit*|omegaconf|omegaconf-*|antlr4|antlr4_python3*|wandb|wandb-*|faiss|faiss_cpu*|\
    __editable__*|ncfine*|distutils-precedence.pth|__pycache__) ;;
    *) ln -s "$entry" "$STANDIN/site/" ;;
  esac
done
cat >"$STANDIN/bin/python3" <<PY
#!/usr/bin/env bash
export PYTHONPATH="\${PYTHONPATH:+\$PYTHONPATH:}$STANDIN/site"
exec "$BASE_PYTHON" -s "\$@"
PY
cat >"$STANDIN/bin/nvidia-smi" <<'SMI'
#!/usr/bin/env bash
echo "name, memory.total [MiB], driver_version"
echo "stand-in: $(uname -m) CPU ($(nproc) cores), no GPU, 0 MiB, none"
SMI
chmod +x "$STANDIN/bin/python3" "$STANDIN/bin/nvidia-smi"
export PATH="$STANDIN/bin:$PATH" PYTHONPATH=
python3 -c "import hydra" 2>/dev/null && { echo "stand-in still sees hydra" >&2; exit 1; }
python3 -c "import ncfine" 2>/dev/null && { echo "stand-in still sees an installed ncfine" >&2; exit 1; }

case "$what" in
  reproduce)
    # The test split's 10,000 images would take minutes per backbone on CPU: validate and analyse
    # 256 of them (the capture then falls back to the analysis pass, as it must for a partial split).
    OUT=${OUT:-$REPO/dry-out/reproduce} EPOCHS=1 BATCH=64 BUDGET_S=${BUDGET_S:-900} PROGRESS_S=30 THREADS=1 \
    EXTRA="++data.max_train_samples=256 data.eval_batch_size=128 trainer.limit_val_batches=2 \
      callbacks.neural_collapse.max_samples=256 callbacks.fine_recovery.max_samples=256 \
      callbacks.fine_recovery.kmeans_n_init=2 callbacks.plots.max_samples=256 trainer.accelerator=cpu trainer.precision=32-true" \
      bash benchmarks/gpu_reproduce.sh
    ;;
  session)
    OUT=${OUT:-$REPO/dry-out/session} TINY=1 TIME_LIMIT_S=${TIME_LIMIT_S:-1800} bash benchmarks/gpu_session.sh
    ;;
  *) echo "unknown: $what (reproduce or session)" >&2; exit 2 ;;
esac
