"""Command line: each command turns its options into one library call and prints the result."""

from __future__ import annotations

import json
from pathlib import Path

import click

from feredge._version import __version__
from feredge.errors import FeredgeError


class _Group(click.Group):
    """Turns FeredgeError (bad user input) into a one-line message and a non-zero exit code; anything else
    is a bug in feredge and keeps its traceback, under a line that says so."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FeredgeError as exc:
            raise click.ClickException(str(exc)) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            if ctx.parent is None:
                click.echo("feredge: internal error — a bug in feredge, not in your input; please report it "
                           "with the traceback below", err=True)
            raise


def _table(title: str, columns: list[str], rows: list[list]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c == columns[0] else "right")
    for r in rows:
        table.add_row(*[str(v) for v in r])
    console = Console()
    if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="feredge")
def cli() -> None:
    """feredge: facial-expression recognition from PyTorch training to TensorRT on NVIDIA GPUs."""


@cli.group(cls=_Group)
def data() -> None:
    """Prepare datasets into feredge's fast on-disk format and inspect them."""


@data.command("prepare")
@click.argument("kind", type=click.Choice(["fer2013", "rafdb", "ckplus", "jaffe"]))
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="output folder")
@click.option("--skip-bad", is_flag=True, help="skip bad records and report how many, instead of stopping")
@click.option("--overwrite", is_flag=True, help="replace an existing prepared dataset in --out")
@click.option("--size", type=int, default=None, help="resize images to SIZE×SIZE (default: dataset's own)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of subject-wise splits (CK+, JAFFE)")
@click.option("--ferplus", type=click.Path(path_type=Path), default=None, help="FER+ vote CSV: adds soft labels")
@click.option("--ferplus-majority", is_flag=True, help="replace FER2013 labels by the FER+ majority vote")
@click.option("--contempt", type=click.Choice(["drop", "class", "error"]), default="drop", show_default=True,
              help="CK+ contempt: drop (counted), keep as an 8th class, or stop")
def data_prepare(kind: str, source: Path, out: Path, skip_bad: bool, overwrite: bool, size: int | None, seed: int,
                 ferplus: Path | None, ferplus_majority: bool, contempt: str) -> None:
    """Convert SOURCE (a FER2013 CSV or folder tree, RAF-DB basic, CK+, JAFFE) into --out."""
    from feredge.data import prepare

    ds, problems = prepare(kind, source, out, skip_bad=skip_bad, overwrite=overwrite, size=size, seed=seed,
                           ferplus=ferplus, ferplus_majority=ferplus_majority, contempt=contempt)
    counts = ", ".join(f"{n} {len(s)}" for n, s in ds.splits.items())
    click.echo(f"prepared {kind} into {out}: {counts}")
    for key in ("ferplus_matched", "ferplus_unmatched", "contempt_dropped"):
        if key in ds.meta:
            click.echo(f"{key.replace('_', ' ')}: {ds.meta[key]}")
    if skip_bad:
        click.echo(problems.summary())
    if problems.ignored:
        click.echo(problems.ignored_summary() + f" (all listed in {out / 'meta.json'})")


@data.command("face-boxes")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--split", default="train", show_default=True, help="split whose faces to detect")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the paste positions and sizes")
@click.option("--overwrite", is_flag=True, help="replace the split's existing face_boxes.npy")
def data_face_boxes(root: Path, split: str, seed: int, overwrite: bool) -> None:
    """Run the face detector on each face of a prepared split (pasted into a frame) and store its box, so
    training can cut detector crops (`--set detector_crops=P`)."""
    from feredge.data.face_boxes import FILE, add_face_boxes
    from feredge.data.store import load_split

    load_split(root, split)  # a missing dataset or split is reported before any work
    if (Path(root) / split / FILE).exists() and not overwrite:
        raise FeredgeError(f"{Path(root) / split / FILE}: already exists; pass --overwrite to detect again")
    path, found = add_face_boxes(root, split, seed)
    click.echo(f"wrote {path}: the detector found {found:.1%} of the faces")


@data.command("info")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
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
    _table(f"{meta['dataset']} ({root}), images {'×'.join(map(str, meta['image_shape']))}", ["class", *splits], rows)


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def models_cmd(as_json: bool) -> None:
    """List registered models with input spec, parameters and GFLOPs (multiply-accumulates)."""
    from feredge.models import create_model, list_models, model_info
    from feredge.models.nano import fuse_for_deploy
    from feredge.models.profile import count_macs, count_params

    rows = []
    for name in list_models():
        info = model_info(name)
        model = fuse_for_deploy(create_model(name))  # what is exported and run (RepVGG branches folded)
        s = info.input_spec
        rows.append({"name": name, "input": f"{s.channels}x{s.size}x{s.size}", "params": count_params(model),
                     "gflops": count_macs(model, (s.channels, s.size, s.size)) / 1e9, "heads": info.heads,
                     "description": info.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _table("feredge models (GFLOPs = multiply-accumulates per image)", ["name", "input", "params", "GFLOPs", "heads"],
           [[r["name"], r["input"], f"{r['params']:,}", f"{r['gflops']:.3f}", "+".join(r["heads"])] for r in rows])


def _parse_set(pairs: tuple[str, ...]) -> dict:
    """--set key=value pairs; values parsed as JSON when they can be (numbers, booleans, lists)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise FeredgeError(f"--set {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@cli.command("train")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML file with TrainConfig fields")
@click.option("--recipe", help="a named preset: vgg-a, rmn, mmnet, multitask-cnn, feredge-s, feredge-n")
@click.option("--model", help="registered model name (see `feredge models`)")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="prepared dataset folder")
@click.option("--out", type=click.Path(path_type=Path), help="run folder for logs and checkpoints")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--seed", type=int)
@click.option("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
@click.option("--set", "sets", multiple=True, help="any TrainConfig field, e.g. --set mixup=0.2")
@click.option("--resume", is_flag=True, help="continue the run in --out exactly where it stopped (its saved settings "
              "are the starting point: --out alone is enough)")
@click.option("--stop-after", type=int, help="run at most N more epochs (split long runs into pieces)")
@click.option("--overwrite", is_flag=True, help="replace the run already in --out (its weights, state and log)")
def train_cmd(config_file, recipe, sets, resume, stop_after, overwrite, **options) -> None:
    """Train a model: (with --resume, the run's saved settings <) recipe < config file < --set < explicit options."""
    from feredge.config import config_from_dict, load_config_file
    from feredge.train.recipes import recipe as get_recipe
    from feredge.train.trainer import run_config, train

    values: dict = run_config(options["out"]) if resume and options["out"] else {}
    values.update(get_recipe(recipe) if recipe else {})
    if config_file:
        values.update(load_config_file(config_file))
    values.update(_parse_set(sets))
    renames = {"data_dir": "data"}
    values.update({renames.get(k, k): str(v) if isinstance(v, Path) else v for k, v in options.items() if v is not None})
    cfg = config_from_dict(values, str(config_file or "options"))
    result = train(cfg, resume=resume, stop_after=stop_after, overwrite=overwrite)
    click.echo(json.dumps(result))


@cli.command("soup")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="the soup's .safetensors file")
@click.option("--uniform", is_flag=True, help="average every checkpoint (default: greedy, best first, each kept "
              "only when validation accuracy does not drop)")
@click.option("--recalibrate-bn", is_flag=True, help="re-estimate BatchNorm statistics on the clean training images")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="prepared dataset (default: the "
              "checkpoints' own)")
@click.option("--overwrite", is_flag=True, help="replace an existing --out")
def soup_cmd(checkpoints, out, uniform, recalibrate_bn, data_dir, overwrite) -> None:
    """Average fine-tunes of one checkpoint into one model of the same size (a weight soup), scored on
    the ingredients' validation carve."""
    from feredge.train.soup import make_soup

    if out.suffix != ".safetensors":
        raise FeredgeError(f"{out}: --out must name a .safetensors file")
    if out.exists() and not overwrite:
        raise FeredgeError(f"{out}: already exists; pass --overwrite to replace it")
    result = make_soup(list(checkpoints), out, greedy=not uniform, bn=recalibrate_bn, data=data_dir,
                       progress=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(result))


@cli.command("eval")
@click.argument("checkpoints", nargs=-1)
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path), help="prepared dataset folder")
@click.option("--split", default="val", show_default=True, help="split to evaluate (FER2013: val = PublicTest)")
@click.option("--tta", type=click.Choice(["none", "hflip", "ten-crop"]), default="none", show_default=True)
@click.option("--ensemble", is_flag=True, help="average the softmax outputs of all CHECKPOINTS")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/eval"), show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="where checkpoints run (default: cuda when available); exported files run on cpu unless cuda")
def eval_cmd(checkpoints, data_dir, split, tta, ensemble, out, device) -> None:
    """Evaluate model files or shipped models by name — checkpoint, ONNX, TensorRT engine (default: the
    shipped default model) — or an ensemble of them, on a prepared split."""
    from feredge.evaluate import evaluate_checkpoints, write_report
    from feredge.weights import resolve

    from feredge.artifact import check_folder

    check_folder(out)
    device = device or ""
    checkpoints = [resolve(c, "checkpoint") for c in checkpoints] or [resolve(None, "checkpoint")]
    if len(checkpoints) > 1 and not ensemble:
        raise FeredgeError(f"{len(checkpoints)} checkpoints given; pass --ensemble to average them")
    report, _ = evaluate_checkpoints(checkpoints, data_dir, split, tta, device)
    json_path, png = write_report(report, out, f"{', '.join(c.stem for c in checkpoints)} on {split} (tta {tta})")
    _table(f"top-1 {report['accuracy']:.4f}  mean-class {report['mean_class_accuracy']:.4f}  (n={report['n']}, tta {tta})",
           ["class", "precision", "recall", "f1", "support"],
           [[c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
            for c, m in report["per_class"].items()])
    click.echo(f"report: {json_path}  confusion matrix: {png}")


@cli.command("export")
@click.argument("checkpoint", required=False)
@click.option("--out", type=click.Path(path_type=Path), default=Path("exports"), show_default=True)
@click.option("--fp16", is_flag=True, help="also write an FP16 ONNX (fp32 inputs/outputs)")
@click.option("--int8", is_flag=True, help="also write an INT8 Q/DQ ONNX and a TensorRT calibration cache")
@click.option("--calib-data", type=click.Path(path_type=Path), help="prepared dataset: calibration + accuracy gate")
@click.option("--calib-size", type=int, default=512, show_default=True)
@click.option("--calib-method", type=click.Choice(["entropy", "minmax", "percentile"]), default="percentile",
              show_default=True)
@click.option("--batch", type=int, help="fixed batch size (default: dynamic batch axis)")
@click.option("--dynamic", is_flag=True, help="dynamic batch axis (the default when --batch is not given)")
@click.option("--max-batch", type=int, default=32, show_default=True, help="engine profile maximum batch")
@click.option("--engine", is_flag=True, help="build a TensorRT engine (needs TensorRT and a GPU)")
@click.option("--implicit-int8", is_flag=True,
              help="with --int8 --engine: build from the fp32 ONNX + calibration cache (TensorRT 8.5/8.6 implicit INT8)")
@click.option("--max-drop", type=float, default=1.0, show_default=True, help="INT8 may lose at most this many pp")
@click.option("--dla-core", type=int, help="build for this Jetson DLA core (GPU fallback on)")
@click.option("--overwrite", is_flag=True, help="replace existing files in --out")
@click.option("--format", "repo_format", type=click.Choice(["files", "triton"]), default="files", show_default=True,
              help="triton: also write a Triton model repository (+ DeepStream config) under --out/triton")
def export_cmd(checkpoint, batch, dynamic, repo_format, **options) -> None:
    """Export CHECKPOINT (a .safetensors file or a shipped model's name; default: the shipped default model)
    to ONNX / FP16 / INT8 / TensorRT."""
    from feredge.export.exporter import ExportOptions, export
    from feredge.weights import resolve

    if batch is not None and dynamic:
        raise FeredgeError("--batch N fixes the batch size; --dynamic makes it variable: choose one")
    opts = ExportOptions(batch=batch, dynamic=batch is None, **options)
    report = export(resolve(checkpoint, "checkpoint"), opts)
    p = report["parity"]
    click.echo(f"parity vs PyTorch on {p['n']} {p['images']} images: max |Δlogit| {p['max_abs_diff']:.2e}, "
               f"top-1 agreement {p['top1_agreement']:.4f}")
    if "accuracy" in report:
        acc = report["accuracy"]
        _table(f"accuracy on {acc['n']} images ({acc['split']}, ONNX Runtime)", ["format", "top-1", "mean-class", "MB"],
               [[f, f"{acc[f]['accuracy']:.4f}", f"{acc[f]['mean_class_accuracy']:.4f}", f"{acc[f]['size_bytes'] / 1e6:.2f}"]
                for f in ("fp32", "fp16", "int8", "int8_ort_cpu_kernels") if f in acc])
        if "int8" in acc:
            click.echo("int8: exact Q/DQ arithmetic (what TensorRT computes); int8_ort_cpu_kernels: ONNX Runtime's "
                       "fused int8 CPU kernels on this machine")
    for fmt, path in report["files"].items():
        click.echo(f"{fmt:<12} {path}")
    if repo_format == "triton":
        from feredge.serve.repository import Batching, write_export_repository

        served = Path(report["files"].get("engine") or report["files"]["fp32"])
        max_batch = opts.batch or opts.max_batch
        files = write_export_repository(Path(opts.out) / "triton", served, Batching(max_batch=max_batch), opts.overwrite)
        for key, path in files.items():
            click.echo(f"triton {key:<6} {path}")


@cli.command("predict")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--model", help="a shipped model's name (feredge-s, feredge-n) or a .onnx / .engine / .safetensors file "
                             "(default: the shipped default model)")
@click.option("--backend", type=click.Choice(["ort", "trt", "torch"]), help="default: from the file type")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="output folder (default: runs/predict, or runs/predict-2, -3 … when that holds earlier results)")
@click.option("--overwrite", is_flag=True, help="replace earlier results in --out")
@click.option("--tta", is_flag=True, help="average with the mirrored face (flip TTA)")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="cuda: GPU pre-processing + inference (TensorRT engines always run there)")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON")
def predict_cmd(images, model, backend, out, overwrite, tta, device, as_json) -> None:
    """Detect faces in IMAGES (default: the bundled group photo) and classify their expressions."""
    from feredge.predict import output_folder, predict_images
    from feredge.weights import resolve

    images = list(images) or [Path(__file__).resolve().parent / "media" / "group.jpg"]
    results = predict_images(images, resolve(model), backend, output_folder(out, overwrite), tta, device)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        _table(f"{r['image']}: {len(r['faces'])} faces (detect {r['ms']['detect']:.1f} ms, "
               f"classify {r['ms']['classify']:.1f} ms)", ["face", "box (x, y, w, h)", "label", "confidence"],
               [[i, ", ".join(f"{v:.0f}" for v in f["box"]), f["label"], f"{f['confidence']:.2f}"]
                for i, f in enumerate(r["faces"])])
        click.echo(f"annotated: {r['annotated']}")


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise FeredgeError(f"{option} {text!r}: expected integers, e.g. '1 8 32'") from None


@cli.command("bench")
@click.argument("artifacts", nargs=-1)
@click.option("--backend", type=click.Choice(["ort", "trt", "torch"]), help="default: from each file's type")
@click.option("--precision", "precisions", default="fp32", show_default=True,
              help="for a checkpoint: the precisions to export and bench, e.g. 'fp32 fp16 int8'")
@click.option("--batch", "batches", default="1 8 32", show_default=True, help="model-alone batch sizes")
@click.option("--faces", default="1 4 16", show_default=True, help="faces per frame for the end-to-end runs")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "jetson"]), default="auto", show_default=True)
@click.option("--data", type=click.Path(path_type=Path), help="prepared dataset: accuracy beside every latency")
@click.option("--split", default="val", show_default=True)
@click.option("--warmup-ms", type=float, default=200.0, show_default=True)
@click.option("--duration-s", type=float, default=3.0, show_default=True)
@click.option("--cuda-graph/--no-cuda-graph", default=True, show_default=True)
@click.option("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
@click.option("--replay-tegrastats", type=click.Path(path_type=Path), help="take Jetson telemetry from a recorded log")
@click.option("--compare", "compare_files", nargs=2, type=click.Path(path_type=Path),
              help="lay two report.json files side by side instead of measuring")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/bench"), show_default=True)
def bench_cmd(artifacts, backend, precisions, batches, faces, device, data, split, warmup_ms, duration_s, cuda_graph,
              threads, replay_tegrastats, compare_files, out) -> None:
    """Latency (model alone and end to end), accuracy, size, memory and — on Jetson — power and energy per
    inference, for ARTIFACTS (files or shipped model names; a checkpoint is exported first; none: the
    shipped models)."""
    from feredge.bench import report as reports
    from feredge.bench.measure import Window
    from feredge.bench.run import BenchOptions, bench

    if compare_files:
        header, rows = reports.compare(reports.load(compare_files[0]), reports.load(compare_files[1]))
        _table(f"A = {compare_files[0]}   B = {compare_files[1]}", header, rows)
        return
    opts = BenchOptions(list(artifacts), backend, tuple(precisions.replace(",", " ").split()),
                        _ints(batches, "--batch"), _ints(faces, "--faces"), device, data, split,
                        Window(warmup_ms, duration_s), cuda_graph, out, replay_tegrastats, threads)
    report = bench(opts, log=lambda m: click.echo(m, err=True))
    files = reports.write(report, out)
    _table(f"feredge bench on {report['device']} — {report['semantics']['window']}", *reports.table(report))
    click.echo("  ".join(f"{k}: {v}" for k, v in files.items()))


@cli.command("run-camera")
@click.option("--source", default="0", show_default=True,
              help="camera index, /dev/videoN, a video file, rtsp://… / http://…, a GStreamer pipeline, or an image folder")
@click.option("--model", help="a shipped model's name or a .onnx / .engine / .safetensors file (default: shipped default)")
@click.option("--backend", type=click.Choice(["ort", "trt", "torch"]), help="default: from the file type")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--detector", type=click.Choice(["yunet", "haar"]), default="yunet", show_default=True)
@click.option("--detect-every", type=int, default=1, show_default=True, help="run the detector every Nth frame, track between")
@click.option("--detect-max-side", type=int, default=640, show_default=True, help="detector input: longer side in pixels")
@click.option("--display/--no-display", default=False, show_default=True, help="show the annotated frames in a window")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="one JSON line per frame")
@click.option("--record", type=click.Path(path_type=Path), help="write the annotated video (.mp4 or .avi)")
@click.option("--overwrite", is_flag=True, help="replace existing --json / --record files")
@click.option("--max-faces", type=int, default=16, show_default=True, help="largest faces kept per frame")
@click.option("--smooth", type=float, default=0.4, show_default=True,
              help="weight of the newest frame in each track's probabilities (1 = no smoothing)")
@click.option("--align/--no-align", default=False, show_default=True, help="rotate each face so the eyes are level")
@click.option("--max-frames", type=int, default=0, help="stop after N frames (0: when the source ends)")
@click.option("--server", help="host:port of `feredge serve` (HTTP): send the batched face crops there for inference")
def run_camera_cmd(source, json_path, **options) -> None:
    """Live expression recognition on a camera, video file, stream or image folder."""
    from feredge.camera.app import CameraOptions, run_camera

    summary = run_camera(CameraOptions(source=source, json_path=json_path, **options),
                         log=lambda m: click.echo(m, err=True))
    stages = ", ".join(f"{k} {v:.1f}" for k, v in summary["mean_ms"].items())
    click.echo(f"{summary['frames']} frames, {summary['faces']} faces ({summary['stopped']}); dropped "
               f"{summary['dropped']}, corrupt {summary['corrupt']}, reconnects {summary['reconnects']}; "
               f"mean ms per frame: {stages}")
    for key in ("json", "record"):
        if summary[key]:
            click.echo(f"{key}: {summary[key]}")


@cli.command("explain")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--model", help="a shipped model's name or a .safetensors checkpoint (Grad-CAM needs torch weights)")
@click.option("--data", type=click.Path(path_type=Path), help="prepared dataset: grid of each class's most confident mistakes")
@click.option("--split", default="val", show_default=True)
@click.option("--per-class", type=int, default=6, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/explain"), show_default=True)
def explain_cmd(images, model, data, split, per_class, out) -> None:
    """Grad-CAM heat-maps: over each face in IMAGES, or (--data) over a split's most confident mistakes."""
    from feredge.explain import explain_images, explain_split
    from feredge.weights import resolve

    if not images and data is None:
        raise FeredgeError("give IMAGES to explain, or --data DIR for a split's mistakes")
    if per_class < 1:
        raise FeredgeError(f"--per-class {per_class}: expected a positive integer")
    from feredge.artifact import check_folder

    check_folder(out)
    checkpoint = resolve(model, "checkpoint")
    if checkpoint.suffix != ".safetensors":
        raise FeredgeError(f"{checkpoint}: Grad-CAM needs a torch checkpoint (.safetensors or a shipped model's name)")
    written = explain_images(list(images), checkpoint, out) if images else []
    if data is not None:
        written.append(explain_split(checkpoint, data, split, out, per_class))
    for path in written:
        click.echo(path)


@cli.command("serve")
@click.option("--model", help="a shipped model's name or an exported .onnx / .engine (default: the shipped default)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0 opens it)")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True)
@click.option("--max-batch", type=int, default=64, show_default=True, help="largest batch the dynamic batcher forms")
@click.option("--max-queue-delay-us", type=int, default=500, show_default=True)
@click.option("--max-queue-size", type=int, default=256, show_default=True,
              help="requests waiting beyond this are rejected with an error")
@click.option("--instances", type=int, default=1, show_default=True, help="model instances (each its own process)")
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("runs/serve"), show_default=True,
              help="where the model repository and the server log are written")
@click.option("--load-timeout", type=float, default=180.0, show_default=True, help="seconds to wait for the models")
def serve_cmd(model, host, http_port, grpc_port, metrics_port, max_batch, max_queue_delay_us, max_queue_size,
              instances, workdir, load_timeout) -> None:
    """Serve the model behind a real Triton Inference Server: `fer` (faces in, probabilities out, dynamic
    batching) and `fer_frame` (an encoded image in, faces out). Stops cleanly on Ctrl-C or SIGTERM."""
    import signal

    from feredge.serve.repository import Batching, write_python_repository
    from feredge.serve.triton import Ports, TritonServer
    from feredge.weights import resolve

    path = resolve(model)
    if path.suffix == ".safetensors":
        raise FeredgeError(f"{path}: serve an exported model (.onnx or .engine); export it with `feredge export`")
    repo = write_python_repository(Path(workdir) / "repository", path,
                                   Batching(max_batch, max_queue_delay_us, max_queue_size, instances))
    server = TritonServer(repo, Path(workdir), Ports(http_port, grpc_port, metrics_port), host)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())  # the wait below returns once Triton has stopped
    try:
        seconds = server.wait_ready(load_timeout)
        click.echo(f"Triton ready in {seconds:.1f} s: http://{host}:{http_port}  grpc {host}:{grpc_port}  "
                   f"metrics http://{host}:{metrics_port}/metrics  models: fer, fer_frame  log: {server.log_path}")
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        code = server.stop()
    click.echo(f"Triton stopped (exit code {code})")


def main() -> None:
    cli(prog_name="feredge")


if __name__ == "__main__":
    main()
