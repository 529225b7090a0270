#!/usr/bin/env bash
# Fills .gpu-carry/ (git-ignored) with what benchmarks/gpu_check.sh needs on a GPU machine without network:
#   wheels/   pycuda 2026.1 + its run-time dependencies (prebuilt for CPython 3.12 / CUDA 13, from SHARED/wheels)
#             and onnxsim (feredge's export requires it), downloaded here for CPython 3.12 manylinux x86_64
#   data/     the FER2013 image archive (SHARED/data/fer2013-images.tar.gz)
#   SHA256SUMS so the check can tell a truncated copy from a good one
# Carry the one folder `.gpu-carry` (must stay within the 64 MiB the device tool carries).
#
#   bash benchmarks/gpu_carry.sh [SHARED]        SHARED defaults to $FEREDGE_SHARED, else ../shared
#   CARRY_PIP="onnxsim==0.8.1 onnx==1.23.2" bash benchmarks/gpu_carry.sh   (other wheels to download)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${1:-${FEREDGE_SHARED:-$root/../shared}}"
carry="$root/.gpu-carry"
limit=$((64 * 1024 * 1024))

rm -rf "$carry"
mkdir -p "$carry/wheels" "$carry/data"
cp "$shared"/wheels/{pycuda,pytools,platformdirs,mako,siphash24}-*.whl "$carry/wheels/"
cp "$shared/data/fer2013-images.tar.gz" "$carry/data/"
# The version tested in the dev environment; the GPU machine's Python decides the wheel tag.
read -r -a pip_specs <<< "${CARRY_PIP:-onnxsim==0.8.1}"
if ! python3 -m pip download -q --no-deps --only-binary=:all: -d "$carry/wheels" --implementation cp \
    --python-version "${GPU_PYTHON_VERSION:-3.12}" --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 "${pip_specs[@]}"; then
  echo "WARNING: could not download ${pip_specs[*]}: on the GPU machine feredge's export stops at" \
       "'this needs the optional package onnxsim' unless it is installed there" >&2
fi
(cd "$carry" && find wheels data -type f -print0 | sort -z | xargs -0 sha256sum > SHA256SUMS)
total=$(du -sb "$carry" | cut -f1)
ls -l "$carry/wheels" "$carry/data"
echo "total $total bytes ($((total * 100 / limit))% of 64 MiB)"
if (( total > limit )); then
  echo "ERROR: .gpu-carry is over 64 MiB; drop something from CARRY_PIP" >&2
  exit 1
fi
