"""`feredge export --engine`: one TensorRT engine per exported precision, with the TensorRT that is
installed — TensorRT for RTX builds on a CPU for the RTX architectures asked (``--gpu-arch``), the regular
TensorRT for the GPU it runs on — each described by its sidecar, and reused when already built."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from feredge import artifact
from feredge.artifact import Artifact, file_sha256
from feredge.errors import FeredgeError


def check_engine_options(opts: Any) -> None:
    """What the installed TensorRT cannot do is refused before any work (none installed: said after the ONNX
    files are written, which need none)."""
    from feredge.engine.plan import build_plan
    from feredge.engine.tensorrt import RTX, detect
    from feredge.export.triton import refuse_rtx

    try:
        found = detect(RTX if opts.gpu_arch else None)
    except FeredgeError:
        return
    if opts.gpu_arch and not found.rtx:
        raise FeredgeError(f"--gpu-arch: needs TensorRT for RTX; the installed TensorRT {found.version} builds for "
                           "the GPU it runs on (drop --gpu-arch, or pip install 'feredge[rtx]')")
    for precision in ["fp32"] + (["fp16"] if opts.fp16 else []) + (["int8"] if opts.int8 else []):
        build_plan(found.version, precision, implicit_int8=opts.implicit_int8 and precision == "int8",
                   dla=opts.dla_core is not None, flavour=found.flavour)
    if opts.triton and found.rtx:
        refuse_rtx("--format triton --engine", found.version)


def build_engines(paths: dict[str, Path], infos: dict[str, Artifact], stem: str, opts: Any, report: dict) -> None:
    """One engine per precision exported (fp32, and fp16/int8 when asked), with the TensorRT that is installed."""
    from feredge.engine.build import build_engine, gpu_identity
    from feredge.engine.plan import BatchProfile, build_plan, engine_artifact, engine_key, rtx_engine_key
    from feredge.engine.tensorrt import RTX, detect, parse_archs, rtx_targets

    found = detect(RTX if opts.gpu_arch else None)  # a clear error without TensorRT, after the ONNX files exist
    asked = parse_archs(opts.gpu_arch) if opts.gpu_arch else ()  # with the regular TensorRT: refused up front
    plans = {p: build_plan(found.version, p, implicit_int8=opts.implicit_int8 and p == "int8",
                           dla=opts.dla_core is not None, flavour=found.flavour)
             for p in ("fp32", "fp16", "int8") if p in paths}
    profile = BatchProfile.of(opts.batch, opts.max_batch)
    gpu = None if found.rtx else gpu_identity()
    report["engines"] = {}
    for precision, plan in plans.items():
        kind = {"qdq": "int8", "fp16": "fp16", "fp32": "fp32"}[plan.onnx_kind]
        onnx_sha = file_sha256(paths[kind])
        archs, skipped = rtx_targets(precision, asked) if found.rtx else ((), {})
        if found.rtx:
            key = rtx_engine_key(onnx_sha, precision, profile, archs, found.version)
        else:
            key = engine_key(onnx_sha, precision, profile, gpu[0], gpu[1], found.version, opts.dla_core)
        engine = Path(opts.out) / f"{stem}-{precision}{'-rtx' if found.rtx else ''}-{key['digest']}.engine"
        record = _reusable(engine, key)
        if record is None:
            record = {}
            spec = infos[kind].input_spec
            build_engine(paths[kind], plan, profile, (spec.channels, spec.size, spec.size), engine,
                         workspace_mb=opts.workspace_mb,
                         timing_cache=None if found.rtx else Path(opts.out) / f"timing-{found.version}-{gpu[1]}.cache",
                         calibration_cache=paths.get("calib-cache") if plan.calibration_cache else None,
                         dla_core=opts.dla_core, archs=archs, found=found, record=record)
            record["sha256"] = file_sha256(engine)
        details = {**record, "compute_capabilities": list(archs), "skipped_compute_capabilities": skipped} \
            if found.rtx else record
        artifact.write(engine, engine_artifact(infos[kind], onnx_sha, key, plan, **details))
        paths[f"engine-{precision}"] = engine
        report["engines"][precision] = {"path": str(engine), "key": key, "plan": asdict(plan),
                                        "flavour": found.flavour, "version": found.version, **details}


def _reusable(engine: Path, key: dict) -> dict | None:
    """What the sidecar of an engine already built for ``key`` recorded, when the file is still the one it
    describes; None when it must be (re)built."""
    try:
        info = artifact.read(engine)
    except FeredgeError:
        return None
    kept = {k: info.details[k] for k in ("tensors", "build_s", "size_bytes", "sha256") if k in info.details}
    if info.engine_key != key or kept.get("sha256") != file_sha256(engine):
        return None
    return {**kept, "reused": True}


def engine_line(precision: str, e: dict) -> str:
    """``engine fp16   PATH (1.23 MB, built in 0.41 s, tensorrt-rtx 1.7.1.116 for sm80, sm86, …)``."""
    built = "reused" if e.get("reused") else f"built in {e.get('build_s', 0):.2f} s"
    archs = e.get("compute_capabilities") or []
    target = f" for sm{', sm'.join(a.replace('.', '') for a in archs)}" if archs else ""
    return (f"{'engine ' + precision:<12} {e['path']} ({e.get('size_bytes', 0) / 1e6:.2f} MB, {built}, "
            f"{e['flavour']} {e['version']}{target})")
