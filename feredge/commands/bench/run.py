"""`feredge bench`: latency, accuracy and energy per artifact, backend, precision and batch.

Every artifact goes through the same runner that `predict` and `eval` use (Ultralytics' rule: bench what
ships, through the path that ships), so a number in a report is a number a user will see.
"""

from __future__ import annotations

import re
import resource
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from feredge import artifact
from feredge.commands.bench import measure
from feredge.commands.bench.environment import environment, is_jetson
from feredge.config import DEVICE, PRECISION, PRECISIONS, SPLIT, THREADS
from feredge.config import DEVICES as COMMON_DEVICES
from feredge.errors import FeredgeError, absent

DEVICES = (*COMMON_DEVICES, "jetson")
DEFAULT_OUT = Path("runs/bench")


@dataclass
class BenchOptions:
    artifacts: list[str] = field(default_factory=list)  # files or shipped names; a checkpoint is exported
    backend: str | None = None
    precisions: tuple[str, ...] = (PRECISION,)  # auto: what predict and the API run here
    batches: tuple[int, ...] = (1, 8, 32)
    faces: tuple[int, ...] = (1, 4, 16)
    device: str = DEVICE
    data: Path | None = None
    split: str = SPLIT
    window: measure.Window = field(default_factory=measure.Window)
    cuda_graph: bool = True
    out: Path | None = None  # None: runs/bench, or runs/bench-2, -3 … when that holds a report
    replay_tegrastats: Path | None = None
    threads: int = THREADS
    overwrite: bool = False  # replace the report already in an explicit --out


def check_options(opts: BenchOptions) -> None:
    for name, values in (("--batch", opts.batches), ("--faces", opts.faces)):
        if not values or min(values) < 1:
            raise FeredgeError(f"{name} {' '.join(map(str, values))}: expected positive integers")
    if opts.device not in DEVICES and not re.fullmatch(r"cuda:\d+", opts.device):
        raise FeredgeError(f"--device {opts.device}: expected one of {', '.join(DEVICES)} or cuda:N")
    if opts.window.duration_s <= 0 or opts.window.warmup_ms < 0:
        raise FeredgeError("--duration-s must be > 0 and --warmup-ms ≥ 0")
    allowed = (PRECISION, *PRECISIONS)
    unknown = [p for p in opts.precisions if p not in allowed]
    if unknown:
        raise FeredgeError(f"--precision {unknown[0]}: expected some of {', '.join(allowed)}")
    if "int8" in opts.precisions and opts.data is None and any(a.endswith(".safetensors") for a in opts.artifacts):
        raise FeredgeError("--precision int8 exports a checkpoint with calibration: pass --data DIR")


def resolve_device(device: str, replay: Path | None) -> str:
    """auto → jetson on a Jetson, cuda where torch or cuda-python sees a GPU, else cpu."""
    if device == "jetson" and not is_jetson() and replay is None:
        raise FeredgeError("--device jetson: this machine is not a Jetson (no /etc/nv_tegra_release); run on the "
                           "board, or pass --replay-tegrastats FILE to analyse a recorded log")
    if device != DEVICE:
        return device
    if is_jetson():
        return "jetson"
    return "cuda" if cuda_usable() else "cpu"


def cuda_usable() -> bool:
    """True when a CUDA GPU answers through feredge's CUDA binding (cuda-python or pycuda; no torch needed)."""
    try:
        from feredge.cuda import device_identity

        device_identity()
        return True
    except Exception:  # no CUDA binding, no driver or no GPU: all mean "not usable here"
        return False


def _exported(checkpoint: Path, precisions: tuple[str, ...], opts: BenchOptions,
              log: Callable[[str], None]) -> list[Path]:
    """The checkpoint's ONNX files for ``precisions``, made through the one export entry point and reused
    while they still come from the same checkpoint."""
    from feredge.commands.export import FORMATS, ExportOptions, export

    precisions = tuple(dict.fromkeys("fp32" if p == PRECISION else p for p in precisions))  # a checkpoint's auto
    out = Path(opts.out) / "exports"
    stem = checkpoint.stem
    wanted = {p: out / f"{stem}{FORMATS[p][0]}" for p in precisions}
    fp32 = out / f"{stem}.onnx"
    fresh = all(p.is_file() for p in wanted.values()) and fp32.is_file() and \
        artifact.read(fp32).sources.get("checkpoint") == artifact.file_sha256(checkpoint)
    if not fresh:
        log(f"exporting {checkpoint} → {', '.join(precisions)} in {out}")
        export(checkpoint, ExportOptions(out=out, fp16="fp16" in precisions, int8="int8" in precisions,
                                         calib_data=opts.data, overwrite=True))
    return list(wanted.values())


def _shipped_precisions(name: str, precisions: tuple[str, ...], opts: BenchOptions, log: Callable[[str], None],
                        device: str) -> list[Path]:
    """A shipped model's file per precision: the ones it ships (fp32, its CPU INT8 file), fp16 converted from
    its shipped ONNX where it ships none (no torch needed); auto is the file predict and the API pick for
    ``device``, where the bench runs it."""
    from feredge.commands.export import FORMATS
    from feredge.export.precisions import to_fp16
    from feredge.runtime.loader import pick_precision
    from feredge.weights import ONNX_SUFFIX, WEIGHTS_DIR, shipped

    paths = []
    for precision in dict.fromkeys(pick_precision(name, device) if p == PRECISION else p for p in precisions):
        path = WEIGHTS_DIR / f"{name}{ONNX_SUFFIX[precision]}"
        if path.is_file():
            paths.append(path)
            continue
        if precision != "fp16":
            shipped(name, "onnx", precision)  # says which precisions it ships
        onnx_path = shipped(name)
        target = Path(opts.out) / "exports" / f"{onnx_path.stem}{FORMATS['fp16'][0]}"
        sha = artifact.file_sha256(onnx_path)
        if not (target.is_file() and artifact.read(target).sources.get("onnx_fp32") == sha):
            log(f"converting {onnx_path.name} → fp16 in {target.parent}")
            target.parent.mkdir(parents=True, exist_ok=True)
            to_fp16(onnx_path, artifact.read(onnx_path), target)
        paths.append(target)
    return paths


def resolve_artifacts(opts: BenchOptions, log: Callable[[str], None], device: str = "cpu") -> list[Path]:
    """The files to bench on ``device``: a checkpoint is exported to each precision first; a shipped model's
    name is its file of each precision (fp16 converted from its ONNX where none ships)."""
    from feredge.weights import resolve, shipped_names

    names = opts.artifacts or shipped_names()
    named = [not Path(item).exists() and not Path(item).suffix for item in names]  # shipped names
    if not set(opts.precisions) <= {PRECISION, "fp32"} and not any(n or item.endswith(".safetensors")
                                                    for item, n in zip(names, named)):
        raise FeredgeError(f"precision {' '.join(opts.precisions)}: applies to checkpoints and shipped models' "
                           "names, which are exported to each precision first; these files keep their own (give a "
                           ".safetensors checkpoint, a shipped name, or the exported file of that precision)")
    paths = []
    for item, name in zip(names, named):
        if name:
            paths.extend(_shipped_precisions(item, opts.precisions, opts, log, device))
            continue
        path = resolve(item)
        if not path.is_file():
            raise FeredgeError(f"{path}: {absent(path, 'a .onnx / .engine file or a .safetensors checkpoint')}")
        if path.suffix == ".safetensors" and opts.backend != "torch":
            paths.extend(_exported(path, opts.precisions, opts, log))
        else:
            paths.append(path)
    return paths


def _rss_mb() -> float:
    """Resident memory of this process now (Linux /proc), in MB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * resource.getpagesize() / 1e6


def _accuracy(classifier, data: Path, split: str) -> dict:
    from feredge.data.store import load_split, read_meta
    from feredge.metrics import metrics

    classes = read_meta(data)["classes"]
    if classes != list(classifier.classes):
        raise FeredgeError(f"{classifier.path}: classes {list(classifier.classes)} differ from {data}'s {classes}")
    part = load_split(data, split)
    logits = classifier.logits(np.asarray(part.images))
    m = metrics(logits, np.asarray(part.labels), classes)
    return {"accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"], "n": m["n"]}


def _telemetry(device: str, replay: Path | None):
    from feredge.commands.bench.tegrastats import Replay, Sampler

    if replay is not None:
        recorded = Replay(replay)  # parsed once; every timed window reports the same recorded samples
        return lambda: recorded
    if device == "jetson":
        return Sampler
    return None


def run(opts: BenchOptions, log: Callable[[str], None] = print) -> tuple[dict, dict[str, Path]]:
    """`feredge bench`: measure into a fresh (or, with ``overwrite``, the given) folder and write the
    report there in every format; returns the report and its files."""
    from feredge.commands.bench.report import FILES, write
    from feredge.outputs import output_folder

    check_options(opts)  # before the folder is chosen: a bad option is reported as itself
    opts = replace(opts, out=output_folder(opts.out, DEFAULT_OUT, FILES, opts.overwrite))
    report = bench(opts, log)
    return report, write(report, opts.out)


def bench(opts: BenchOptions, log: Callable[[str], None] = print) -> dict:
    """Run every measurement with ``opts.out`` chosen (checkpoints are exported there); returns the report
    (rows + environment + semantics)."""
    from feredge.commands.bench.tegrastats import summarize
    from feredge.recognizer import Recognizer

    check_options(opts)
    device = resolve_device(opts.device, opts.replay_tegrastats)
    # A replayed Jetson log on another machine: the telemetry is the log's, the timing runs on what is here.
    runtime_device = device if device.startswith("cuda") else (
        "cuda" if device == "jetson" and (is_jetson() or cuda_usable()) else "cpu")
    telemetry = _telemetry(device, opts.replay_tegrastats)
    env = environment(device)
    if device == "jetson" and env.get("jetson", {}).get("clocks_pinned") is False:
        log("warning: Jetson clocks are not pinned; run `sudo nvpmodel -m 0 && sudo jetson_clocks` for stable numbers")
    rows = []
    for path in resolve_artifacts(opts, log, runtime_device):
        rss0 = _rss_mb()
        with Recognizer(path, backend=opts.backend, device=runtime_device, threads=opts.threads) as rec:
            runner, info = rec.classifier.runner, rec.info
            base = {"artifact": str(path), "model": info.model, "backend": runner.backend,
                    "precision": info.precision, "size_mb": path.stat().st_size / 1e6,
                    "sha256": artifact.file_sha256(path)}
            acc = _accuracy(rec.classifier, opts.data, opts.split) if opts.data is not None else {}
            for batch in opts.batches:
                if batch > runner.max_batch:
                    log(f"skip {path.name} batch {batch}: above the runner's maximum batch {runner.max_batch}")
                    continue
                log(f"{path.name} [{runner.backend}] model alone, batch {batch} …")
                run, what = measure.model_run(runner, batch, opts.cuda_graph)
                sampler = telemetry() if telemetry else None
                times = measure.timed_window(run, opts.window)
                row = {**base, "measure": "model", "batch": batch, "faces": None, "semantics": what,
                       **measure.stats(times, batch), **acc}
                if sampler is not None:
                    power = summarize(sampler.stop(), sum(times) / 1000, len(times) * batch)
                    row["telemetry"] = {**power, "source": "replayed log" if opts.replay_tegrastats else "tegrastats"}
                rows.append(row)
            for faces in opts.faces:
                if faces > runner.max_batch:
                    log(f"skip {path.name} {faces} faces: above the runner's maximum batch {runner.max_batch}")
                    continue
                log(f"{path.name} [{runner.backend}] end to end, 720p frame with {faces} faces …")
                frame, boxes = measure.synthetic_frame(faces)
                times = measure.timed_window(measure.e2e_run(rec, frame, boxes), opts.window)
                rows.append({**base, "measure": "e2e", "batch": faces, "faces": faces,
                             "semantics": "host 1280x720 BGR frame → Recognizer: pre-process all faces → copy → "
                                          "infer (one batch) → copy → labels; detection excluded",
                             **measure.stats(times, 1), **acc})
            for row in rows:
                if row["artifact"] == str(path):
                    row["host_mem_mb"] = _rss_mb() - rss0
    if not rows:
        raise FeredgeError(f"nothing measured: every --batch and --faces is above the runners' maximum batch "
                           f"({', '.join(str(b) for b in [*opts.batches, *opts.faces])}); choose smaller ones")
    return {"format": "feredge-bench-v1", "device": device, "environment": env,
            "semantics": {"window": opts.window.describe(), "cuda_graph": opts.cuda_graph and device != "cpu",
                          "model": "model alone: GPU runners with device buffers are timed by CUDA events around "
                                   "the launch (inputs resident); other runners by host wall time of infer()",
                          "e2e": "per frame, from a host frame to labels, pre-processing included, detection excluded",
                          "accuracy": f"top-1 on {opts.data}:{opts.split} through the same runner"
                          if opts.data else None,
                          "host_mem_mb": "growth of this process's resident memory while the artifact was loaded "
                                         "and run",
                          "telemetry": (f"replayed from {opts.replay_tegrastats}" if opts.replay_tegrastats
                                        else "tegrastats sampled every 100 ms during each model-alone window"
                                        if device == "jetson" else None)},
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "window"},
            "rows": rows}
