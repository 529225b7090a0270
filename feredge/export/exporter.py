"""One export entry point for every format (as in Ultralytics): a table of formats drives it.

checkpoint → ONNX (fp32, onnxsim, parity) → FP16 ONNX → INT8 Q/DQ ONNX + TensorRT calibration cache
→ accuracy gate (ONNX Runtime, held-out validation) → TensorRT engine (when TensorRT is installed).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from feredge import artifact
from feredge._optional import require
from feredge.artifact import Artifact, file_sha256
from feredge.errors import FeredgeError

#: format → (file suffix, what it is). Drives argument checks, outputs and benchmarks.
FORMATS = {
    "fp32": (".onnx", "ONNX fp32, simplified, dynamic or fixed batch"),
    "fp16": (".fp16.onnx", "ONNX with fp16 weights and compute, fp32 inputs/outputs"),
    "int8": (".int8.onnx", "ONNX with Q/DQ (symmetric int8, per-channel weights) for explicit quantisation"),
    "calib-cache": (".calib.cache", "TensorRT calibration cache for the implicit INT8 path (TensorRT 8.5/8.6)"),
    "engine": (".engine", "TensorRT engine for this GPU and TensorRT version"),
}


@dataclass
class ExportOptions:
    out: Path = Path("exports")
    fp16: bool = False
    int8: bool = False
    calib_data: Path | None = None
    calib_size: int = 512
    calib_method: str = "percentile"  # measured best on FER2013 (benchmarks/export_accuracy.py)
    batch: int | None = None  # fixed batch; None with dynamic=True
    dynamic: bool = True
    max_batch: int = 32
    engine: bool = False
    implicit_int8: bool = False  # engine from fp32 ONNX + calibration cache (TensorRT 8.5/8.6 implicit INT8)
    max_drop: float = 1.0  # percentage points INT8 may lose against FP32
    seed: int = 0  # the validation carve, for a checkpoint without a saved config (else the checkpoint's own)
    val_fraction: float = 0.1
    parity_tol: float = 1e-3
    overwrite: bool = False
    trt_version: str = "8.6.1"  # for the calibration cache header when TensorRT is not installed
    workspace_mb: int = 1024
    dla_core: int | None = None
    triton: bool = False  # also write a Triton model repository (+ DeepStream config) under out/triton


def _path(out: Path, stem: str, fmt: str) -> Path:
    return Path(out) / f"{stem}{FORMATS[fmt][0]}"


def check_options(opts: ExportOptions) -> None:
    """Refuse option values that would fail late or silently change what is exported."""
    if opts.batch is not None and opts.batch < 1:
        raise FeredgeError(f"--batch {opts.batch}: expected a positive batch size (omit it for a dynamic batch)")
    if opts.max_batch < 1:
        raise FeredgeError(f"--max-batch {opts.max_batch}: expected a positive integer")
    if opts.calib_size < 1:
        raise FeredgeError(f"--calib-size {opts.calib_size}: expected a positive number of images")
    if not opts.max_drop >= 0:  # NaN too: a gate no INT8 model could pass, or one that passes any
        raise FeredgeError(f"--max-drop {opts.max_drop}: expected percentage points ≥ 0 "
                           "(how much top-1 INT8 may lose)")
    if opts.int8 and opts.calib_data is None:
        raise FeredgeError("--int8 needs --calib-data DIR (a prepared dataset with a 'train' split)")
    if opts.implicit_int8 and not (opts.int8 and opts.engine):
        raise FeredgeError("--implicit-int8 builds the engine from the calibration cache: it needs --int8 and --engine")
    artifact.check_folder(opts.out)


def _guard(paths: list[Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise FeredgeError(f"{existing[0]}: exists; pass --overwrite or choose another --out")


def _validation_images(data: Path | None, seed: int, val_fraction: float, n: int | None = None):
    """Held-out validation images/labels: the trainer's carve of 'train' (never the test split)."""
    from feredge.calibration.dataset import holdout_split
    from feredge.data.store import load_split

    _, hold = holdout_split(data, val_fraction, seed)
    hold = hold[:n] if n else hold
    train = load_split(data, "train")
    return np.asarray(train.images[hold]), np.asarray(train.labels[hold])


def onnx_accuracy(path: Path, x: np.ndarray, labels: np.ndarray, classes: list[str],
                  exact_qdq: bool | None = None) -> dict:
    """Accuracy with ONNX Runtime; ``exact_qdq=True`` evaluates Q/DQ as written (TensorRT's semantics),
    False with its fused int8 kernels, None as the runtime's runner does (``feredge.ort_session``)."""
    from feredge.export.onnx import ort_logits
    from feredge.metrics import metrics

    logits = ort_logits(path, x, exact_qdq)
    m = metrics(logits, labels, classes)
    return {"accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"],
            "size_bytes": Path(path).stat().st_size}


def to_fp16(fp32: Path, info: Artifact, out: Path) -> tuple[Path, Artifact]:
    """fp16 weights and compute with fp32 I/O (for strongly typed TensorRT ≥ 10 and ONNX Runtime)."""
    onnx = require("onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from feredge.export.onnx import save_onnx

    model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    derived = info.derive("onnx", "fp16", sources={"onnx_fp32": file_sha256(fp32)}, versions=info.versions,
                          **info.details)
    return save_onnx(model, out, derived, check=False), derived


def _int8(fp32: Path, info: Artifact, stem: str, opts: ExportOptions, out: Path,
          report: dict) -> tuple[Path, Path, Artifact]:
    onnx = require("onnx")
    from feredge.calibration.dataset import calibration_set
    from feredge.calibration.quantize import activation_ranges, quantize_qdq, unquantized_inputs
    from feredge.calibration.trt_cache import write_cache
    from feredge.export.onnx import save_onnx
    from feredge.vision.preprocess import preprocess_faces

    calib = calibration_set(opts.calib_data, opts.calib_size, opts.seed, opts.val_fraction)
    x = preprocess_faces(calib.images, info.input_spec)
    ranges = activation_ranges(fp32, x, opts.calib_method)
    qdq = quantize_qdq(fp32, x, _path(out, stem, "int8"), opts.calib_method, ranges=ranges)
    model = onnx.load(str(qdq))
    missing = unquantized_inputs(model)
    if missing:
        raise FeredgeError(f"{qdq}: Conv/Gemm inputs without Q/DQ: {missing[:3]}")
    calibration = {"method": opts.calib_method, "images": len(x), "seed": opts.seed, "digest": calib.digest,
                   "source": str(opts.calib_data)}
    sources = {"onnx_fp32": file_sha256(fp32)}
    derived = info.derive("onnx", "int8-qdq", sources=sources, versions=info.versions, calibration=calibration,
                          **info.details)
    save_onnx(model, qdq, derived, check=False)
    version = _trt_version_or(opts.trt_version)
    cache = write_cache(ranges, _path(out, stem, "calib-cache"), opts.calib_method, version)
    artifact.write(cache, info.derive("calib-cache", "int8-calib", sources=sources, versions={"tensorrt": version},
                                      calibration=calibration))
    report["calibration"] = calibration
    return qdq, cache, derived


def _trt_version_or(default: str) -> str:
    try:
        import tensorrt

        return tensorrt.__version__
    except ImportError:
        return default


def _gate(paths: dict[str, Path], spec, classes: list[str], opts: ExportOptions, report: dict) -> str | None:
    """Measure every precision on held-out validation; the refusal message when INT8 loses > max_drop pp."""
    from feredge.vision.preprocess import preprocess_faces

    images, labels = _validation_images(opts.calib_data, opts.seed, opts.val_fraction)
    x = preprocess_faces(images, spec)
    acc = {fmt: onnx_accuracy(p, x, labels, classes, exact_qdq=True)
           for fmt, p in paths.items() if fmt in ("fp32", "fp16", "int8")}
    if "int8" in paths:
        # What ONNX Runtime's fused int8 CPU kernels give on this CPU; on x86 without VNNI they saturate, so
        # the gate uses the exact Q/DQ arithmetic TensorRT implements (and the runner does there, too).
        acc["int8_ort_cpu_kernels"] = onnx_accuracy(paths["int8"], x, labels, classes, exact_qdq=False)
    report["accuracy"] = {"split": f"held-out {opts.val_fraction:.0%} of train (seed {opts.seed})", "n": len(x), **acc}
    if "int8" not in acc:
        return None
    drop = 100 * (acc["fp32"]["accuracy"] - acc["int8"]["accuracy"])
    report["accuracy"]["int8_drop_pp"] = drop
    if drop <= opts.max_drop:
        return None
    return (f"INT8 refused: {acc['int8']['accuracy']:.4f} vs FP32 {acc['fp32']['accuracy']:.4f} on {len(x)} "
            f"held-out images, a drop of {drop:.2f} pp > --max-drop {opts.max_drop}; try another "
            f"--calib-method (entropy, minmax, percentile), a larger --calib-size, or ship FP16")


def _engine(paths: dict[str, Path], infos: dict[str, Artifact], stem: str, opts: ExportOptions, report: dict) -> None:
    from feredge.engine.build import build_engine, gpu_identity, trt_version
    from feredge.engine.plan import BatchProfile, build_plan, engine_artifact, engine_key

    version = trt_version()  # raises a clear error without TensorRT, after the ONNX files exist
    precision = "int8" if opts.int8 else "fp16" if opts.fp16 else "fp32"
    plan = build_plan(version, precision, implicit_int8=opts.implicit_int8, dla=opts.dla_core is not None)
    kind = {"qdq": "int8", "fp16": "fp16", "fp32": "fp32"}[plan.onnx_kind]
    onnx_path = paths[kind]
    profile = BatchProfile.of(opts.batch, opts.max_batch)
    name, cc = gpu_identity()
    onnx_sha = file_sha256(onnx_path)
    key = engine_key(onnx_sha, precision, profile, name, cc, version, opts.dla_core)
    engine = Path(opts.out) / f"{stem}-{precision}-{key['digest']}.engine"
    if not engine.exists():
        build_engine(onnx_path, plan, profile, (infos[kind].input_spec.channels, infos[kind].input_spec.size,
                                                infos[kind].input_spec.size), engine,
                     workspace_mb=opts.workspace_mb, timing_cache=Path(opts.out) / f"timing-{version}-{cc}.cache",
                     calibration_cache=paths.get("calib-cache") if plan.calibration_cache else None,
                     dla_core=opts.dla_core)
    artifact.write(engine, engine_artifact(infos[kind], onnx_sha, key, plan))
    paths["engine"] = engine
    report["engine"] = {"path": str(engine), "key": key, "plan": asdict(plan)}


def _publish(staged: dict[str, Path], out: Path) -> dict[str, Path]:
    """Move finished files (and their sidecars) from the staging folder into ``out``."""
    placed = {}
    for fmt, path in staged.items():
        target = Path(out) / path.name
        for src, dst in ((artifact.sidecar_path(path), artifact.sidecar_path(target)), (path, target)):
            if src.exists():
                src.replace(dst)
        placed[fmt] = target
    return placed


def export(checkpoint: Path, opts: ExportOptions) -> dict:
    """Run the export pipeline; returns a report (also written to <out>/<stem>.export.json).

    Files are made in a staging folder inside ``out`` and moved into place only once they passed the
    parity check and the accuracy gate: an interrupted or refused export leaves nothing that looks usable.
    """
    from feredge.export.onnx import export_onnx, parity
    from feredge.models.checkpoint import load_checkpoint

    check_options(opts)
    model, info = load_checkpoint(checkpoint)
    trained = info.details.get("config") or {}  # the gate must judge on the checkpoint's own validation carve
    opts = replace(opts, seed=trained.get("seed", opts.seed), val_fraction=trained.get("val_fraction", opts.val_fraction))
    spec = info.input_spec
    stem = Path(checkpoint).stem
    wanted = ["fp32"] + (["fp16"] if opts.fp16 else []) + (["int8", "calib-cache"] if opts.int8 else [])
    _guard([_path(opts.out, stem, f) for f in wanted] + ([Path(opts.out) / "triton" / "fer"] if opts.triton else []),
           opts.overwrite)
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    report: dict = {"checkpoint": str(checkpoint), "model": info.model, "classes": list(info.classes),
                    "input_spec": spec.to_dict(), "batch": "dynamic" if opts.dynamic else opts.batch}
    with tempfile.TemporaryDirectory(prefix=f".{stem}.staging-", dir=opts.out) as tmp:
        staging = Path(tmp)
        fp32, fp32_info = export_onnx(model, info, _path(staging, stem, "fp32"), None if opts.dynamic else opts.batch,
                                      source=Path(checkpoint))
        paths, infos = {"fp32": fp32}, {"fp32": fp32_info}
        if opts.calib_data is not None:
            images, _ = _validation_images(opts.calib_data, opts.seed, opts.val_fraction, 256)
        else:
            images = np.random.default_rng(opts.seed).integers(0, 256, (64, spec.size, spec.size, spec.channels), np.uint8)
        report["parity"] = parity(model, fp32, images, spec, opts.parity_tol)
        report["parity"]["images"] = "held-out validation" if opts.calib_data is not None else "random (no --calib-data)"
        if opts.fp16:
            paths["fp16"], infos["fp16"] = to_fp16(fp32, fp32_info, _path(staging, stem, "fp16"))
        if opts.int8:
            paths["int8"], paths["calib-cache"], infos["int8"] = _int8(fp32, fp32_info, stem, opts, staging, report)
        refusal = _gate(paths, spec, list(info.classes), opts, report) if opts.calib_data is not None else None
        if refusal:
            report["int8_refused"] = refusal
            paths = {f: p for f, p in paths.items() if f not in ("int8", "calib-cache")}
        paths = _publish(paths, opts.out)
    report["files"] = {fmt: str(p) for fmt, p in paths.items()}
    report_path = Path(opts.out) / f"{stem}.export.json"
    artifact.atomic_write_text(report_path, json.dumps(report, indent=2))
    if refusal:
        raise FeredgeError(f"{refusal} (FP32{'/FP16' if opts.fp16 else ''} written to {opts.out})")
    if opts.engine:
        try:
            _engine(paths, infos, stem, opts, report)
        finally:
            report["files"] = {fmt: str(p) for fmt, p in paths.items()}
            artifact.atomic_write_text(report_path, json.dumps(report, indent=2))
    if opts.triton:
        report["triton"] = _triton(paths, opts)
        artifact.atomic_write_text(report_path, json.dumps(report, indent=2))
    return report


def export_model(path: Path, opts: ExportOptions) -> dict:
    """`feredge export --model M`: a checkpoint through `export`; a feredge ONNX file (what a shipped model's
    name gives without torch: its ONNX ships in the wheel) through `export_shipped`, with no torch."""
    return export_shipped(Path(path), opts) if Path(path).suffix == ".onnx" else export(path, opts)


def export_shipped(source: Path, opts: ExportOptions) -> dict:
    """A feredge ONNX as it is (a shipped model's: fp32, dynamic batch) and, with ``fp16``, its conversion checked
    against it on random inputs; --int8, --engine and --batch rebuild the graph from the checkpoint (torch)."""
    from feredge.export.onnx import ort_logits

    if opts.int8 or opts.engine or opts.batch is not None:
        raise FeredgeError(f"{source}: from an ONNX file, export gives it as it is and its --fp16 conversion; "
                           "--int8, --engine and --batch rebuild the model from its checkpoint (a .safetensors file, "
                           "or a shipped model's name with torch: pip install 'feredge[train]')")
    check_options(opts)
    info, stem = artifact.read(source), source.stem
    wanted = ["fp32"] + (["fp16"] if opts.fp16 else [])
    _guard([_path(opts.out, stem, f) for f in wanted] + ([Path(opts.out) / "triton" / "fer"] if opts.triton else []),
           opts.overwrite)
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    spec = info.input_spec
    report: dict = {"checkpoint": None, "onnx": str(source), "model": info.model, "classes": list(info.classes),
                    "input_spec": spec.to_dict(), "batch": "dynamic", "parity": None}
    with tempfile.TemporaryDirectory(prefix=f".{stem}.staging-", dir=opts.out) as tmp:
        fp32 = artifact.atomic_write_bytes(_path(Path(tmp), stem, "fp32"), source.read_bytes())
        artifact.write(fp32, info)
        paths = {"fp32": fp32}
        if opts.fp16:
            paths["fp16"], _ = to_fp16(fp32, info, _path(Path(tmp), stem, "fp16"))
            pixels = np.random.default_rng(opts.seed).integers(0, 256, (64, spec.channels, spec.size, spec.size))
            x = ((pixels / 255 - np.array(spec.mean)[:, None, None]) / np.array(spec.std)[:, None, None]).astype(np.float32)
            a, b = ort_logits(fp32, x), ort_logits(paths["fp16"], x)
            report["parity"] = {"n": len(x), "images": "random", "against": "the fp32 ONNX",
                                "max_abs_diff": float(np.abs(a - b).max()),
                                "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean())}
        paths = _publish(paths, opts.out)
    report["files"] = {fmt: str(p) for fmt, p in paths.items()}
    if opts.triton:
        report["triton"] = _triton(paths, opts)
    artifact.atomic_write_text(Path(opts.out) / f"{stem}.export.json", json.dumps(report, indent=2))
    return report


def summary(report: dict) -> tuple[list[str], tuple[str, list[str], list[list[str]]] | None, list[str]]:
    """What `feredge export` prints: the parity line, the accuracy table (title, header, rows) when the
    gate ran, and one line per written file."""
    p = report["parity"]
    head = [f"{report['onnx']} as it is (its parity with PyTorch was checked when it was exported)"
            ] if report.get("onnx") else []
    if p is not None:
        head.append(f"parity vs {p.get('against', 'PyTorch')} on {p['n']} {p['images']} images: max |Δlogit| "
                    f"{p['max_abs_diff']:.2e}, top-1 agreement {p['top1_agreement']:.4f}")
    table, tail = None, []
    if "accuracy" in report:
        acc = report["accuracy"]
        table = (f"accuracy on {acc['n']} images ({acc['split']}, ONNX Runtime)", ["format", "top-1", "mean-class", "MB"],
                 [[f, f"{acc[f]['accuracy']:.4f}", f"{acc[f]['mean_class_accuracy']:.4f}",
                   f"{acc[f]['size_bytes'] / 1e6:.2f}"] for f in ("fp32", "fp16", "int8", "int8_ort_cpu_kernels") if f in acc])
        if "int8" in acc:
            tail.append("int8: exact Q/DQ arithmetic (what TensorRT computes); int8_ort_cpu_kernels: ONNX Runtime's "
                        "fused int8 CPU kernels on this machine")
    tail += [f"{fmt:<12} {path}" for fmt, path in report["files"].items()]
    tail += [f"triton {key:<6} {path}" for key, path in report.get("triton", {}).items()]
    return head, table, tail


def _triton(paths: dict[str, Path], opts: ExportOptions) -> dict[str, str]:
    """The Triton repository of the engine when one was built, else of the fp32 ONNX."""
    from feredge.export.triton import Batching, write_export_repository

    served = paths.get("engine") or paths["fp32"]
    files = write_export_repository(Path(opts.out) / "triton", served, Batching(max_batch=opts.batch or opts.max_batch),
                                    opts.overwrite)
    return {key: str(path) for key, path in files.items()}
