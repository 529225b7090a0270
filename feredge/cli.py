"""Command line: each command turns its options into one library call and prints the result (conventions:
--model, --device auto|cpu|cuda, --json to stdout, --out + --overwrite; defaults read from their modules)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.core import ParameterSource

from feredge import cli_options as opt
from feredge._version import __version__
from feredge.bench.measure import Window
from feredge.bench.run import DEFAULT_OUT as BENCH_OUT
from feredge.bench.run import DEVICES as BENCH_DEVICES
from feredge.bench.run import BenchOptions
from feredge.calibration.quantize import METHODS
from feredge.camera.app import CameraOptions
from feredge.config import DEVICE, TrainConfig
from feredge.data import DATASETS
from feredge.errors import FeredgeError
from feredge.evaluate import DEFAULT_OUT as EVAL_OUT
from feredge.explain import DEFAULT_OUT as EXPLAIN_OUT
from feredge.export.exporter import ExportOptions
from feredge.export.triton import Batching
from feredge.predict import DEFAULT_OUT as PREDICT_OUT
from feredge.runtime.base import BACKENDS
from feredge.serve.triton import DEFAULT_WORKDIR, HOST, LOAD_TIMEOUT_S, Ports
from feredge.train.inference import TTA_MODES
from feredge.train.recipes import RECIPES
from feredge.vision.detector import DETECT_MAX_SIDE, DETECT_MIN_SIDE, DETECTORS

PATH = opt.PATH


@click.group(cls=opt.Group, context_settings={"show_default": True})
@click.version_option(__version__, prog_name="feredge")
def cli() -> None:
    """feredge: facial-expression recognition from PyTorch training to TensorRT on NVIDIA GPUs."""


@cli.group(cls=opt.Group)
def data() -> None:
    """Prepare datasets and inspect them (feredge's fast on-disk format)."""


@data.command("prepare")
@click.argument("kind", type=click.Choice(DATASETS))
@click.argument("source", type=PATH)
@click.option("--out", required=True, type=PATH, help="output folder")
@click.option("--skip-bad", is_flag=True, help="skip bad records and report how many, instead of stopping")
@click.option("--overwrite", is_flag=True, help="replace an existing prepared dataset in --out")
@click.option("--size", type=int, default=None, help="resize images to SIZE×SIZE (default: dataset's own)")
@click.option("--seed", type=int, default=0, help="seed of subject-wise splits (CK+, JAFFE)")
@click.option("--ferplus", type=PATH, default=None, help="FER+ vote CSV: adds soft labels")
@click.option("--ferplus-majority", is_flag=True, help="replace FER2013 labels by the FER+ majority vote")
@click.option("--contempt", type=click.Choice(["drop", "class", "error"]), default="drop",
              help="CK+ contempt: drop (counted), keep as an 8th class, or stop")
def data_prepare(kind: str, source: Path, out: Path, skip_bad: bool, **options) -> None:
    """Convert SOURCE (a FER2013 CSV or folder tree, RAF-DB basic, CK+, JAFFE) into --out."""
    from feredge.data import prepare

    ds, problems = prepare(kind, source, out, skip_bad=skip_bad, **options)
    click.echo(f"prepared {kind} into {out}: " + ", ".join(f"{n} {len(s)}" for n, s in ds.splits.items()))
    for key in ("ferplus_matched", "ferplus_unmatched", "contempt_dropped"):
        if key in ds.meta:
            click.echo(f"{key.replace('_', ' ')}: {ds.meta[key]}")
    if skip_bad:
        click.echo(problems.summary())
    if problems.ignored:
        click.echo(problems.ignored_summary() + f" (all listed in {out / 'meta.json'})")


@data.command("face-boxes")
@click.argument("root", type=PATH)
@click.option("--split", default="train", help="split whose faces to detect")
@click.option("--seed", type=int, default=0, help="seed of the paste positions and sizes")
@click.option("--overwrite", is_flag=True, help="replace the split's existing face_boxes.npy")
def data_face_boxes(root: Path, split: str, seed: int, overwrite: bool) -> None:
    """Run the face detector on each face of a prepared split (pasted into a frame) and store its box, so
    training can cut detector crops (`--set detector_crops=P`)."""
    from feredge.data.face_boxes import FILE, add_face_boxes
    from feredge.data.store import load_split
    from feredge.outputs import output_file

    load_split(root, split)  # a missing dataset or split is reported before any work
    output_file(Path(root) / split / FILE, overwrite, "ROOT")
    path, found = add_face_boxes(root, split, seed)
    click.echo(f"wrote {path}: the detector found {found:.1%} of the faces")


@data.command("info")
@click.argument("root", type=PATH)
@opt.as_json
def data_info(root: Path, as_json: bool) -> None:
    """Print class counts per split of a prepared dataset."""
    from feredge.data.store import read_meta

    meta = read_meta(root)
    if as_json:
        click.echo(json.dumps({k: meta[k] for k in ("dataset", "classes", "image_shape", "splits")}, indent=2))
        return
    splits = meta["splits"]
    rows = [[c, *(s["class_counts"][i] for s in splits.values())] for i, c in enumerate(meta["classes"])]
    rows.append(["total", *(s["count"] for s in splits.values())])
    opt.table(f"{meta['dataset']} ({root}), images {'×'.join(map(str, meta['image_shape']))}", ["class", *splits], rows)


@cli.command("models")
@opt.as_json
def models_cmd(as_json: bool) -> None:
    """List registered models. Input spec, parameters and GFLOPs (multiply-accumulates) of each; without torch,
    the shipped (trained) models only, from their descriptions."""
    from feredge._optional import available
    from feredge.weights import shipped_rows

    rows = shipped_rows()
    if available("torch"):
        from feredge.models.profile import registry_rows

        rows = registry_rows({r["name"] for r in rows})
    else:
        click.echo("torch is not installed: listing only the shipped models (pip install 'feredge[train]' lists every "
                   "architecture)", err=True)
    if as_json:
        return click.echo(json.dumps(rows, indent=2))
    opt.table("feredge models (GFLOPs = multiply-accumulates per image)", ["name", "input", "params", "GFLOPs", "heads"],
              [[r["name"], r["input"], f"{r['params']:,}", f"{r['gflops']:.3f}", "+".join(r["heads"])] for r in rows])


@cli.command("train")
@click.option("--config", "config_file", type=PATH, help="TOML file with TrainConfig fields")
@click.option("--recipe", help=f"a named preset: {', '.join(RECIPES)}")
@click.option("--model", help=f"registered model name (see `feredge models`; default: {TrainConfig.model})")
@click.option("--data", type=PATH, help="prepared dataset folder (from `feredge data prepare`)")
@click.option("--out", type=PATH, help=f"run folder for logs and checkpoints (default: {TrainConfig.out})")
@click.option("--epochs", type=int, help=f"passes over the training split (default: {TrainConfig.epochs})")
@click.option("--batch-size", type=int, help=f"images per optimiser step (default: {TrainConfig.batch_size})")
@click.option("--lr", type=float, help=f"peak learning rate (default: {TrainConfig.lr})")
@click.option("--seed", type=int, help=f"seed of the validation carve, init and augmentation (default: {TrainConfig.seed})")
@click.option("--device", default=DEVICE, metavar="[auto|cpu|cuda|cuda:N]",
              help="where to train (auto: cuda when available, else cpu)")
@click.option("--set", "sets", multiple=True, help="any TrainConfig field, e.g. --set mixup=0.2 (repeatable)")
@click.option("--resume", is_flag=True, help="continue the run in --out exactly where it stopped (its saved settings "
              "are the starting point: --out alone is enough)")
@click.option("--stop-after", type=int, help="run at most N more epochs (split long runs into pieces)")
@click.option("--overwrite", is_flag=True, help="replace the run already in --out (its weights, state and log)")
@click.pass_context
def train_cmd(ctx: click.Context, config_file, recipe, sets, resume, stop_after, overwrite, **options) -> None:
    """Train a registered model on a prepared dataset.

    Settings are read in this order, each source overriding the ones before it: the run's saved
    settings (with --resume), then --recipe, then --config, then --set, then the options given here."""
    from feredge.train.settings import train_config
    from feredge.train.trainer import train

    given = {k: v for k, v in options.items() if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}
    cfg = train_config(given, recipe, config_file, sets, resume)
    try:
        click.echo(json.dumps(train(cfg, resume=resume, stop_after=stop_after, overwrite=overwrite)))
    except KeyboardInterrupt:
        if (Path(cfg.out) / "last_state.pt").is_file():
            click.echo(f"interrupted: {cfg.out} keeps its last finished epoch; `feredge train --out {cfg.out} "
                       "--resume` continues it", err=True)
        raise SystemExit(130) from None


@cli.command("soup")
@click.argument("checkpoints", nargs=-1, required=True, type=PATH)
@click.option("--out", required=True, type=PATH, help="the soup's .safetensors file")
@click.option("--uniform", is_flag=True, help="average all (default: greedy, best first, each kept if validation holds)")
@click.option("--recalibrate-bn", is_flag=True, help="re-estimate BatchNorm statistics on the clean training images")
@click.option("--data", type=PATH, help="prepared dataset (default: the checkpoints' own)")
@click.option("--holdout", type=float, default=0.0, show_default=True, help="fraction of the validation carve the "
              "greedy pass does not see, on which the soup and each ingredient are also scored (report_accuracy)")
@click.option("--overwrite", is_flag=True, help="replace an existing --out")
def soup_cmd(checkpoints, out: Path, uniform: bool, recalibrate_bn: bool, data: Path | None, holdout: float,
             overwrite: bool) -> None:
    """Average fine-tunes of one checkpoint into one model of the same size (a weight soup), scored on their
    validation carve. A soup among them counts as the fine-tunes it kept, so new fine-tunes continue it."""
    from feredge.outputs import output_file
    from feredge.train.soup import make_soup

    if out.suffix != ".safetensors":
        raise FeredgeError(f"{out}: --out must name a .safetensors file")
    result = make_soup(list(checkpoints), output_file(out, overwrite), greedy=not uniform, bn=recalibrate_bn,
                       data=data, holdout=holdout, progress=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(result))


@cli.command("eval")
@opt.model("a checkpoint, ONNX or TensorRT engine", multiple=True)
@click.option("--data", required=True, type=PATH, help="prepared dataset folder")
@click.option("--split", default="val", help="split to evaluate (FER2013: val = PublicTest)")
@click.option("--tta", type=click.Choice(TTA_MODES), default="none",
              help="test-time augmentation (ten-crop: checkpoints only)")
@click.option("--ensemble", is_flag=True, help="average the softmax outputs of every --model")
@opt.out(EVAL_OUT)
@opt.device()
def eval_cmd(models, data: Path, split: str, tta: str, ensemble: bool, out, overwrite: bool, device: str) -> None:
    """Evaluate models on a prepared split. Checkpoints, ONNX files, TensorRT engines or shipped models by
    name, or an ensemble of them."""
    from feredge.evaluate import run, table

    report, json_path, png = run(list(models), data, split, tta, ensemble, out, overwrite, device)
    opt.table(*table(report))
    click.echo(f"report: {json_path}  " + (f"confusion matrix: {png}" if png else
                                           "(no confusion.png: matplotlib is not installed, pip install 'feredge[train]')"))


@cli.command("export")
@opt.model("a .safetensors checkpoint")
@click.option("--out", type=PATH, default=ExportOptions.out, help="output folder")
@click.option("--fp16", is_flag=True, help="also write an FP16 ONNX (fp32 inputs/outputs)")
@click.option("--int8", is_flag=True, help="also write an INT8 Q/DQ ONNX and a TensorRT calibration cache")
@click.option("--calib-data", type=PATH, help="prepared dataset: calibration + accuracy gate")
@click.option("--calib-size", type=int, default=ExportOptions.calib_size,
              help="calibration images, class-balanced from train (never the held-out validation images)")
@click.option("--calib-method", type=click.Choice(METHODS), default=ExportOptions.calib_method,
              help="how activation ranges are chosen")
@click.option("--batch", type=int, help="fixed batch size (default: dynamic batch axis)")
@click.option("--dynamic", is_flag=True, help="dynamic batch axis (the default when --batch is not given)")
@click.option("--max-batch", type=int, default=ExportOptions.max_batch, help="engine profile maximum batch")
@click.option("--engine", is_flag=True, help="build a TensorRT engine (needs TensorRT and a GPU)")
@click.option("--implicit-int8", is_flag=True,
              help="with --int8 --engine: build from the fp32 ONNX + calibration cache (TensorRT 8.5/8.6 implicit INT8)")
@click.option("--max-drop", type=float, default=ExportOptions.max_drop,
              help="INT8 may lose at most this many percentage points of top-1")
@click.option("--dla-core", type=int, help="build for this Jetson DLA core (GPU fallback on)")
@click.option("--overwrite", is_flag=True, help="replace existing files in --out")
@click.option("--format", "repo_format", type=click.Choice(["files", "triton"]), default="files",
              help="triton: also write a Triton model repository (+ DeepStream config) under --out/triton")
def export_cmd(model, batch, dynamic, repo_format, **options) -> None:
    """Export a checkpoint to ONNX, FP16, INT8 or TensorRT (an ONNX file, or without torch a shipped name: FP16)."""
    from feredge._optional import available
    from feredge.export.exporter import export_model, summary
    from feredge.weights import resolve

    if batch is not None and dynamic:
        raise FeredgeError("--batch N fixes the batch size; --dynamic makes it variable: choose one")
    opts = ExportOptions(batch=batch, dynamic=batch is None, triton=repo_format == "triton", **options)
    head, table, tail = summary(export_model(resolve(model, "checkpoint" if available("torch") else "onnx"), opts))
    click.echo("\n".join(head))
    if table:
        opt.table(*table)
    click.echo("\n".join(tail))


@cli.command("predict")
@click.argument("images", nargs=-1, type=PATH)
@opt.model()
@click.option("--backend", type=click.Choice(BACKENDS), help="default: from the file type")
@opt.out(PREDICT_OUT)
@click.option("--tta", is_flag=True, help="average with the mirrored face (flip TTA)")
@opt.device(auto="cuda when the backend can run there, else cpu; TensorRT engines always run on cuda")
@opt.as_json
def predict_cmd(images, model, backend, out, overwrite, tta, device, as_json) -> None:
    """Classify the faces' expressions in images. Faces are detected in IMAGES, files or folders of photos
    (default: the bundled group photo); annotated copies and results.json (absolute paths) go to --out."""
    from feredge.predict import expand_folders, output_folder, predict_images

    images = expand_folders(list(images) or [Path(__file__).resolve().parent / "media" / "group.jpg"],
                            log=lambda m: click.echo(m, err=True))
    folder = output_folder(out, overwrite)
    document = predict_images(images, model, backend, folder, tta, device)
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    for r in document["results"]:
        if not r["faces"]:
            click.echo(f"{r['image']}: no faces found (detect {r['ms']['detect']:.1f} ms)")
        else:
            opt.table(f"{r['image']}: {len(r['faces'])} faces (detect {r['ms']['detect']:.1f} ms, "
                      f"classify {r['ms']['classify']:.1f} ms)", ["face", "box (x, y, w, h)", "label", "confidence"],
                      [[i, ", ".join(f"{v:.0f}" for v in f["box"]), f["label"], f"{f['confidence']:.2f}"]
                       for i, f in enumerate(r["faces"])])
        click.echo(f"annotated: {r['annotated']}")
    click.echo(f"results: {folder / 'results.json'}")


@cli.command("bench")
@opt.model("a .onnx / .engine file, or a .safetensors checkpoint (exported first)", multiple=True,
           default="every shipped model")
@click.option("--backend", type=click.Choice(BACKENDS), help="default: from each file's type")
@opt.values("--precision", "precisions", BenchOptions.precisions, "for a checkpoint: the precisions to export and bench")
@opt.values("--batch", "batches", BenchOptions.batches, "model-alone batch sizes", int)
@opt.values("--faces", "faces", BenchOptions.faces, "faces per frame for the end-to-end runs", int)
@opt.device(BENCH_DEVICES, "jetson on a Jetson, cuda when a GPU is usable, else cpu")
@click.option("--data", type=PATH, help="prepared dataset: accuracy beside every latency")
@click.option("--split", default=BenchOptions.split, help="split of --data whose top-1 is reported")
@click.option("--warmup-ms", type=float, default=Window.warmup_ms,
              help="untimed runs before each timed window, in milliseconds")
@click.option("--duration-s", type=float, default=Window.duration_s, help="length of each timed window, in seconds")
@click.option("--cuda-graph/--no-cuda-graph", default=BenchOptions.cuda_graph,
              help="replay GPU runs as a CUDA graph where the runner can capture one")
@click.option("--threads", type=int, default=BenchOptions.threads, help="ONNX Runtime intra-op threads (0: its default)")
@click.option("--replay-tegrastats", type=PATH, help="take Jetson telemetry from a recorded log")
@click.option("--compare", "compare_files", nargs=2, type=PATH,
              help="lay two report.json files side by side instead of measuring")
@opt.out(BENCH_OUT, "a report")
def bench_cmd(models, compare_files, warmup_ms, duration_s, **options) -> None:
    """Measure latency, accuracy, size, memory and energy. Per --model (a checkpoint is exported first; none:
    the shipped models): model alone and end to end, and on Jetson power and energy per inference."""
    from feredge.bench import report as reports
    from feredge.bench.run import run

    if compare_files:
        opt.table(*reports.compare_files(*compare_files))
        return
    opts = BenchOptions(artifacts=list(models), window=Window(warmup_ms, duration_s), **options)
    report, files = run(opts, log=lambda m: click.echo(m, err=True))
    opt.table(f"feredge bench on {report['device']} — {report['semantics']['window']}", *reports.table(report))
    click.echo("  ".join(f"{k}: {v}" for k, v in files.items()))


@cli.command("run-camera")
@click.option("--source", default=CameraOptions.source,
              help="camera index, /dev/videoN, a video file, rtsp://… / http://…, a GStreamer pipeline, or an image folder")
@opt.model()
@click.option("--backend", type=click.Choice(BACKENDS), help="default: from the file type")
@opt.device(auto="cuda when the backend can run there, else cpu")
@click.option("--detector", type=click.Choice(DETECTORS), default=CameraOptions.detector,
              help="face detector (haar: OpenCV 4.x only)")
@click.option("--detect-every", type=int, default=CameraOptions.detect_every,
              help="run the detector every Nth frame, track between")
@click.option("--detect-max-side", type=int, default=DETECT_MAX_SIDE,
              help=f"detector input: longer side in pixels (at least {DETECT_MIN_SIDE})")
@click.option("--display/--no-display", default=CameraOptions.display, help="show the annotated frames in a window")
@click.option("--jsonl", "json_path", type=PATH, help="write one JSON line per frame to this file")
@click.option("--record", type=PATH, help="write the annotated video (.mp4 or .avi)")
@click.option("--overwrite", is_flag=True, help="replace existing --jsonl / --record files")
@click.option("--max-faces", type=int, default=CameraOptions.max_faces, help="largest faces kept per frame")
@click.option("--smooth", type=float, default=CameraOptions.smooth,
              help="weight of the newest frame in each track's probabilities (1 = no smoothing)")
@click.option("--align/--no-align", default=CameraOptions.align, help="rotate each face so the eyes are level")
@click.option("--max-frames", type=int, default=CameraOptions.max_frames, help="stop after N frames (0: when the source ends)")
@click.option("--sequence", is_flag=True,
              help="an image --source folder is one scene's frames in name order (tracked), not separate photos")
@click.option("--server", help="host:port of `feredge serve` (HTTP): send the batched face crops there for inference")
def run_camera_cmd(**options) -> None:
    """Live expression recognition. On a camera, video file, stream or image folder."""
    from feredge.camera.app import run_camera, summary_lines

    summary = run_camera(CameraOptions(**options), log=lambda m: click.echo(m, err=True))
    click.echo("\n".join(summary_lines(summary)))


@cli.command("explain")
@click.argument("images", nargs=-1, type=PATH)
@opt.model("a .safetensors checkpoint (Grad-CAM needs torch weights)")
@click.option("--data", type=PATH, help="prepared dataset: grid of each class's most confident mistakes")
@click.option("--split", default="val", help="split of --data whose mistakes are shown")
@click.option("--per-class", type=int, default=6, help="mistakes shown per true class")
@opt.out(EXPLAIN_OUT)
def explain_cmd(images, model, data, split, per_class, out, overwrite) -> None:
    """Grad-CAM heat-maps of where the model looked. Over each face in IMAGES, or (--data) over a split's most
    confident mistakes."""
    from feredge.explain import explain

    if per_class < 1:
        raise FeredgeError(f"--per-class {per_class}: expected a positive integer")
    written = explain(list(images), model, data, split, per_class, out, overwrite, log=lambda m: click.echo(m, err=True))
    for path in written:
        click.echo(path)


@cli.command("serve")
@opt.model("an exported .onnx / .engine")
@click.option("--host", default=HOST, help="address to listen on (0.0.0.0 opens it)")
@click.option("--http-port", type=int, default=Ports.http, help="HTTP/REST (KServe v2) port")
@click.option("--grpc-port", type=int, default=Ports.grpc, help="gRPC port")
@click.option("--metrics-port", type=int, default=Ports.metrics, help="Prometheus metrics port")
@click.option("--max-batch", type=int, default=Batching.max_batch, help="largest batch the dynamic batcher forms")
@click.option("--max-queue-delay-us", type=int, default=Batching.max_queue_delay_us,
              help="microseconds a request may wait for others to join its batch")
@click.option("--max-queue-size", type=int, default=Batching.max_queue_size,
              help="requests waiting beyond this are rejected with an error")
@click.option("--instances", type=int, default=Batching.instances, help="model instances (each its own process)")
@click.option("--workdir", type=PATH, default=None, help=f"where the model repository and the server log are "
              f"written (default: {DEFAULT_WORKDIR}, or {DEFAULT_WORKDIR}-2, -3 … when that holds earlier ones)")
@click.option("--overwrite", is_flag=True, help="replace the repository and log in an explicit --workdir")
@click.option("--load-timeout", type=float, default=LOAD_TIMEOUT_S, help="seconds to wait for the models")
def serve_cmd(model, host, http_port, grpc_port, metrics_port, max_batch, max_queue_delay_us, max_queue_size,
              instances, workdir, overwrite, load_timeout) -> None:
    """Serve a model with Triton Inference Server. Models `fer` (faces in, probabilities out, dynamic
    batching) and `fer_frame` (an encoded image in, faces out); stops cleanly on Ctrl-C or SIGTERM."""
    from feredge.serve.triton import serve
    from feredge.weights import resolve

    serve(resolve(model), Batching(max_batch, max_queue_delay_us, max_queue_size, instances),
          Ports(http_port, grpc_port, metrics_port), host, workdir, overwrite, load_timeout, echo=click.echo)


def main() -> None:
    cli(prog_name="feredge")


if __name__ == "__main__":
    main()
