"""Command line: each command turns its options into one library call and prints the result (conventions:
--model, --device auto|cpu|cuda, --json to stdout, --out + --overwrite; defaults read from their modules)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from feredge import config
from feredge._version import __version__
from feredge.commands import options as opt
from feredge.commands.bench.measure import Window
from feredge.commands.bench.run import DEFAULT_OUT as BENCH_OUT
from feredge.commands.bench.run import DEVICES as BENCH_DEVICES
from feredge.commands.bench.run import BenchOptions
from feredge.commands.camera.app import CameraOptions
from feredge.commands.cli_train import data, models_cmd, soup_cmd, train_cmd
from feredge.commands.evaluate import DEFAULT_OUT as EVAL_OUT
from feredge.commands.explain import DEFAULT_OUT as EXPLAIN_OUT
from feredge.commands.export import ExportOptions
from feredge.commands.predict import DEFAULT_OUT as PREDICT_OUT
from feredge.commands.serve.triton import DEFAULT_WORKDIR, HOST, LOAD_TIMEOUT_S, Ports
from feredge.errors import FeredgeError
from feredge.export.triton import Batching
from feredge.runtime.base import BACKENDS

PATH = opt.PATH


@click.group(cls=opt.Group, context_settings={"show_default": True})
@click.version_option(__version__, prog_name="feredge")
def cli() -> None:
    """feredge: facial-expression recognition from PyTorch training to TensorRT on NVIDIA GPUs."""


@cli.command("eval")
@opt.model("a checkpoint, ONNX or TensorRT engine", multiple=True)
@click.option("--data", required=True, type=PATH, help="prepared dataset folder")
@click.option("--split", default=config.SPLIT, help="split to evaluate (FER2013: val = PublicTest)")
@opt.tta(config.TTA_MODES)
@click.option("--ensemble", is_flag=True, help="average the softmax outputs of every --model")
@opt.out(EVAL_OUT)
@click.option("--backend", type=click.Choice(BACKENDS), help="default: from the file type (torch: a shipped "
              "name's checkpoint)")
@opt.device()
@opt.precision()
def eval_cmd(models, data: Path, split: str, tta: str, ensemble: bool, out, overwrite: bool, backend, device: str,
             precision: str) -> None:
    """Evaluate models on a prepared split. Checkpoints, ONNX files, TensorRT engines or shipped models by
    name (the file predict runs), or an ensemble of them."""
    from feredge.commands.evaluate import run, table

    report, json_path, png = run(list(models), data, split, tta, ensemble, out, overwrite, device, precision,
                                 backend)
    opt.table(*table(report))
    click.echo(f"report: {json_path}  " + (f"confusion matrix: {png}" if png else
                                           "(no confusion.png: matplotlib is not installed, "
                                           "pip install 'feredge[train]')"))


@cli.command("export")
@opt.model("a .safetensors checkpoint")
@click.option("--out", type=PATH, default=ExportOptions.out, help="output folder")
@opt.values("--precision", "precisions", ("fp32",), "precisions to write (fp32 is always written)")
@click.option("--fp16", is_flag=True, help="short for --precision fp32 fp16: also an FP16 ONNX (fp32 inputs/outputs)")
@click.option("--int8", is_flag=True, help="short for --precision fp32 int8: also INT8 files, Q/DQ ONNX + calib "
              "cache for TensorRT and a uint8 CPU ONNX")
@click.option("--data", "--calib-data", "calib_data", type=PATH,
              help="prepared dataset: calibration + accuracy gate (--calib-data is the same option)")
@click.option("--calib-size", type=int, default=ExportOptions.calib_size,
              help="calibration images, class-balanced from train (never the held-out validation images)")
@click.option("--calib-method", type=click.Choice(config.CALIB_METHODS), default=ExportOptions.calib_method,
              help="how activation ranges are chosen")
@click.option("--batch", type=int, help="fixed batch size (default: dynamic batch axis)")
@click.option("--dynamic", is_flag=True, help="dynamic batch axis (the default when --batch is not given)")
@opt.max_batch(ExportOptions.max_batch)
@click.option("--engine", is_flag=True, help="a TensorRT engine per precision (TensorRT for RTX: no GPU needed)")
@click.option("--implicit-int8", is_flag=True,
              help="with --int8 --engine: build from the fp32 ONNX + calibration cache "
              "(TensorRT 8.5/8.6 implicit INT8)")
@click.option("--max-drop", type=float, default=ExportOptions.max_drop, help="the most top-1 points INT8 may lose")
@click.option("--dla-core", type=int, help="build for this Jetson DLA core (GPU fallback on)")
@click.option("--gpu-arch", help="TensorRT for RTX: GPUs to build for, e.g. sm86,sm89 (default: all it can)")
@click.option("--overwrite", is_flag=True, help="replace existing files in --out")
@click.option("--format", "repo_format", type=click.Choice(["files", "triton"]), default="files",
              help="triton: also write a Triton model repository (+ DeepStream config) under --out/triton")
def export_cmd(model, batch, dynamic, repo_format, precisions, fp16, int8, **options) -> None:
    """Export a checkpoint to ONNX, FP16, INT8 or TensorRT (an ONNX file, or without torch a shipped name: FP16)."""
    from feredge._optional import available
    from feredge.commands.export import export_model, summary
    from feredge.weights import resolve

    if batch is not None and dynamic:
        raise FeredgeError("--batch N fixes the batch size; --dynamic makes it variable: choose one")
    for p in precisions:
        config.check_choice("--precision", p, config.PRECISIONS)
    opts = ExportOptions(batch=batch, dynamic=batch is None, triton=repo_format == "triton",
                         fp16=fp16 or "fp16" in precisions, int8=int8 or "int8" in precisions, **options)
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
@opt.tta()
@opt.device()
@opt.precision()
@opt.faces
@opt.threads()
@opt.as_json
def predict_cmd(images, model, backend, out, overwrite, tta, device, precision, as_json, **finding) -> None:
    """Classify the faces' expressions in images. Faces are detected in IMAGES, files or folders of photos
    (default: the bundled group photo); annotated copies and results.json (absolute paths) go to --out."""
    from feredge.commands.predict import expand_folders, output_folder, predict_images

    config.check_ranges(cli=True, detect_max_side=finding["detect_max_side"], max_faces=finding["max_faces"],
                        threads=finding["threads"])
    say = lambda m: click.echo(m, err=True)  # noqa: E731
    bundled = Path(__file__).resolve().parents[1] / "media" / "group.jpg"
    images, from_folders = expand_folders(list(images) or [bundled], log=say)
    folder = output_folder(out, overwrite)
    document = predict_images(images, model, backend, folder, tta, device, precision, from_folders, say, **finding)
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
    click.echo(f"results: {(folder / 'results.json').absolute()}")


@cli.command("bench")
@opt.model("a .onnx / .engine file, or a .safetensors checkpoint (exported first)", multiple=True,
           default="every shipped model")
@click.option("--backend", type=click.Choice(BACKENDS), help="default: from each file's type")
@opt.values("--precision", "precisions", BenchOptions.precisions,
            "for a shipped model or a checkpoint: the precisions to bench (auto: the file predict runs here; a "
            "checkpoint is exported to each first)")
@opt.values("--batch", "batches", BenchOptions.batches, "model-alone batch sizes", int)
@opt.values("--faces", "faces", BenchOptions.faces, "faces per frame for the end-to-end runs", int)
@opt.device(BENCH_DEVICES)
@click.option("--data", type=PATH, help="prepared dataset: accuracy beside every latency")
@click.option("--split", default=BenchOptions.split, help="split of --data whose top-1 is reported")
@click.option("--warmup-ms", type=float, default=Window.warmup_ms,
              help="untimed runs before each timed window, in milliseconds")
@click.option("--duration-s", type=float, default=Window.duration_s, help="length of each timed window, in seconds")
@click.option("--cuda-graph/--no-cuda-graph", default=BenchOptions.cuda_graph,
              help="replay GPU runs as a CUDA graph where the runner can capture one")
@opt.threads()
@click.option("--replay-tegrastats", type=PATH, help="take Jetson telemetry from a recorded log")
@click.option("--compare", "compare_files", nargs=2, type=PATH,
              help="lay two report.json files side by side instead of measuring")
@opt.out(BENCH_OUT, "a report")
def bench_cmd(models, compare_files, warmup_ms, duration_s, **options) -> None:
    """Measure latency, accuracy, size, memory and energy. Per --model (a checkpoint is exported first; none:
    the shipped models): model alone and end to end, and on Jetson power and energy per inference."""
    from feredge.commands.bench import report as reports
    from feredge.commands.bench.run import run

    if compare_files:
        opt.table(*reports.compare_files(*compare_files))
        return
    opts = BenchOptions(artifacts=list(models), window=Window(warmup_ms, duration_s), **options)
    report, files = run(opts, log=lambda m: click.echo(m, err=True))
    opt.table(f"feredge bench on {report['device']} — {report['semantics']['window']}", *reports.table(report))
    click.echo("  ".join(f"{k}: {v}" for k, v in files.items()))


@cli.command("run-camera")
@click.option("--source", default=CameraOptions.source,
              help="camera index, /dev/videoN, a video file, rtsp://… / http://…, a GStreamer pipeline, "
              "or an image folder")
@opt.model()
@click.option("--backend", type=click.Choice(BACKENDS), help="default: from the file type")
@opt.device()
@opt.precision()
@opt.tta()
@opt.threads()
@opt.faces
@click.option("--detect-every", type=int, default=CameraOptions.detect_every,
              help=f"run the detector every Nth frame, track between (default: {config.DETECT_EVERY}; a folder of "
              "photos: each photo)")
@click.option("--display/--no-display", default=CameraOptions.display, help="show the annotated frames in a window")
@click.option("--jsonl", "json_path", type=PATH, help="write one JSON line per frame to this file")
@click.option("--record", type=PATH, help="write the annotated video (.mp4 or .avi)")
@click.option("--overwrite", is_flag=True, help="replace existing --jsonl / --record files")
@click.option("--smooth", type=float, default=CameraOptions.smooth,
              help="weight of the newest frame in each track's probabilities (1 = no smoothing)")
@click.option("--max-frames", type=int, default=CameraOptions.max_frames,
              help="stop after N frames (0: when the source ends)")
@click.option("--sequence", is_flag=True,
              help="an image --source folder is one scene's frames in name order (tracked), not separate photos")
@click.option("--server", help="host:port of `feredge serve` (HTTP): send the batched face crops there for inference")
def run_camera_cmd(**options) -> None:
    """Live expression recognition. On a camera, video file, stream or image folder."""
    from feredge.commands.camera.app import run_camera, summary_lines

    summary = run_camera(CameraOptions(**options), log=lambda m: click.echo(m, err=True))
    click.echo("\n".join(summary_lines(summary)))


@cli.command("explain")
@click.argument("images", nargs=-1, type=PATH)
@opt.model("a .safetensors checkpoint (Grad-CAM needs torch weights)")
@click.option("--data", type=PATH, help="prepared dataset: grid of each class's most confident mistakes")
@click.option("--split", default=config.SPLIT, help="split of --data whose mistakes are shown")
@click.option("--per-class", type=int, default=config.PER_CLASS, help="mistakes shown per true class")
@opt.out(EXPLAIN_OUT)
@opt.device()
def explain_cmd(images, model, data, split, per_class, out, overwrite, device) -> None:
    """Grad-CAM heat-maps of where the model looked. Over each face in IMAGES, or (--data) over a split's most
    confident mistakes."""
    from feredge.commands.explain import explain

    if per_class < 1:
        raise FeredgeError(f"--per-class {per_class}: expected a positive integer")
    written = explain(list(images), model, data, split, per_class, out, overwrite,
                      log=lambda m: click.echo(m, err=True), device=device)
    for path in written:
        click.echo(path)


@cli.command("serve")
@opt.model("an exported .onnx / .engine")
@click.option("--host", default=HOST, help="address to listen on (0.0.0.0 opens it)")
@click.option("--http-port", type=int, default=Ports.http, help="HTTP/REST (KServe v2) port")
@click.option("--grpc-port", type=int, default=Ports.grpc, help="gRPC port")
@click.option("--metrics-port", type=int, default=Ports.metrics, help="Prometheus metrics port")
@opt.max_batch(Batching.max_batch)
@click.option("--max-queue-delay-us", type=int, default=Batching.max_queue_delay_us,
              help="microseconds a request may wait for others to join its batch")
@click.option("--max-queue-size", type=int, default=Batching.max_queue_size,
              help="requests waiting beyond this are rejected with an error")
@click.option("--instances", type=int, default=Batching.instances, help="model instances (each its own process)")
@click.option("--workdir", type=PATH, default=None, help=f"where the model repository and the server log are "
              f"written (default: {DEFAULT_WORKDIR}, or {DEFAULT_WORKDIR}-2, -3 … when that holds earlier ones)")
@click.option("--overwrite", is_flag=True, help="replace the repository and log in an explicit --workdir")
@click.option("--load-timeout", type=float, default=LOAD_TIMEOUT_S, help="seconds to wait for the models")
@opt.device()
def serve_cmd(model, host, http_port, grpc_port, metrics_port, max_batch, max_queue_delay_us, max_queue_size,
              instances, workdir, overwrite, load_timeout, device) -> None:
    """Serve a model with Triton Inference Server. Models `fer` (faces in, probabilities out, dynamic
    batching) and `fer_frame` (an encoded image in, faces out); stops cleanly on Ctrl-C or SIGTERM."""
    from feredge.commands.serve.triton import serve
    from feredge.weights import resolve

    serve(resolve(model), Batching(max_batch, max_queue_delay_us, max_queue_size, instances),
          Ports(http_port, grpc_port, metrics_port), host, workdir, overwrite, load_timeout, echo=click.echo,
          device=device)


for command in (data, models_cmd, train_cmd, soup_cmd):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="feredge")


if __name__ == "__main__":
    main()
