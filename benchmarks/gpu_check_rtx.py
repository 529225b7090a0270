"""The TensorRT-for-RTX step of benchmarks/gpu_check.sh: does TensorRT for RTX run on this machine's GPU?

    python benchmarks/gpu_check_rtx.py --work WORK [--export DIR] [--data PREPARED]

Builds fp32/fp16/INT8 engines for the library's portable default targets (every architecture it supports
for that precision) from the exported ONNX files in --export (the shipped feredge-n's ONNX when there are
none), loads each through feredge's runner, and compares its logits with ONNX Runtime's on the same faces
(--data's val split, else random faces). Writes WORK/steps/rtx.json with one plain answer:
  runs          the engines ran here (status pass when they agree with ONNX Runtime, else fail)
  refused       the GPU is not among TensorRT for RTX's targets (H100/H200 are not), or the library refused
                the plan: the reason is recorded, with the library's own verdict when it gave one
  needs a GPU   no usable GPU (the dry run): the engines were built, nothing ran
  unavailable   TensorRT for RTX is not installed here (its wheels, ~230 MB, are more than a carry holds)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # feredge from this checkout

TOP1_AGREEMENT = {"fp32": 0.99, "fp16": 0.98, "int8": 0.9}  # below this an engine that ran is a failure


def write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    tmp.replace(path)


def _onnx_files(export: Path | None) -> dict[str, Path]:
    """precision → ONNX file exported in ``export`` (x.onnx, x.fp16.onnx, x.int8.onnx); feredge-n's otherwise."""
    files: dict[str, Path] = {}
    for path in sorted(export.glob("*.onnx")) if export and export.is_dir() else []:
        name = path.name
        precision = "fp16" if name.endswith(".fp16.onnx") else "int8" if name.endswith(".int8.onnx") else "fp32"
        files.setdefault(precision, path)
    return files or {"fp32": ROOT / "feredge" / "weights" / "feredge-n.onnx"}


def _faces(data: Path | None, spec, n: int = 256) -> tuple[np.ndarray, str]:
    from feredge.vision.preprocess import preprocess_faces

    if data is not None and (data / "meta.json").is_file():
        from feredge.data.store import load_split

        split = load_split(data, "val")
        return preprocess_faces(np.asarray(split.images[:n]), spec), f"{min(n, len(split))} faces of {data} val"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, spec.size, spec.size, spec.channels), np.uint8)
    return preprocess_faces(images, spec), "64 random faces"


def _library_verdict(found, engine: Path) -> str:
    """What TensorRT for RTX itself says about the plan on this GPU (get_engine_validity), or why it cannot say."""
    trt = found.module
    try:
        runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        validity, diagnostics = runtime.get_engine_validity(engine.read_bytes())
    except Exception as exc:  # the library's own errors: recorded, not raised
        return f"no verdict: {type(exc).__name__}: {exc}"
    why = [name for name, flag in trt.EngineInvalidityDiagnostics.__members__.items() if int(diagnostics) & int(flag)]
    return f"{validity.name}{' (' + ', '.join(why) + ')' if why else ''}"


def _one(found, precision: str, onnx_path: Path, out: Path, x: np.ndarray, gpu: bool) -> dict:
    """Build one engine for the default targets, then run it and compare with ONNX Runtime."""
    from feredge import artifact
    from feredge.engine.build import build_engine
    from feredge.engine.plan import BatchProfile, build_plan, engine_artifact, rtx_engine_key
    from feredge.engine.tensorrt import RTX, rtx_targets
    from feredge.errors import FeredgeError
    from feredge.runtime.ort import OrtRunner
    from feredge.runtime.trt import TrtRunner

    info = artifact.read(onnx_path)
    spec = info.input_spec
    archs, skipped = rtx_targets(precision)
    plan = build_plan(found.version, precision, flavour=RTX)
    profile = BatchProfile(1, 16, 32)
    engine = out / f"{precision}.engine"
    record: dict = {}
    try:
        build_engine(onnx_path, plan, profile, (spec.channels, spec.size, spec.size), engine, archs=archs, found=found,
                     record=record)
    except FeredgeError as exc:
        return {"onnx": str(onnx_path), "built": False, "error": str(exc)}
    sha = artifact.file_sha256(onnx_path)
    key = rtx_engine_key(sha, precision, profile, archs, found.version)
    artifact.write(engine, engine_artifact(info, sha, key, plan, **record, sha256=artifact.file_sha256(engine),
                                           compute_capabilities=list(archs), skipped_compute_capabilities=skipped))
    result: dict = {"onnx": str(onnx_path), "built": True, "targets": list(archs), "skipped": skipped, **record}
    try:
        runner = TrtRunner(engine)
    except FeredgeError as exc:
        result.update(runs=False, refused=str(exc))
        if gpu:
            result["library_verdict"] = _library_verdict(found, engine)
        return result
    with runner:
        t0 = time.perf_counter()
        got = runner.infer_all(x, chunk=profile.max)
        result["first_run_s"] = time.perf_counter() - t0  # includes the just-in-time compile for this GPU
        t0 = time.perf_counter()
        runner.infer_all(x, chunk=profile.max)
        result["second_run_s"] = time.perf_counter() - t0
    with OrtRunner(onnx_path, exact_qdq=True) as reference:  # Q/DQ as written: what TensorRT computes
        ref = reference.infer_all(x)
    agreement = float((got.argmax(1) == ref.argmax(1)).mean())
    result.update(runs=True, max_abs_diff=float(np.abs(got - ref).max()), top1_agreement=agreement,
                  agrees=agreement >= TOP1_AGREEMENT[precision],
                  runtime_cache=str(runner.runtime_cache_path) if runner.runtime_cache_path else None)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--export", type=Path, help="folder of exported ONNX files (fp32/fp16/INT8)")
    parser.add_argument("--data", type=Path, help="prepared dataset: faces from its val split")
    args = parser.parse_args()
    t0 = time.perf_counter()
    from feredge import artifact
    from feredge.cuda import device_identity
    from feredge.engine.tensorrt import RTX, load

    try:
        found = load(RTX, "this step")
    except Exception as exc:
        info = {"status": "unavailable", "answer": "unavailable", "reason": str(exc)}
        write_json(args.work / "steps" / "rtx.json", info)
        print(json.dumps(info, indent=2))
        return 0
    gpu: dict | None = None
    why = ""
    try:
        name, cc = device_identity()
        gpu = {"name": name, "compute_capability": cc}
    except Exception as exc:  # no GPU or driver (the dry run)
        why = f"no usable GPU: {type(exc).__name__}: {exc}"
    files = _onnx_files(args.export)
    x, faces = _faces(args.data, artifact.read(next(iter(files.values()))).input_spec)
    out = args.work / "rtx"
    out.mkdir(parents=True, exist_ok=True)
    engines = {p: _one(found, p, path, out, x, gpu is not None) for p, path in files.items()}
    ran = [e for e in engines.values() if e.get("runs")]
    built = all(e["built"] for e in engines.values())
    if ran:
        answer = "runs"
        status = "pass" if built and all(e["agrees"] for e in ran) and len(ran) == len(engines) else "fail"
    elif gpu is None:
        answer, status = "needs a GPU", "cpu-only" if built else "fail"
    else:
        answer, status = "refused", "refused" if built else "fail"
    info = {"status": status, "answer": answer, "tensorrt_rtx": found.version, "gpu": gpu or why, "faces": faces,
            "engines": engines, "seconds": time.perf_counter() - t0}
    write_json(args.work / "steps" / "rtx.json", info)
    print(json.dumps(info, indent=2))
    return 0 if status in ("pass", "refused", "cpu-only") else 1


if __name__ == "__main__":
    sys.exit(main())
