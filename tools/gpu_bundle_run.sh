#!/usr/bin/env bash
# nlbench's device check on a GPU node without network, beside the image's own torch (built by `make gpu-bundle`):
#
#   bash run.sh OUT_DIR [--smoke]        # PYTHON=/path/to/python picks the interpreter (default: python3)
#
# Installs the bundled wheels (what a stock CUDA PyTorch image lacks; pure Python) with pip, no index, into
# OUT_DIR/.site (removed when it ends; unpacked as zip files where the image has no pip), puts them and nlbench's
# source on PYTHONPATH and runs the device check from OUT_DIR, which writes only there: device-check.json and
# device-check.md after every phase, logs/. One command, 8 minutes on one GPU; --smoke: the CPU at tiny sizes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage="usage: bash run.sh OUT_DIR [--smoke]"
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then echo "$usage" >&2; exit 2; fi
out="$1"
shift
for arg in "$@"; do
  case "$arg" in
    --smoke) ;;
    *) echo "run.sh: error: unknown option $arg; $usage" >&2; exit 2 ;;
  esac
done
python="${PYTHON:-python3}"
if ! "$python" -c "import torch, torchvision, lightning, torchmetrics" >/dev/null 2>&1; then
  echo "run.sh: error: $python cannot import torch, torchvision, lightning and torchmetrics (the image's own" \
       "packages); set PYTHON=/path/to/the/image/python" >&2
  exit 2
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
site="$out/.site"
rm -rf "$site"
trap 'rm -rf "$site"' EXIT
if "$python" -m pip --version >/dev/null 2>&1; then
  PIP_NO_INDEX=1 PIP_NO_CACHE_DIR=1 "$python" -m pip install --no-index --no-deps --disable-pip-version-check \
    --quiet --target "$site" "$here"/wheels/*.whl
else  # no pip in the image: the wheels are pure Python, i.e. zip files to unpack
  for wheel in "$here"/wheels/*.whl; do "$python" -m zipfile -e "$wheel" "$site"; done
fi
export PYTHONPATH="$here/src:$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ beside the bundle's source: the check writes only under OUT_DIR
cd "$out"
"$python" -m nlbench.bench.device_check --out "$out" "$@"
