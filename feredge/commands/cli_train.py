"""The training side of the command line — data, models, train, soup — registered on the `feredge` group
by `feredge.commands.cli`; each command turns its options into one library call and prints the result."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.core import ParameterSource

from feredge.commands import options as opt
from feredge.config import DEVICE, TrainConfig
from feredge.data import DATASETS
from feredge.errors import FeredgeError
from feredge.train.recipes import RECIPES

PATH = opt.PATH


@click.group(cls=opt.Group)
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


@click.command("models")
@opt.as_json
def models_cmd(as_json: bool) -> None:
    """List the shipped models and the registered architectures. What each shipped model is for, its size,
    speed and held-out figures (no torch needed); each architecture's input, parameters and GFLOPs."""
    from feredge._optional import available
    from feredge.weights import shipped_rows

    shipped = shipped_rows()
    rows = {r["name"]: r for r in shipped}
    architectures: list[dict] = []
    if available("torch"):
        from feredge.models.profile import registry_rows

        architectures = registry_rows(set(rows))
        for r in architectures:
            rows[r["name"]] = {**r, **rows.get(r["name"], {})}
    else:
        click.echo("torch is not installed: listing only the shipped models (pip install 'feredge[train]' lists every "
                   "architecture)", err=True)
    if as_json:
        return click.echo(json.dumps(list(rows.values()), indent=2))
    percent = lambda v: "—" if v is None else f"{100 * v:.2f} %"  # noqa: E731
    opt.table("shipped models (ms per face: fp32 ONNX, batch 1, 2 threads of a 2-core x86; sources: --json)",
              ["name", "for", "params", "precisions", "MB", "ms/face", "PublicTest top-1", "real photos top-1"],
              [[r["name"], r["for"], f"{r['params']:,}", " ".join(r["precisions"]), f"{r['file_mb']:.1f}",
                "—" if r["cpu_ms_per_face"] is None else f"{r['cpu_ms_per_face']:.3f}", percent(r["publictest_top1"]),
                percent(r["real_photos_check_top1"])] for r in shipped])
    if architectures:
        opt.table("architectures (GFLOPs = multiply-accumulates per image)", ["name", "input", "params", "GFLOPs",
                                                                              "heads"],
                  [[r["name"], r["input"], f"{r['params']:,}", f"{r['gflops']:.3f}", "+".join(r["heads"])]
                   for r in architectures])


@click.command("train")
@click.option("--config", "config_file", type=PATH, help="TOML file with TrainConfig fields")
@click.option("--recipe", help=f"a named preset: {', '.join(RECIPES)}")
@click.option("--model", help=f"registered model name (see `feredge models`; default: {TrainConfig.model})")
@click.option("--data", type=PATH, help="prepared dataset folder (from `feredge data prepare`)")
@click.option("--out", type=PATH, help=f"run folder for logs and checkpoints (default: {TrainConfig.out})")
@click.option("--epochs", type=int, help=f"passes over the training split (default: {TrainConfig.epochs})")
@click.option("--batch-size", type=int, help=f"images per optimiser step (default: {TrainConfig.batch_size})")
@click.option("--lr", type=float, help=f"peak learning rate (default: {TrainConfig.lr})")
@click.option("--seed", type=int,
              help=f"seed of the validation carve, init and augmentation (default: {TrainConfig.seed})")
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


@click.command("soup")
@click.argument("checkpoints", nargs=-1, required=True, type=PATH)
@click.option("--out", required=True, type=PATH, help="the soup's .safetensors file")
@click.option("--uniform", is_flag=True,
              help="average all (default: greedy, best first, each kept if validation holds)")
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
