"""Classification metrics on NumPy arrays: pure functions, no torch, no plotting (tested by hand-computed values)."""

from __future__ import annotations

import numpy as np


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


def validation_figures(logits: np.ndarray, labels: np.ndarray, soft: np.ndarray | None, classes: list[str]) -> dict:
    """``metrics`` against the labels, plus top-1 and mean-class against the soft labels' majority
    (``ferplus_*``) where there are soft labels: FER+'s ten annotators call 30-47 % of FER2013's angry, sad
    and fear training faces neutral, so agreement with them says more about faces outside FER2013."""
    figures = metrics(logits, labels, classes)
    if soft is not None:
        majority = metrics(logits, np.asarray(soft).argmax(1), classes)
        figures.update(ferplus_accuracy=majority["accuracy"],
                       ferplus_mean_class_accuracy=majority["mean_class_accuracy"])
    return figures


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
