"""Metrics, confusion matrices, test-time augmentation and ensembles for trained checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TTA_MODES = ("none", "hflip", "ten-crop")


def confusion(pred: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


def metrics(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Top-1, mean per-class accuracy (mean of the row-normalised CM diagonal), per-class P/R/F1."""
    n = len(classes)
    pred = logits.argmax(1)
    cm = confusion(pred, labels, n)
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = np.diag(cm).astype(np.float64)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    present = support > 0
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else 0.0,
        "mean_class_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                          "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion_matrix": cm.tolist(),
    }


def predict_logits(model, images: np.ndarray, spec, tta: str = "none", crop: int | None = None,
                   batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """Logits for uint8 NHWC ``images``; TTA averages logits over views.

    ``crop`` is the training crop size for models trained on crops (vgg-a's 40 of 48): single-pass
    then takes the centre crop, ten-crop its ten crops; otherwise ten-crop uses 7/8 of the side.
    """
    import torch

    from feredge.train.tensor_ops import normalize, ten_crop, to_float

    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}")
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = to_float(torch.from_numpy(np.array(images[start:start + batch_size])).to(device), spec.channels)
            side = x.shape[-1]
            if tta == "ten-crop":
                views = ten_crop(x, crop or round(side * 7 / 8))
                logits = model(normalize(views, spec)).view(x.shape[0], 10, -1).mean(1)
            else:
                if crop is not None and crop < side:
                    o = (side - crop) // 2
                    x = x[..., o:o + crop, o:o + crop]
                logits = model(normalize(x, spec))
                if tta == "hflip":
                    logits = (logits + model(normalize(x.flip(-1), spec))) / 2
            out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def checkpoint_logits(path: Path, images: np.ndarray, tta: str, device: str = "",
                      batch_size: int = 256) -> tuple[np.ndarray, dict]:
    """Logits of a training checkpoint with torch (cuda when available unless ``device`` says otherwise)."""
    import torch

    from feredge.models import InputSpec
    from feredge.train.checkpoint import load_checkpoint

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = load_checkpoint(path)
    spec = InputSpec.from_dict(meta["input_spec"])
    return predict_logits(model.to(device), images, spec, tta, meta.get("eval_crop"), batch_size, device), meta


def runner_logits(path: Path, images: np.ndarray, tta: str = "none", backend: str | None = None) -> tuple[np.ndarray, dict]:
    """Logits from an exported model (ONNX / TensorRT engine) via the runtime, with NumPy pre-processing."""
    from feredge.errors import FeredgeError
    from feredge.models import InputSpec
    from feredge.runtime.base import load_runner
    from feredge.runtime.preprocess import preprocess_faces

    if tta == "ten-crop":
        raise FeredgeError(f"{path}: ten-crop TTA is available for checkpoints only; use --tta none or hflip")
    with load_runner(path, backend) as runner:
        if "input_spec" not in runner.meta:
            raise FeredgeError(f"{path}: no feredge metadata (input spec, classes); export it with `feredge export`")
        x = preprocess_faces(np.asarray(images), InputSpec.from_dict(runner.meta["input_spec"]))
        logits = runner.infer_all(x)
        if tta == "hflip":
            logits = (logits + runner.infer_all(np.ascontiguousarray(x[..., ::-1]))) / 2
        return logits, runner.meta


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (counts in each cell)."""
    from feredge._optional import require

    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({cm[i, j]})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def evaluate_checkpoints(checkpoints: list[Path], data: Path, split: str, tta: str = "none",
                         device: str = "", batch_size: int = 256) -> tuple[dict, np.ndarray]:
    """Evaluate one model (checkpoint, ONNX or engine), or an ensemble (mean of softmax outputs), on a split."""
    from feredge.data.store import load_split, read_meta
    from feredge.errors import FeredgeError

    data_meta = read_meta(data)
    part = load_split(data, split)
    probs, classes = [], None
    for ckpt in checkpoints:
        if Path(ckpt).suffix == ".safetensors":
            logits, meta = checkpoint_logits(Path(ckpt), part.images, tta, device, batch_size)
        else:
            logits, meta = runner_logits(Path(ckpt), part.images, tta)
        if classes is not None and meta["classes"] != classes:
            raise FeredgeError(f"{ckpt}: classes {meta['classes']} differ from the other ensemble members")
        classes = meta["classes"]
        if classes != data_meta["classes"]:
            raise FeredgeError(f"{ckpt}: trained on classes {classes}, but {data} has {data_meta['classes']}")
        probs.append(softmax(logits) if len(checkpoints) > 1 else logits)
    scores = np.mean(probs, 0)
    report = metrics(scores, np.asarray(part.labels), classes)
    report.update({"checkpoints": [str(c) for c in checkpoints], "data": str(data), "split": split, "tta": tta,
                   "ensemble": "mean softmax" if len(checkpoints) > 1 else None})
    return report, scores


def write_report(report: dict, out: Path, title: str) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(report, indent=2))
    png = plot_confusion(np.array(report["confusion_matrix"]), list(report["per_class"]), out / "confusion.png", title)
    return json_path, png
