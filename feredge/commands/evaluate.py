"""`feredge eval`: any model file (checkpoint, ONNX, engine) or an ensemble on a prepared split → report.

Pure metrics live in feredge.metrics, inference in the runtime's `Classifier`, figures in feredge.commands.plots;
this module only assembles the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from feredge import artifact
from feredge.artifact import Artifact
from feredge.config import DEVICE, PRECISION, SPLIT, TTA
from feredge.errors import FeredgeError
from feredge.metrics import softmax, validation_figures

DEFAULT_OUT = Path("runs/eval")
#: What `write_report` puts in the folder; any of them there means earlier results (feredge.outputs).
FILES = ("report.json", "confusion.png")


def model_logits(path: Path, images: np.ndarray, tta: str = TTA, device: str = DEVICE) -> tuple[np.ndarray, Artifact]:
    """Logits of any model file on uint8 face images, through the one `Classifier` (checkpoints through the
    torch runner, ONNX through ONNX Runtime, engines through TensorRT)."""
    from feredge.runtime.classifier import Classifier

    with Classifier(path, device=device, tta=tta) as classifier:
        return classifier.logits(images), classifier.info


def evaluate_checkpoints(checkpoints: list[Path], data: Path, split: str, tta: str = TTA,
                         device: str = DEVICE) -> tuple[dict, np.ndarray]:
    """Evaluate one model (checkpoint, ONNX or engine), or an ensemble (mean of softmax outputs), on a split."""
    from feredge.data.store import load_split, read_meta

    data_meta = read_meta(data)
    part = load_split(data, split)
    probs, classes = [], None
    for ckpt in checkpoints:
        logits, info = model_logits(Path(ckpt), part.images, tta, device)
        if classes is not None and list(info.classes) != classes:
            raise FeredgeError(f"{ckpt}: classes {list(info.classes)} differ from the other ensemble members")
        classes = list(info.classes)
        if classes != data_meta["classes"]:
            raise FeredgeError(f"{ckpt}: trained on classes {classes}, but {data} has {data_meta['classes']}")
        probs.append(softmax(logits) if len(checkpoints) > 1 else logits)
    scores = np.mean(probs, 0)
    report = validation_figures(scores, np.asarray(part.labels), part.soft, classes)
    report.update({"checkpoints": [str(c) for c in checkpoints], "data": str(data), "split": split, "tta": tta,
                   "ensemble": "mean softmax" if len(checkpoints) > 1 else None})
    return report, scores


def write_report(report: dict, out: Path, title: str) -> tuple[Path, Path | None]:
    """report.json, and confusion.png where matplotlib is installed (a torch-free install evaluates ONNX
    files without it: the numbers are all in the report)."""
    from feredge._optional import available

    out = Path(out)
    json_path = artifact.atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    if not available("matplotlib"):
        return json_path, None
    from feredge.commands.plots import plot_confusion

    png = plot_confusion(np.array(report["confusion_matrix"]), list(report["per_class"]), out / "confusion.png", title)
    return json_path, png


def run(models: list[str], data: Path, split: str = SPLIT, tta: str = TTA, ensemble: bool = False,
        out: Path | None = None, overwrite: bool = False, device: str = DEVICE, precision: str = PRECISION,
        backend: str | None = None) -> tuple[dict, Path, Path | None]:
    """`feredge eval`: model files or shipped names (none: the default model) on a split, written to a
    fresh folder (or, with ``overwrite``, the given one); returns the report and its two files. A shipped
    name is the file `predict` runs for ``precision`` (its checkpoint with the torch ``backend``)."""
    from feredge.outputs import output_folder
    from feredge.runtime.loader import model_path

    out = output_folder(out, DEFAULT_OUT, FILES, overwrite)  # before minutes of inference, not after
    paths = [model_path(m, backend, precision, device) for m in (models or [None])]
    if len(paths) > 1 and not ensemble:
        raise FeredgeError(f"{len(paths)} models given (--model); pass --ensemble to average them")
    report, _ = evaluate_checkpoints(paths, data, split, tta, device)
    json_path, png = write_report(report, out, f"{', '.join(p.stem for p in paths)} on {split} (tta {tta})")
    return report, json_path, png


def table(report: dict) -> tuple[str, list[str], list[list[str]]]:
    """The terminal table of a report: title, header, one row per class."""
    title = (f"top-1 {report['accuracy']:.4f}  mean-class {report['mean_class_accuracy']:.4f}  "
             f"(n={report['n']}, tta {report['tta']})")
    if "ferplus_accuracy" in report:
        title += (f"\nagainst the FER+ majority vote: top-1 {report['ferplus_accuracy']:.4f}  "
                  f"mean-class {report['ferplus_mean_class_accuracy']:.4f}")
    return title, ["class", "precision", "recall", "f1", "support"], [
        [c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"])]
        for c, m in report["per_class"].items()]
