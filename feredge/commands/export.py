"""One export entry point for every format (as in Ultralytics): a table of formats drives it.

checkpoint → ONNX (fp32, onnxsim, parity) → FP16 ONNX → INT8 Q/DQ ONNX + TensorRT calibration cache
+ CPU INT8 ONNX (u8 activations, for ONNX Runtime's integer kernels) → accuracy gate (ONNX Runtime, held-out
validation) → TensorRT engine (when TensorRT is installed).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from feredge import artifact, config
from feredge._optional import require
from feredge.artifact import Artifact, file_sha256
from feredge.errors import FeredgeError
from feredge.outputs import refuse_existing

#: format → (file suffix, what it is). Drives argument checks, outputs and benchmarks.
FORMATS = {
    "fp32": (".onnx", "ONNX fp32, simplified, dynamic or fixed batch"),
    "fp16": (".fp16.onnx", "ONNX with fp16 weights and compute, fp32 inputs/outputs"),
    "int8": (".int8.onnx", "ONNX with Q/DQ (symmetric int8, per-channel weights) for explicit quantisation"),
    "int8-cpu": (".int8-cpu.onnx", "ONNX with QDQ (uint8 activations, per-channel int8 weights) for CPUs"),
    "calib-cache": (".calib.cache", "TensorRT calibration cache for the implicit INT8 path (TensorRT 8.5/8.6)"),
    "engine": (".engine", "TensorRT engine for this GPU and TensorRT version (TensorRT for RTX: for --gpu-arch)"),
}


@dataclass
class ExportOptions:
    out: Path = Path("exports")
    fp16: bool = False
    int8: bool = False
    calib_data: Path | None = None
    calib_size: int = config.CALIB_SIZE
    calib_method: str = config.CALIB_METHOD
    batch: int | None = None  # fixed batch; None with dynamic=True
    dynamic: bool = True
    max_batch: int = config.MAX_BATCH
    engine: bool = False
    implicit_int8: bool = False  # engine from fp32 ONNX + calibration cache (TensorRT 8.5/8.6 implicit INT8)
    max_drop: float = config.MAX_DROP
    # the CPU INT8 file's weights in 7 bits: exact on x86 without VNNI too, where 8-bit u8·s8 products saturate
    # (feredge.calibration.cpu_int8); measured within 0.15 points of 8-bit weights on PublicTest (2026-12-07)
    cpu_reduce_range: bool = True
    seed: int = config.SEED  # the validation carve, for a checkpoint without a saved config (else its own)
    val_fraction: float = config.VAL_FRACTION
    parity_tol: float = 1e-3
    overwrite: bool = False
    trt_version: str = "8.6.1"  # for the calibration cache header when TensorRT is not installed
    workspace_mb: int = 1024
    dla_core: int | None = None
    gpu_arch: str | None = None  # TensorRT for RTX targets, e.g. "sm86,sm89"; None: every one it supports
    triton: bool = False  # also write a Triton model repository (+ DeepStream config) under out/triton


def _path(out: Path, stem: str, fmt: str) -> Path:
    return Path(out) / f"{stem}{FORMATS[fmt][0]}"


def check_options(opts: ExportOptions) -> None:
    """Refuse option values that would fail late or silently change what is exported."""
    if opts.batch is not None and opts.batch < 1:
        raise FeredgeError(f"--batch {opts.batch}: expected a positive batch size (omit it for a dynamic batch)")
    config.check_ranges(cli=True, max_batch=opts.max_batch, calib_size=opts.calib_size, max_drop=opts.max_drop)
    if opts.int8 and opts.calib_data is None:
        raise FeredgeError("--int8 needs --data DIR (a prepared dataset with a 'train' split)")
    if opts.implicit_int8 and not (opts.int8 and opts.engine):
        raise FeredgeError("--implicit-int8 builds the engine from the calibration cache: it needs --int8 and --engine")
    if opts.gpu_arch is not None:
        from feredge.engine.tensorrt import parse_archs

        if not opts.engine:
            raise FeredgeError("--gpu-arch chooses the GPUs a TensorRT-for-RTX engine runs on: it needs --engine")
        parse_archs(opts.gpu_arch)
    if opts.engine:
        _check_engine_options(opts)
    artifact.check_folder(opts.out)


def _check_engine_options(opts: ExportOptions) -> None:
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


def _validation_images(data: Path | None, seed: int, val_fraction: float, n: int | None = None):
    """Held-out validation images/labels: the trainer's carve of 'train' (never the test split)."""
    from feredge.calibration.dataset import holdout_split
    from feredge.data.store import load_split

    _, hold = holdout_split(data, val_fraction, seed)
    hold = hold[:n] if n else hold
    train = load_split(data, "train")
    return np.asarray(train.images[hold]), np.asarray(train.labels[hold])


def onnx_accuracy(path: Path, images: np.ndarray, labels: np.ndarray, classes: list[str],
                  exact_qdq: bool | None = None) -> dict:
    """Accuracy of an ONNX file on uint8 faces through the runtime's `Classifier` (what users run);
    ``exact_qdq=True`` evaluates Q/DQ as written (TensorRT's semantics), False with ONNX Runtime's fused
    int8 kernels, None as the runner chooses for this CPU (``feredge.runtime.ort``)."""
    from feredge.metrics import metrics
    from feredge.runtime.classifier import Classifier

    with Classifier(path, device="cpu", exact_qdq=exact_qdq) as classifier:
        logits = classifier.logits(images)
    m = metrics(logits, labels, classes)
    return {"accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"],
            "size_bytes": Path(path).stat().st_size}


def parity(model, onnx_path: Path, images: np.ndarray, spec, atol: float = 1e-3) -> dict:
    """Compare PyTorch's logits with the exported file's through the runtime's `Classifier` on real images;
    beyond ``atol`` is an error."""
    torch = require("torch")
    from feredge.runtime.classifier import Classifier
    from feredge.vision.preprocess import preprocess_faces

    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(preprocess_faces(images, spec))).numpy()
    with Classifier(onnx_path, device="cpu") as classifier:
        got = classifier.logits(images)
    report = {"n": len(images), "max_abs_diff": float(np.abs(ref - got).max()),
              "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean())}
    if report["max_abs_diff"] > atol:
        raise FeredgeError(f"{onnx_path}: ONNX differs from PyTorch by {report['max_abs_diff']:.2e} "
                           f"(> {atol:.0e}) on {len(images)} images; top-1 agreement {report['top1_agreement']:.4f}")
    return report


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


def _int8_cpu(fp32: Path, info: Artifact, stem: str, opts: ExportOptions, out: Path,
              report: dict) -> tuple[Path, Artifact]:
    """The CPU flavour from the same fp32 file and calibration set (ONNX Runtime's fast u8·s8 form)."""
    onnx = require("onnx")
    from feredge.calibration.cpu_int8 import PRECISION, quantize_cpu
    from feredge.calibration.dataset import calibration_set
    from feredge.export.onnx import save_onnx
    from feredge.vision.preprocess import preprocess_faces

    calib = calibration_set(opts.calib_data, opts.calib_size, opts.seed, opts.val_fraction)
    x = preprocess_faces(calib.images, info.input_spec)
    path = quantize_cpu(fp32, x, _path(out, stem, "int8-cpu"), opts.calib_method, opts.cpu_reduce_range)
    sources = {**info.sources, "onnx_fp32": file_sha256(fp32)}
    derived = info.derive("onnx", PRECISION, sources=sources, versions=info.versions,
                          calibration=dict(report["calibration"]), **info.details,
                          target="cpu", reduce_range=opts.cpu_reduce_range,
                          quantization="QDQ, asymmetric uint8 activations, symmetric per-channel int8 weights"
                                       + (" in 7 bits" if opts.cpu_reduce_range else ""))
    return save_onnx(onnx.load(str(path)), path, derived, check=False), derived


def _trt_version_or(default: str) -> str:
    try:
        import tensorrt

        return tensorrt.__version__
    except ImportError:
        return default


def _gate(paths: dict[str, Path], spec, classes: list[str], opts: ExportOptions, report: dict) -> str | None:
    """Measure every precision on held-out validation; the refusal message when INT8 loses > max_drop pp."""
    from feredge.runtime.ort_session import int8_kernels_saturate, narrow_weights

    images, labels = _validation_images(opts.calib_data, opts.seed, opts.val_fraction)
    acc = {fmt: onnx_accuracy(p, images, labels, classes, exact_qdq=True)
           for fmt, p in paths.items() if fmt in ("fp32", "fp16", "int8", "int8-cpu")}
    if "int8" in paths:
        # What ONNX Runtime's fused int8 CPU kernels give on this CPU; on x86 without VNNI they saturate, so
        # the gate uses the exact Q/DQ arithmetic TensorRT implements (and the runner does there, too).
        acc["int8_ort_cpu_kernels"] = onnx_accuracy(paths["int8"], images, labels, classes, exact_qdq=False)
    if "int8-cpu" in paths:
        # The CPU file is judged as the runtime runs it here: in ONNX Runtime's integer kernels unless they clip
        # (x86 without VNNI, weights in 8 bits); its exact Q/DQ figure is kept beside it.
        acc["int8_cpu_exact_qdq"] = acc["int8-cpu"]
        narrow = narrow_weights(artifact.from_onnx_properties(_properties(paths["int8-cpu"]), str(paths["int8-cpu"])))
        if narrow or not int8_kernels_saturate():
            acc["int8-cpu"] = onnx_accuracy(paths["int8-cpu"], images, labels, classes, exact_qdq=False)
    report["accuracy"] = {"split": f"held-out {opts.val_fraction:.0%} of train (seed {opts.seed})", "n": len(images),
                          **acc}
    refused = {}
    for fmt in ("int8", "int8-cpu"):  # each INT8 file on its own: a refused one does not take the other along
        if fmt not in acc:
            continue
        drop = 100 * (acc["fp32"]["accuracy"] - acc[fmt]["accuracy"])
        report["accuracy"][f"{fmt.replace('-', '_')}_drop_pp"] = drop
        if drop > opts.max_drop:
            refused[fmt] = f"{acc[fmt]['accuracy']:.4f} vs FP32 {acc['fp32']['accuracy']:.4f}, a drop of {drop:.2f} pp"
    if not refused:
        return None
    report["int8_refused_formats"] = list(refused)
    what = "; ".join(f"{fmt} {why}" for fmt, why in refused.items())
    return (f"INT8 refused: {what} on {len(images)} held-out images, > --max-drop {opts.max_drop}; try another "
            f"--calib-method (entropy, minmax, percentile), a larger --calib-size, or ship FP16")


def _properties(path: Path) -> dict[str, str]:
    onnx = require("onnx")
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _engine(paths: dict[str, Path], infos: dict[str, Artifact], stem: str, opts: ExportOptions, report: dict) -> None:
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
    from feredge.export.onnx import export_onnx
    from feredge.models.checkpoint import load_checkpoint

    check_options(opts)
    model, info = load_checkpoint(checkpoint)
    trained = info.details.get("config") or {}  # the gate must judge on the checkpoint's own validation carve
    opts = replace(opts, seed=trained.get("seed", opts.seed), val_fraction=trained.get("val_fraction",
                                                                                       opts.val_fraction))
    spec = info.input_spec
    stem = Path(checkpoint).stem
    wanted = ["fp32"] + (["fp16"] if opts.fp16 else []) + (["int8", "int8-cpu", "calib-cache"] if opts.int8 else [])
    refuse_existing([_path(opts.out, stem,
                           f) for f in wanted] + ([Path(opts.out) / "triton" / "fer"] if opts.triton else []),
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
            images = np.random.default_rng(opts.seed).integers(0, 256, (64, spec.size, spec.size, spec.channels),
                                                               np.uint8)
        report["parity"] = parity(model, fp32, images, spec, opts.parity_tol)
        report["parity"]["images"] = "held-out validation" if opts.calib_data is not None else "random (no --calib-data)"
        if opts.fp16:
            paths["fp16"], infos["fp16"] = to_fp16(fp32, fp32_info, _path(staging, stem, "fp16"))
        if opts.int8:
            paths["int8"], paths["calib-cache"], infos["int8"] = _int8(fp32, fp32_info, stem, opts, staging, report)
            paths["int8-cpu"], infos["int8-cpu"] = _int8_cpu(fp32, fp32_info, stem, opts, staging, report)
        refusal = _gate(paths, spec, list(info.classes), opts, report) if opts.calib_data is not None else None
        if refusal:
            report["int8_refused"] = refusal
            gone = list(report["int8_refused_formats"])
            gone += ["calib-cache"] if "int8" in gone else []
            paths = {f: p for f, p in paths.items() if f not in gone}
        paths = _publish(paths, opts.out)
    report["files"] = {fmt: str(p) for fmt, p in paths.items()}
    report_path = Path(opts.out) / f"{stem}.export.json"
    artifact.atomic_write_text(report_path, json.dumps(report, indent=2))
    if refusal:
        raise FeredgeError(f"{refusal} ({'/'.join(paths)} written to {opts.out})")
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


def summary(report: dict) -> tuple[list[str], tuple[str, list[str], list[list[str]]] | None, list[str]]:
    """What `feredge export` prints: the parity line, the accuracy table (title, header, rows) when the
    gate ran, and one line per written file."""
    p = report["parity"]
    head = [f"parity vs PyTorch on {p['n']} {p['images']} images: max |Δlogit| {p['max_abs_diff']:.2e}, "
            f"top-1 agreement {p['top1_agreement']:.4f}"]
    table, tail = None, []
    if "accuracy" in report:
        acc = report["accuracy"]
        table = (f"accuracy on {acc['n']} images ({acc['split']}, ONNX Runtime)", ["format", "top-1", "mean-class",
                                                                                   "MB"],
                 [[f, f"{acc[f]['accuracy']:.4f}", f"{acc[f]['mean_class_accuracy']:.4f}",
                   f"{acc[f]['size_bytes'] / 1e6:.2f}"]
                  for f in ("fp32", "fp16", "int8", "int8_ort_cpu_kernels", "int8-cpu", "int8_cpu_exact_qdq")
                  if f in acc])
        if "int8" in acc:
            tail.append("int8: exact Q/DQ arithmetic (what TensorRT computes); int8_ort_cpu_kernels: ONNX Runtime's "
                        "fused int8 CPU kernels on this machine")
        if "int8-cpu" in acc:
            tail.append("int8-cpu: the CPU file (uint8 activations) as ONNX Runtime runs it on this machine; "
                        "int8_cpu_exact_qdq: the same file in exact Q/DQ arithmetic")
    tail += [f"{fmt:<12} {path}" for fmt, path in report["files"].items() if not fmt.startswith("engine-")]
    tail += [_engine_line(precision, e) for precision, e in report.get("engines", {}).items()]
    for precision, e in report.get("engines", {}).items():
        tail += [f"  {precision}: skipped sm{arch.replace('.', '')}: {why}"
                 for arch, why in e.get("skipped_compute_capabilities", {}).items()]
    tail += [f"triton {key:<6} {path}" for key, path in report.get("triton", {}).items()]
    return head, table, tail


def _engine_line(precision: str, e: dict) -> str:
    """``engine fp16   PATH (1.23 MB, built in 0.41 s, tensorrt-rtx 1.7.1.116 for sm80, sm86, …)``."""
    built = "reused" if e.get("reused") else f"built in {e.get('build_s', 0):.2f} s"
    archs = e.get("compute_capabilities") or []
    target = f" for sm{', sm'.join(a.replace('.', '') for a in archs)}" if archs else ""
    return (f"{'engine ' + precision:<12} {e['path']} ({e.get('size_bytes', 0) / 1e6:.2f} MB, {built}, "
            f"{e['flavour']} {e['version']}{target})")


def _triton(paths: dict[str, Path], opts: ExportOptions) -> dict[str, str]:
    """The Triton repository of the engine when one was built, else of the fp32 ONNX."""
    from feredge.export.triton import Batching, write_export_repository

    served = next((paths[k] for k in ("engine-int8", "engine-fp16", "engine-fp32") if k in paths), paths["fp32"])
    files = write_export_repository(Path(opts.out) / "triton", served, Batching(max_batch=opts.batch or opts.max_batch),
                                    opts.overwrite)
    return {key: str(path) for key, path in files.items()}
