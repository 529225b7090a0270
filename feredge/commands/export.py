"""One export entry point for every format (as in Ultralytics): a table of formats drives it.

checkpoint → ONNX (fp32, onnxsim, parity) → FP16 ONNX → INT8 Q/DQ ONNX + TensorRT calibration cache
+ CPU INT8 ONNX (u8 activations, for ONNX Runtime's integer kernels) → accuracy gate (ONNX Runtime, held-out
validation) → TensorRT engine (when TensorRT is installed).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from feredge import artifact, config
from feredge._optional import require
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
    # the CPU INT8 file's weights in 7 bits, exact in ONNX Runtime's fused kernels on x86 without VNNI too
    # (feredge.calibration.cpu_int8). Off: 8 bits lost at most 0.03 points of top-1 against fp32, 7 bits up to
    # 0.21 (feredge-s/-n, held-out validation and PublicTest, 2026-12-07); CPUs without VNNI run fp32 instead
    cpu_reduce_range: bool = False
    seed: int = config.SEED  # the validation carve, for a checkpoint without a saved config (else its own)
    val_fraction: float = config.VAL_FRACTION
    parity_tol: float = 1e-3
    overwrite: bool = False
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
        raise FeredgeError("--int8 needs --data DIR: a prepared dataset (calibration and the accuracy gate), or a "
                           "folder of face pictures (calibration only)")
    if opts.implicit_int8 and not (opts.int8 and opts.engine):
        raise FeredgeError("--implicit-int8 builds the engine from the calibration cache: it needs --int8 and --engine")
    if opts.gpu_arch is not None:
        from feredge.engine.tensorrt import parse_archs

        if not opts.engine:
            raise FeredgeError("--gpu-arch chooses the GPUs a TensorRT-for-RTX engine runs on: it needs --engine")
        parse_archs(opts.gpu_arch)
    if opts.engine:
        from feredge.commands.export_engines import check_engine_options

        check_engine_options(opts)
    artifact.check_folder(opts.out)


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


def parity(checkpoint: Path, onnx_path: Path, images: np.ndarray, atol: float = 1e-3) -> dict:
    """Compare the checkpoint (torch) with the exported file through the runtime's `Classifier`, both as users
    run them — pre-processing and a crop model's centre crop included — on real images; beyond ``atol`` is an
    error."""
    from feredge.runtime.classifier import Classifier

    with Classifier(checkpoint, backend="torch", device="cpu") as reference:
        ref = reference.logits(images)
    with Classifier(onnx_path, device="cpu") as classifier:
        got = classifier.logits(images)
    report = {"n": len(images), "max_abs_diff": float(np.abs(ref - got).max()),
              "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean())}
    if report["max_abs_diff"] > atol:
        raise FeredgeError(f"{onnx_path}: ONNX differs from PyTorch by {report['max_abs_diff']:.2e} "
                           f"(> {atol:.0e}) on {len(images)} images; top-1 agreement {report['top1_agreement']:.4f}")
    return report


def _calibration_input(opts: ExportOptions, spec) -> tuple[np.ndarray, dict]:
    """The model inputs both INT8 files are calibrated on, chosen once: class-balanced training images of a
    prepared dataset (never its validation carve), or the faces found in a folder of pictures."""
    from feredge.calibration.dataset import calibration_set
    from feredge.calibration.faces import folder_inputs, is_prepared
    from feredge.vision.preprocess import preprocess_faces

    assert opts.calib_data is not None
    if not is_prepared(opts.calib_data):
        x, record = folder_inputs(opts.calib_data, spec, opts.calib_size, opts.seed)
        return x, {"method": opts.calib_method, **record}
    calib = calibration_set(opts.calib_data, opts.calib_size, opts.seed, opts.val_fraction)
    return preprocess_faces(calib.images, spec), {"method": opts.calib_method, "images": len(calib.images),
                                                  "seed": opts.seed, "digest": calib.digest,
                                                  "source": str(opts.calib_data)}


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
            refused[fmt] = (f"{acc[fmt]['accuracy']:.4f} vs FP32 {acc['fp32']['accuracy']:.4f} on {len(images)} "
                            f"held-out images, a drop of {drop:.2f} pp > --max-drop {opts.max_drop}")
    if not refused:
        return None
    report["int8_refused_formats"] = list(refused)
    what = "; ".join(f"{fmt} {why}" for fmt, why in refused.items())
    return (f"INT8 refused: {what}; try another --calib-method (entropy, minmax, percentile), a larger "
            f"--calib-size, or ship FP16")


def _properties(path: Path) -> dict[str, str]:
    onnx = require("onnx")
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


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
    from feredge.calibration.faces import is_prepared
    from feredge.export.onnx import export_onnx
    from feredge.export.precisions import int8_cpu, int8_qdq, to_fp16
    from feredge.models.checkpoint import load_checkpoint

    check_options(opts)
    model, info = load_checkpoint(checkpoint)
    trained = info.details.get("config") or {}  # the gate must judge on the checkpoint's own validation carve
    opts = replace(opts, seed=trained.get("seed", opts.seed),
                   val_fraction=trained.get("val_fraction", opts.val_fraction))
    spec = info.input_spec
    stem = Path(checkpoint).stem
    wanted = ["fp32"] + (["fp16"] if opts.fp16 else []) + (["int8", "int8-cpu", "calib-cache"] if opts.int8 else [])
    outputs = [_path(opts.out, stem, f) for f in wanted] + ([Path(opts.out) / "triton" / "fer"] if opts.triton else [])
    refuse_existing(outputs, opts.overwrite)
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    report: dict = {"checkpoint": str(checkpoint), "model": info.model, "classes": list(info.classes),
                    "input_spec": spec.to_dict(), "batch": "dynamic" if opts.dynamic else opts.batch}
    with tempfile.TemporaryDirectory(prefix=f".{stem}.staging-", dir=opts.out) as tmp:
        staging = Path(tmp)
        fp32, fp32_info = export_onnx(model, info, _path(staging, stem, "fp32"), None if opts.dynamic else opts.batch,
                                      source=Path(checkpoint))
        paths, infos = {"fp32": fp32}, {"fp32": fp32_info}
        labelled = opts.calib_data is not None and is_prepared(opts.calib_data)
        if labelled:
            images, _ = _validation_images(opts.calib_data, opts.seed, opts.val_fraction, 256)
        else:
            side = spec.size + 8 if info.details.get("eval_crop") else spec.size  # a crop model sees its crop
            images = np.random.default_rng(opts.seed).integers(0, 256, (64, side, side, spec.channels), np.uint8)
        report["parity"] = parity(Path(checkpoint), fp32, images, opts.parity_tol)
        report["parity"]["images"] = "held-out validation" if labelled else "random (no prepared --data)"
        if opts.fp16:
            paths["fp16"], infos["fp16"] = to_fp16(fp32, fp32_info, _path(staging, stem, "fp16"))
        if opts.int8:
            x, report["calibration"] = _calibration_input(opts, spec)
            paths["int8"], paths["calib-cache"], infos["int8"] = int8_qdq(
                fp32, fp32_info, x, report["calibration"], _path(staging, stem, "int8"),
                _path(staging, stem, "calib-cache"))
            paths["int8-cpu"], infos["int8-cpu"] = int8_cpu(fp32, fp32_info, x, report["calibration"],
                                                            _path(staging, stem, "int8-cpu"), opts.cpu_reduce_range)
        refusal = _gate(paths, spec, list(info.classes), opts, report) if labelled else None
        if opts.int8 and not labelled:
            report["accuracy"] = {"not_run": f"{opts.calib_data} is a folder of unlabelled pictures: the INT8 files "
                                  "are calibrated but not gated; pass a prepared dataset as --data to gate them"}
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
            from feredge.commands.export_engines import build_engines

            build_engines(paths, infos, stem, opts, report)
        finally:
            report["files"] = {fmt: str(p) for fmt, p in paths.items()}
            artifact.atomic_write_text(report_path, json.dumps(report, indent=2))
    if opts.triton:
        report["triton"] = _triton(paths, opts)
        artifact.atomic_write_text(report_path, json.dumps(report, indent=2))
    return report


def export_model(path: Path, opts: ExportOptions) -> dict:
    """`feredge export --model M`: a checkpoint through `export`; a feredge ONNX file (what a shipped model's
    name gives without torch: its ONNX ships in the wheel) through `export_onnx_file`, with no torch."""
    return export_onnx_file(Path(path), opts) if Path(path).suffix == ".onnx" else export(path, opts)


def export_onnx_file(source: Path, opts: ExportOptions) -> dict:
    """A feredge ONNX as it is (a shipped model's: fp32, dynamic batch) and, with ``fp16``, its conversion checked
    against it through the Classifier; --int8, --engine and --batch rebuild the graph from the checkpoint."""
    from feredge.export.precisions import to_fp16
    from feredge.runtime.classifier import Classifier

    if opts.int8 or opts.engine or opts.batch is not None:
        raise FeredgeError(f"{source}: from an ONNX file, export gives it as it is and its --fp16 conversion; "
                           "--int8, --engine and --batch rebuild the model from its checkpoint (a .safetensors file, "
                           "or a shipped model's name with torch: pip install 'feredge[train]')")
    check_options(opts)
    info, stem = artifact.read(source), source.stem
    if info.precision != "fp32":
        raise FeredgeError(f"{source}: is a {info.precision} ONNX; export converts an fp32 ONNX (the model's "
                           ".onnx) or a checkpoint, and this file is already made: use it as it is")
    wanted = ["fp32"] + (["fp16"] if opts.fp16 else [])
    refuse_existing([_path(opts.out, stem, f) for f in wanted]
                    + ([Path(opts.out) / "triton" / "fer"] if opts.triton else []), opts.overwrite)
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
            images = np.random.default_rng(opts.seed).integers(0, 256, (64, spec.size, spec.size, spec.channels),
                                                               np.uint8)
            with Classifier(fp32, device="cpu") as a, Classifier(paths["fp16"], device="cpu") as b:
                la, lb = a.logits(images), b.logits(images)
            report["parity"] = {"n": len(images), "images": "random", "against": "the fp32 ONNX",
                                "max_abs_diff": float(np.abs(la - lb).max()),
                                "top1_agreement": float((la.argmax(1) == lb.argmax(1)).mean())}
        paths = _publish(paths, opts.out)
    report["files"] = {fmt: str(p) for fmt, p in paths.items()}
    if opts.triton:
        report["triton"] = _triton(paths, opts)
    artifact.atomic_write_text(Path(opts.out) / f"{stem}.export.json", json.dumps(report, indent=2))
    return report


def summary(report: dict) -> tuple[list[str], tuple[str, list[str], list[list[str]]] | None, list[str]]:
    """What `feredge export` prints: the parity line, the accuracy table (title, header, rows) when the
    gate ran, and one line per written file."""
    from feredge.commands.export_engines import engine_line

    p = report["parity"]
    head = [f"{report['onnx']} as it is (its parity with PyTorch was checked when it was exported)"
            ] if report.get("onnx") else []
    if p is not None:
        head.append(f"parity vs {p.get('against', 'PyTorch')} on {p['n']} {p['images']} images: max |Δlogit| "
                    f"{p['max_abs_diff']:.2e}, top-1 agreement {p['top1_agreement']:.4f}")
    table, tail = None, []
    if "not_run" in report.get("accuracy", {}):
        head.append(f"accuracy gate not run: {report['accuracy']['not_run']}")
    elif "accuracy" in report:
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
    tail += [engine_line(precision, e) for precision, e in report.get("engines", {}).items()]
    for precision, e in report.get("engines", {}).items():
        tail += [f"  {precision}: skipped sm{arch.replace('.', '')}: {why}"
                 for arch, why in e.get("skipped_compute_capabilities", {}).items()]
    tail += [f"triton {key:<6} {path}" for key, path in report.get("triton", {}).items()]
    return head, table, tail


def _triton(paths: dict[str, Path], opts: ExportOptions) -> dict[str, str]:
    """The Triton repository of the engine when one was built, else of the fp32 ONNX."""
    from feredge.export.triton import Batching, write_export_repository

    served = next((paths[k] for k in ("engine-int8", "engine-fp16", "engine-fp32") if k in paths), paths["fp32"])
    files = write_export_repository(Path(opts.out) / "triton", served, Batching(max_batch=opts.batch or opts.max_batch),
                                    opts.overwrite)
    return {key: str(path) for key, path in files.items()}
