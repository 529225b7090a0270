"""How a shipped model is made from a training run (run once by a maintainer).

    python -m feredge.commands.package RUN_DIR/best.safetensors --data prepared/fer2013 --hardware "..."

Writes <model>.safetensors (weights stored fp16, loaded as fp32) and <model>.onnx (fp16-stored
weights, fp32 compute) so both fit the 20 MB budget, then evaluates the *shipped* files — validation
(carved from train) and FER2013 PublicTest, once — and writes the model card (<model>.card.md,
<model>.card.json, <model>.confusion.png).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from feredge import artifact
from feredge.errors import FeredgeError
from feredge.weights import WEIGHTS_DIR


def card_paths(name: str) -> dict[str, Path]:
    return {"json": WEIGHTS_DIR / f"{name}.card.json", "md": WEIGHTS_DIR / f"{name}.card.md",
            "confusion": WEIGHTS_DIR / f"{name}.confusion.png"}


def package(checkpoint: Path, data: Path, prior_correction: float = 0.0) -> tuple[Path, Path]:
    """Ship ``checkpoint`` as fp16 weights plus ONNX; ``prior_correction`` (tau) folds tau·log(prior) of its
    training carve into the classifier's bias (feredge.train.prior), recorded in the weights' sidecar and the card."""
    import onnx

    from feredge.export.compact import compact_fp16_storage
    from feredge.export.onnx import export_onnx, save_onnx
    from feredge.models.checkpoint import load_checkpoint
    from feredge.train.checkpoint import save_checkpoint
    from feredge.train.prior import carve_prior, correct_for_prior, correction_record, refuse_corrected

    model, info = load_checkpoint(checkpoint)
    weights, onnx_path = WEIGHTS_DIR / f"{info.model}.safetensors", WEIGHTS_DIR / f"{info.model}.onnx"
    details = dict(info.details)
    if prior_correction:
        refuse_corrected(details, str(checkpoint))  # before the carve's data is read
        prior = carve_prior(checkpoint, data)
        correct_for_prior(model, prior, prior_correction)
        details = correction_record(prior, prior_correction, details)
    info = info.derive("checkpoint", versions=info.versions, **details)  # save_checkpoint notes the fp16 storage
    save_checkpoint(model.half(), weights, info)
    model, _ = load_checkpoint(weights)  # the shipped (fp16-rounded) weights, as fp32
    _, onnx_info = export_onnx(model.float(), info, onnx_path, batch=None, source=weights)
    proto = onnx.load(str(onnx_path))
    compact_fp16_storage(proto)
    save_onnx(proto, onnx_path, onnx_info.derive("onnx", sources=onnx_info.sources, versions=onnx_info.versions,
                                                 **{**onnx_info.details, "weights_storage": "float16 (fp32 compute)"}))
    return weights, onnx_path


def evaluate_shipped(name: str, data: Path, split: str, images_index: np.ndarray | None = None) -> dict:
    """Metrics of a shipped ONNX through the runtime's `Classifier` (ONNX Runtime, single pass): what users run."""
    from feredge.data.store import load_split
    from feredge.metrics import validation_figures
    from feredge.runtime.classifier import Classifier

    part = load_split(data, split)
    images, labels = np.asarray(part.images), np.asarray(part.labels)
    soft = None if part.soft is None else np.asarray(part.soft)
    if images_index is not None:
        images, labels = images[images_index], labels[images_index]
        soft = None if soft is None else soft[images_index]
    from feredge.weights import shipped, shipped_precisions

    have = shipped_precisions(name)  # the fp32 file, or the one a model ships alone
    with Classifier(shipped(name, "onnx", "fp32" if "fp32" in have else have[0]), device="cpu") as classifier:
        return validation_figures(classifier.logits(images), labels, soft, list(classifier.classes))


RECIPE_KEYS = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "scheduler", "warmup_pct", "batch_size",
               "label_smoothing", "mixup", "cutmix", "hflip", "rotate", "translate", "scale", "erasing", "soft_labels",
               "detector_crops", "camera_augment", "ema")
DISTILL_KEYS = ("teacher", "teacher_tta", "distill_weight", "distill_temperature")


def shipped_card(path: Path) -> tuple[Path, str] | None:
    """The model card and the name of the shipped model ``path`` is: a file in the weights folder, a
    byte-identical copy of one, or an earlier shipped version kept with its card beside it (``NAME.card.json``,
    as the campaign recovers them from git history). None for anything else, a training run's file above all."""
    if path.resolve().parent == WEIGHTS_DIR.resolve():
        return card_paths(path.stem)["json"], path.stem
    if path.suffix != ".safetensors" or not path.is_file() or (path.parent / "log.json").is_file():
        return None
    beside = path.with_name(f"{path.stem}.card.json")
    if beside.is_file():
        return beside, f"{json.loads(beside.read_text())['model']} ({path.stem})"
    sha = artifact.file_sha256(path)
    same = next((f for f in WEIGHTS_DIR.glob("*.safetensors") if artifact.file_sha256(f) == sha), None)
    return (card_paths(same.stem)["json"], same.stem) if same else None


def training_stages(checkpoint: Path) -> list[dict]:
    """The runs that made ``checkpoint``, oldest first: each warm start (config ``init``) names the one before.

    A shipped model as the starting point contributes the stages its card lists (its runs are long gone);
    a soup contributes the stages its ingredients share, then each ingredient's own run, then itself.
    """
    from feredge.config import TrainConfig
    from feredge.models.checkpoint import read_meta

    path = Path(checkpoint)
    shipped = shipped_card(path)
    if shipped:
        if not shipped[0].is_file():
            raise FeredgeError(f"{path}: a shipped model without a card ({shipped[0]}); its training stages are "
                               "unknown")
        return json.loads(shipped[0].read_text())["stages"]
    meta = read_meta(path)
    soup = meta.details.get("soup")
    if soup:
        chains = [training_stages(Path(i["checkpoint"])) for i in soup["ingredients"]]
        runs = [{**chain[-1], "kept_in_soup": i["kept"], "checkpoint": Path(i["checkpoint"]).stem}
                for chain, i in zip(chains, soup["ingredients"])]
        kept = [i for i in soup["ingredients"] if i["kept"]]
        recipe = {"soup": soup["method"], "ingredients_kept": f"{len(kept)} of {len(runs)}",
                  "bn_recalibrated": soup["bn_recalibrated"]}
        if "holdout" in soup:  # chosen on part of the carve, reported on the rest
            recipe.update(holdout=soup["holdout"], report_accuracy=round(soup["report_accuracy"], 4))
        if any(i.get("weight", 1) > 1 for i in kept):  # an earlier soup among them stands for its fine-tunes
            recipe["fine_tunes_averaged"] = sum(i.get("weight", 1) for i in kept)
        return chains[0][:-1] + runs + [{
            "run": path.stem, "warm_start_from": "the runs above", "soup": soup["method"], "recipe": recipe,
            "epochs_planned": 0, "epochs_run": 0, "selected_epoch": 0, "wall_time_s": 0}]
    if not (path.parent / "log.json").is_file():
        raise FeredgeError(f"{path}: neither a shipped model (or a copy of one, or one with its NAME.card.json "
                           "beside it) nor a training run's checkpoint (no log.json beside it): its stages are unknown")
    cfg, defaults = meta.details["config"], TrainConfig()  # runs older than a setting had its default
    log = json.loads((path.parent / "log.json").read_text())
    stage = {"run": path.parent.name, "warm_start_from": Path(cfg["init"]).parent.name if cfg.get("init") else "",
             "recipe": {k: cfg.get(k, getattr(defaults, k))
                        for k in RECIPE_KEYS + (DISTILL_KEYS if cfg.get("teacher") else ())},
             "epochs_planned": cfg["epochs"],
             "epochs_run": len(log), "selected_epoch": meta.details["epoch"], "checkpoint": path.stem,
             "wall_time_s": round(sum(r["seconds"] for r in log))}
    if cfg.get("soft_labels"):
        stage["recipe"]["soft_label_share"] = cfg.get("soft_label_share", 1.0)
    if cfg.get("select_metric", "accuracy") != "accuracy":
        stage["recipe"]["select_metric"] = cfg["select_metric"]
    if meta.details.get("teacher_sha256"):  # the teacher paths may since hold other files
        stage["recipe"]["teacher_sha256"] = ",".join(h[:16] for h in meta.details["teacher_sha256"].values())
    init = shipped_card(Path(cfg["init"])) if cfg.get("init") else None
    if init:
        stage["warm_start_from"] = f"shipped {init[1]}"
    return (training_stages(Path(cfg["init"])) if cfg.get("init") else []) + [stage]


def write_card(name: str, data: Path, stages: list[dict], hardware: str, notes: str) -> dict:
    """Evaluate the shipped files and write the card; ``stages`` come from training_stages, read before
    packaging replaced the shipped files they may refer to."""
    from feredge.commands.plots import plot_confusion
    from feredge.data.splits import stratified_holdout
    from feredge.data.store import load_split
    from feredge.models.checkpoint import load_checkpoint
    from feredge.models.nano import fuse_for_deploy
    from feredge.models.profile import count_macs, count_params

    model, meta = load_checkpoint(WEIGHTS_DIR / f"{name}.safetensors")
    paths = card_paths(name)
    cfg = meta.details["config"]
    _, hold = stratified_holdout(np.asarray(load_split(data, "train").labels), cfg["val_fraction"], cfg["seed"])
    val = evaluate_shipped(name, data, "train", hold)
    test = evaluate_shipped(name, data, "val")
    plot_confusion(np.array(test["confusion_matrix"]), list(meta.classes), paths["confusion"],
                   f"{name} on FER2013 PublicTest: {test['accuracy']:.2%}")
    selected = None if stages[-1].get("soup") else (
        sum(st["epochs_run"] for st in stages[:-1]) + stages[-1]["selected_epoch"])  # counted over all stages
    deployed = fuse_for_deploy(model)  # what runs: RepVGG branches folded (other models: unchanged)
    s = meta.input_spec
    card = {
        "model": meta.model, "params": count_params(deployed), "params_training": count_params(model),
        "gflops_macs": count_macs(deployed, (s.channels, s.size, s.size)) / 1e9,
        "data": "FER2013 Training (28,709) for training; validation = 10% of Training, stratified, seed "
                f"{cfg['seed']}; test = FER2013 PublicTest (3,589), evaluated once",
        "labels": "FER2013 original labels" + (
            f" + FER+ soft labels ({cfg.get('soft_label_share', 1.0):.0%} of the target)"
            if cfg["soft_labels"] else ""),
        "stages": stages,
        "epochs_run": sum(st["epochs_run"] for st in stages),
        "selected_epoch": selected,
        "weights": _weights_line(stages[-1], selected),
        "seed": cfg["seed"], "hardware": hardware, "wall_time_s": sum(st["wall_time_s"] for st in stages),
        "validation_accuracy": val["accuracy"], "validation_mean_class_accuracy": val["mean_class_accuracy"],
        "publictest_single_pass_accuracy": test["accuracy"],
        "publictest_mean_class_accuracy": test["mean_class_accuracy"],
        "publictest_per_class_recall": {c: m["recall"] for c, m in test["per_class"].items()},
        **{f"{where}_ferplus_{k}": figures[f"ferplus_{k}"]
           for where, figures in (("validation", val), ("publictest", test))
           for k in ("accuracy", "mean_class_accuracy") if f"ferplus_{k}" in figures},
        "runtime": f"single pass (no TTA), ONNX Runtime on {name}.onnx; torch on {name}.safetensors agrees"
                   + _prior_line(meta.details.get("prior_correction")),
        "prior_correction": meta.details.get("prior_correction"),
        "training_data_licence": "FER2013 (Kaggle ICML 2013 challenge): research use only; check its terms "
                                 "before commercial use",
        "notes": notes,
    }
    artifact.atomic_write_text(paths["json"], json.dumps(card, indent=2))
    artifact.atomic_write_text(paths["md"], _markdown(card, paths["confusion"].name))
    return card


def _ferplus_row(card: dict) -> list[tuple[str, str]]:
    """Agreement with FER+'s ten-annotator majority, where the data carry its votes (FER2013's labels are
    noisier)."""
    if "publictest_ferplus_accuracy" not in card:
        return []
    return [("against the FER+ majority vote: validation / PublicTest",
             f"{card['validation_ferplus_accuracy']:.4f} / {card['publictest_ferplus_accuracy']:.4f} (mean-class "
             f"{card['validation_ferplus_mean_class_accuracy']:.4f} / "
             f"{card['publictest_ferplus_mean_class_accuracy']:.4f})")]


def _prior_line(correction: dict | None) -> str:
    if not correction:
        return ""
    return (f"; prior-corrected: tau={correction['tau']} × log(training class prior) subtracted from the "
            "classifier's bias, for balanced decisions (feredge.train.prior)")


def _weights_line(last: dict, selected: int | None) -> str:
    if last.get("soup"):
        averaged = last["recipe"].get("fine_tunes_averaged")
        what = (f"ingredients, {averaged} fine-tunes in all (an earlier soup counts as its own)" if averaged
                else "fine-tunes")
        return (f"weights: a {last['soup']} soup (average) of {last['recipe']['ingredients_kept']} {what}, "
                "the runs marked kept")
    if last.get("checkpoint") == "last":  # a run whose FER2013 validation is not its selector (FER+ targets)
        return f"weights of epoch {selected} (the last stage's last epoch)"
    return f"weights of epoch {selected} (best validation of the last stage)"


def _stage_row(i: int, st: dict) -> str:
    run = st["run"] + {True: " (kept in the soup)", False: " (left out of the soup)"}.get(st.get("kept_in_soup"), "")
    used = st.get("checkpoint", "best")  # a soup ingredient may be a run's best or its last weights
    epochs = "—" if st.get("soup") else (f"{st['epochs_run']} of {st['epochs_planned']} "
                                        f"({used}: {st['selected_epoch']})")
    recipe = ", ".join(f"{k}={v}" for k, v in st["recipe"].items())
    return f"| {i} | {run} | {st['warm_start_from'] or 'random init'} | {epochs} | {st['wall_time_s']} | {recipe} |"


def _markdown(card: dict, confusion_png: str) -> str:
    per_class = "\n".join(f"| {c} | {r:.3f} |" for c, r in card["publictest_per_class_recall"].items())
    reproduce_prior = f" --prior-correction {card['prior_correction']['tau']}" if card.get("prior_correction") else ""
    stages = "\n".join(_stage_row(i, st) for i, st in enumerate(card["stages"], 1))
    runs = sum(not st.get("soup") for st in card["stages"])
    rows = [
        ("parameters (as exported)", f"{card['params']:,} ({card['params_training']:,} while training)"),
        ("GFLOPs (multiply-accumulates per face)", f"{card['gflops_macs']:.3f}"),
        ("data", card["data"]), ("labels", card["labels"]),
        ("epochs", f"{card['epochs_run']} in {runs} training run(s); {card['weights']}"),
        ("seed", str(card["seed"])), ("hardware", card["hardware"]),
        ("wall time", f"{card['wall_time_s']} s of training"),
        ("**validation accuracy** (held-out 10 % of Training)",
         f"{card['validation_accuracy']:.4f} (mean-class {card['validation_mean_class_accuracy']:.4f})"),
        ("**PublicTest accuracy, single pass**",
         f"**{card['publictest_single_pass_accuracy']:.4f}** "
         f"(mean-class {card['publictest_mean_class_accuracy']:.4f})"),
        *_ferplus_row(card),
        ("what the figures ran on", card["runtime"]), ("training-data licence", card["training_data_licence"]),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    checkpoint = card["stages"][-1].get("checkpoint", "best")
    return f"""# Model card: {card['model']}

| | |
|---|---|
{table}

Training stages (each later stage starts from the previous stage's best weights, with a fresh schedule; \
a soup's ingredients all start from the stage before them):

| stage | run | starts from | epochs | wall s | recipe |
|---|---|---|---|---|---|
{stages}

Per-class recall on PublicTest:

| class | recall |
|---|---|
{per_class}

![confusion matrix]({confusion_png})

{card['notes']}

Reproduce: `python -m feredge.commands.package <run>/{checkpoint}.safetensors --data prepared/fer2013 \
--hardware ...{reproduce_prior}` re-evaluates the shipped files; `tests/test_default_model.py` checks the PublicTest
number to 0.1 pp.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--hardware", required=True)
    parser.add_argument("--notes", default="")
    parser.add_argument("--prior-correction", type=float, default=0.0, metavar="TAU",
                        help="fold tau·log(class prior) into the classifier's bias (choose tau with "
                             "`python -m feredge.train.prior`)")
    args = parser.parse_args()
    if args.prior_correction < 0:
        parser.error(f"--prior-correction {args.prior_correction}: expected tau ≥ 0 (a negative one strengthens "
                     "the prior)")
    from feredge.models.checkpoint import read_meta

    stages = training_stages(args.checkpoint)
    for path in package(args.checkpoint, args.data, args.prior_correction):
        print(path, path.stat().st_size)
    card = write_card(read_meta(args.checkpoint).model, args.data, stages, args.hardware, args.notes)
    print(json.dumps({k: card[k] for k in ("validation_accuracy", "publictest_single_pass_accuracy")}))


if __name__ == "__main__":
    main()
