#!/usr/bin/env bash
# Everything feredge can check on an NVIDIA GPU, in one command, results under $OUT (default runs/gpu-check):
#   the GPU tests (kernel vs CPU reference through pycuda and cuda-python, mapped buffers, TensorRT pipeline
#   when TensorRT is installed) and the pre-processing benchmark through each CUDA API.
# Wheels in .dev/*.whl (e.g. the prebuilt pycuda and its dependencies) are installed first when present.
#   bash benchmarks/gpu_check.sh
set -uo pipefail
out="${OUT:-runs/gpu-check}"
mkdir -p "$out"
if compgen -G ".dev/*.whl" > /dev/null; then
  pip install -q --no-index --no-deps --target /tmp/feredge-site .dev/*.whl
  export PYTHONPATH="/tmp/feredge-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv > "$out/gpu.csv" 2>&1
python -m pytest -m gpu -v -rs -p no:cacheprovider tests/test_preprocess.py tests/test_pipeline.py 2>&1 | tee "$out/pytest-gpu.txt"
for api in pycuda cuda-python; do
  python benchmarks/preprocess.py --api "$api" --repeat 200 --json > "$out/preprocess-$api.json" 2> "$out/preprocess-$api.err"
  python benchmarks/preprocess.py --api "$api" --repeat 200 | tee "$out/preprocess-$api.txt"
done
