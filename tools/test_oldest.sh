#!/usr/bin/env bash
# `make test-oldest`: nlbench on its lowest tested versions, the GPU image's (tools/gpu-image.txt), in a venv that
# holds only those packages, with no package index: what a GPU node without network has.
#
#   bash tools/test_oldest.sh VENV BUNDLE        # VENV: the image-like venv; BUNDLE: dist/gpu-bundle
#
# Three smokes: the bundle's `run.sh OUT --smoke` (its wheels installed with pip --no-index, the device check on the
# CPU), a tiny `nlbench fit`, and a packed sweep (2 runs sharing the CPU at once), the last two with the bundle's
# source and wheels on PYTHONPATH as run.sh puts them. Prints one result line with the versions and the seconds.
set -euo pipefail
venv="${1:?usage: tools/test_oldest.sh VENV BUNDLE}"
bundle="$(cd "${2:?usage: tools/test_oldest.sh VENV BUNDLE}" && pwd)"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$(cd "$(dirname "$venv/bin/python")" && pwd)/python"
work="$(mktemp -d "${TMPDIR:-/tmp}/nlbench-oldest-XXXXXX")"
trap 'rm -rf "$work"' EXIT
export PIP_NO_INDEX=1 WANDB_MODE=disabled PYTHONDONTWRITEBYTECODE=1
start=$SECONDS
versions="$("$python" -c "import sys, torch, torchvision, lightning, torchmetrics; print(f'python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}, lightning {lightning.__version__}, torchmetrics {torchmetrics.__version__}')")"
if "$python" -c "import jsonargparse" 2>/dev/null; then
  echo "test-oldest: error: $venv has jsonargparse; it must hold only the image's packages" >&2
  exit 1
fi

echo "== 1/3 bundle: run.sh --smoke (no index)"
PYTHON="$python" bash "$bundle/run.sh" "$work/check" --smoke >"$work/check.log" 2>&1 || { tail -30 "$work/check.log"; exit 1; }
grep -q '"status": "done"' "$work/check/device-check.json"

echo "== 2/3 a tiny fit"
"$python" -m pip install --no-index --no-deps --disable-pip-version-check -q --target "$work/site" "$bundle"/wheels/*.whl
export PYTHONPATH="$bundle/src:$work/site"
cd "$work"
tiny=(--trainer.accelerator=cpu --trainer.max_epochs=1 --trainer.limit_train_batches=2 --trainer.limit_val_batches=1
      --trainer.enable_progress_bar=false --data.init_args.batch_size=16 --data.init_args.eval_batch_size=16
      --trainer.logger=false --model.scheduler=null)
"$python" -m nlbench fit --config "$bundle/src/experiments/demo.yaml" "${tiny[@]}" --run_dir "$work/fit" >"$work/fit.log" 2>&1 \
  || { tail -30 "$work/fit.log"; exit 1; }
grep -q '"status": "finished"' "$work/fit/result.json"

echo "== 3/3 a packed sweep (k = 2 on the CPU)"
cat >"$work/packed.yaml" <<YAML
name: packed
base: $bundle/src/experiments/demo.yaml
output_dir: $work/sweep
overrides: {trainer.max_epochs: 1, trainer.limit_train_batches: 2, trainer.limit_val_batches: 1, trainer.logger: false,
            data.batch_size: 16, data.eval_batch_size: 50, model.scheduler: null}
axes: {seed_everything: [0, 1]}
runs_per_device: 2
YAML
"$python" -m nlbench sweep --config "$work/packed.yaml" --devices cpu >"$work/sweep.log" 2>&1 || { tail -30 "$work/sweep.log"; exit 1; }
grep -q "2 finished" "$work/sweep.log"

echo "test-oldest: passed in $((SECONDS - start)) s on $versions (no index; jsonargparse, submitit from the bundle)"
