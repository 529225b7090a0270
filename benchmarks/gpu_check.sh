#!/usr/bin/env bash
# Everything feredge checks on an NVIDIA GPU, in one command of at most 9 minutes; results in $OUT:
#   1 install    carried wheels (pycuda + deps, onnxsim) into scratch site folders; feredge from this tree
#   2 prepare    FER2013 from the carried archive
#   3 GPU tests  pytest -m gpu twice: with pycuda importable (kernel tests through both APIs), then with it
#                hidden so feredge.cuda.cuda_api() falls back to cuda-python (JUnit XML each)
#   4 benchmark  benchmarks/preprocess.py: OpenCV vs kernel vs kernel+upload, 1/4/16/64 faces, per CUDA API
#   5 train      feredge-s, its recipe, on cuda: a 2-epoch probe, then as many epochs (≤ the recipe's 60) as fit
#   6 export     FP32/FP16/INT8 ONNX (INT8 calibrated on the prepared data), evaluated on the val split (ORT CPU)
#   7 rtx        TensorRT for RTX: engines for its portable default targets from step 6's ONNX (feredge-n's
#                without them), run through feredge's runner and compared with ONNX Runtime on the same faces;
#                the answer is recorded plainly: runs / refused (H100/H200 are not its targets) / needs a GPU /
#                unavailable (its ~230 MB of wheels are not carried: only where it is installed)
#   8 results    $OUT: gpu_check.json (every step: status + numbers), gpu_check.log, junit-pycuda.xml,
#                junit-cuda_python.xml, preprocess.json, best.safetensors(.json): 7 files, refreshed after each step
# Every step has its own time box (timeout); training gets what is left before the export's reserve.
#
# Here (no GPU):  bash benchmarks/gpu_carry.sh        fills .gpu-carry/ (git-ignored, ~53 MB: carry it)
#                 bash benchmarks/gpu_check.sh --dry-run   rehearses every step that needs no GPU, on the CPU
#                   (install checked for CPython 3.12, not installed; GPU tests collected and reported as skipped;
#                   CPU part of the benchmark; a 1-epoch tiny CPU training; export + evaluation of it)
# GPU machine:    OUT=... bash benchmarks/gpu_check.sh           (device tool: carry [".gpu-carry"])
# Env: OUT (default runs/gpu-check), PYTHON (python3), GPU_CARRY (.gpu-carry), GPU_CHECK_BUDGET_S (540; 1620 dry),
#      GPU_CHECK_WORK (scratch folder; default a new one under /tmp).
set -uo pipefail
dry=0
[[ "${1:-}" == "--dry-run" ]] && dry=1
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="$(mkdir -p "${OUT:-runs/gpu-check}" && cd "${OUT:-runs/gpu-check}" && pwd)"
work="${GPU_CHECK_WORK:-$(mktemp -d /tmp/feredge-gpu-check.XXXXXX)}"
carry="${GPU_CARRY:-$root/.gpu-carry}"
py="${PYTHON:-python3}"
# The dry run's CPU may be small and busy (2 cores here): 3× the time boxes, a larger budget.
slow=$([[ $dry == 1 ]] && echo 3 || echo 1)
budget="${GPU_CHECK_BUDGET_S:-$((540 * slow))}"
start=$(date +%s)
deadline=$((start + budget))
mkdir -p "$work/logs" "$work/steps" "$work/site" "$work/site-pycuda"
steps_py="$root/benchmarks/gpu_check_steps.py"
base_path="$root:$work/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$base_path:$work/site-pycuda"  # pass 2 of the GPU tests drops site-pycuda
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1  # fewer progress bars (the trainer sets its own); logs keep their tails
export dry work carry py base_path
mode=$([[ $dry == 1 ]] && echo dry-run || echo gpu)
echo "gpu_check ($mode): work $work, results $out, budget ${budget}s"

left() { echo $((deadline - $(date +%s))); }

summarize() {
  "$py" "$steps_py" summary --work "$work" --out "$out" --mode "$mode" --wall-s $(($(date +%s) - start)) \
    --budget-s "$budget" > /dev/null 2>> "$work/logs/summary.log" || echo "summary failed (see $work/logs/summary.log)"
}

# step NAME LIMIT_S CMD...: run CMD under a time box of min(LIMIT_S, time left), log, record rc and seconds.
step() {
  local name=$1 limit=$2 t0 rc
  shift 2
  (( limit > $(left) )) && limit=$(left)
  if (( limit < 5 )); then
    echo "no time left" > "$work/steps/$name.skip"
    echo "[skip] $name: no time left in the ${budget}s budget"
    return
  fi
  t0=$(date +%s)
  echo "[run ] $name (time box ${limit}s)"
  timeout -k 5 "$limit" bash -c '"$@"' "$name" "$@" > "$work/logs/$name.log" 2>&1  # bash -c: CMD may be a function
  rc=$?
  echo "$rc $(($(date +%s) - t0)) $limit" > "$work/steps/$name.rc"
  echo "[done] $name: rc $rc in $(($(date +%s) - t0))s"
  summarize
}

skip() {
  echo "$2" > "$work/steps/$1.skip"
  echo "[skip] $1: $2"
}

install_wheels() {  # pycuda into site-pycuda (pass 1 only), the rest into site; only what is not importable
  (cd "$carry" && sha256sum -c --quiet SHA256SUMS) || return 1
  local wheels=("$carry"/wheels/*.whl) pycuda_set=() common=() w
  for w in "${wheels[@]}"; do
    case "$(basename "$w")" in
      pycuda-*|pytools-*|platformdirs-*|mako-*|siphash24-*) pycuda_set+=("$w") ;;
      *) common+=("$w") ;;
    esac
  done
  local pip=("$py" -m pip install --no-index --no-deps --only-binary=:all: --disable-pip-version-check)
  if [[ $dry == 1 ]]; then  # the wheels are for CPython 3.12 on the GPU machine: resolve them, install nothing
    local tags=(--dry-run --ignore-installed --python-version 3.12 --implementation cp
                --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform linux_x86_64)
    echo "dry run: checking that the carried wheels install on CPython 3.12 x86_64 (nothing installed)"
    "${pip[@]}" "${tags[@]}" --target "$work/site-check" "${wheels[@]}"
    return
  fi
  if "$py" -c "import pycuda" 2> /dev/null; then echo "pycuda already importable"; else
    "${pip[@]}" --target "$work/site-pycuda" "${pycuda_set[@]}" || return 1
  fi
  for w in "${common[@]}"; do
    local module
    module="$(basename "$w" | cut -d- -f1)"
    if "$py" -c "import $module" 2> /dev/null; then echo "$module already importable"; else
      "${pip[@]}" --target "$work/site" "$w" || return 1
    fi
  done
  "$py" -c "import pycuda.driver, onnxsim; print('pycuda', pycuda.VERSION_TEXT, '/ onnxsim', onnxsim.__version__)"
}

gpu_tests() {  # gpu_tests API [PYTHONPATH]
  PYTHONPATH="$2" "$py" -m pytest -m gpu -v -rs -p no:cacheprovider --continue-on-collection-errors \
    --junitxml="$work/junit-$1.xml" tests
  local rc=$?
  (( rc == 5 )) && return 0  # exit code 5: nothing selected ran (no GPU): the XML says so
  return $rc
}

hidden_pycuda() {  # pass 2 must not see pycuda, or it tests the same API twice
  PYTHONPATH="$base_path" "$py" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('pycuda') is not None)" \
    || { echo "pycuda is importable without site-pycuda (installed system-wide?): pass 2 would not use cuda-python"; return 1; }
}

bench() {  # bench API: the script prints JSON (after a 'no CUDA timing' notice when it cannot time the GPU)
  "$py" benchmarks/preprocess.py --api "$1" --repeat "$2" --json > "$work/bench-$3.json"
}

export -f install_wheels gpu_tests bench
step install $((90 * slow)) install_wheels
step env $((60 * slow)) "$py" "$steps_py" env --work "$work" $([[ $dry == 1 ]] || echo --gpu)
if [[ -f "$carry/data/fer2013-images.tar.gz" ]]; then
  step prepare $((150 * slow)) "$py" "$steps_py" prepare --work "$work" --archive "$carry/data/fer2013-images.tar.gz" \
    --out "$work/prepared"
else
  skip prepare "no $carry/data/fer2013-images.tar.gz (run benchmarks/gpu_carry.sh and carry .gpu-carry)"
fi
[[ $dry == 1 ]] && echo "dry run: the GPU tests are collected and run; without a GPU conftest skips each (reported, not passed)"
step gpu_tests_pycuda $((100 * slow)) gpu_tests pycuda "$PYTHONPATH"
if hidden_pycuda; then
  step gpu_tests_cuda_python $((100 * slow)) gpu_tests cuda_python "$base_path"
else
  skip gpu_tests_cuda_python "pycuda importable without the carried site folder"
fi
repeat=$([[ $dry == 1 ]] && echo 20 || echo 200)
[[ $dry == 1 ]] && echo "dry run: benchmark runs its OpenCV part only (the script reports 'no CUDA timing')"
step bench_pycuda $((60 * slow)) bench pycuda "$repeat" pycuda
step bench_cuda_python $((60 * slow)) bench cuda-python "$repeat" cuda_python

# export + evaluation run on the CPU: ~4 min on 2 busy cores here, far less on the GPU machine's 16
export_reserve=$([[ $dry == 1 ]] && echo 480 || echo 210)
rtx_reserve=$([[ $dry == 1 ]] && echo 180 || echo 60)  # the TensorRT-for-RTX step after it
if [[ ! -f "$work/prepared/meta.json" ]]; then
  skip train "no prepared data"
  skip export_eval "no prepared data"
else
  if [[ $dry == 1 ]]; then
    echo "dry run: training is a tiny 1-epoch CPU run (limit_train / max_steps_per_epoch), not the real one"
    step train $((120 * slow)) "$py" "$steps_py" train --work "$work" --data "$work/prepared" --out "$work/train" \
      --device cpu --budget-s 120 --tiny
  else
    train_s=$(($(left) - export_reserve - rtx_reserve))
    step train "$train_s" "$py" "$steps_py" train --work "$work" --data "$work/prepared" --out "$work/train" \
      --device cuda --budget-s $((train_s - 15))
  fi
  if [[ -f "$work/train/best.safetensors" ]]; then
    step export_eval $((export_reserve - 15)) "$py" "$steps_py" export-eval --work "$work" --data "$work/prepared" \
      --checkpoint "$work/train/best.safetensors" --out "$work/export" --device "$([[ $dry == 1 ]] && echo cpu || echo cuda)"
  else
    skip export_eval "training left no best.safetensors"
  fi
fi
step rtx "$rtx_reserve" "$py" benchmarks/gpu_check_rtx.py --work "$work" --export "$work/export" --data "$work/prepared"
summarize
"$py" -c "
import json, sys
s = json.load(open(sys.argv[1]))
for name, r in s['steps'].items():
    print(f\"  {name:22} {r['status']:24} {round(r.get('seconds', 0)):>4} s\")
print('ok' if s['ok'] else 'NOT OK', '-', s['wall_s'], 's;', ', '.join(s['files']))
" "$out/gpu_check.json"
