"""Figures people would rather look at than tables: confusion matrices (and bench charts)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display), with an actionable error when missing."""
    from feredge._optional import require

    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path, dpi: int = 120) -> Path:
    """Lay out, write (atomically: a figure replaced with --overwrite is never half-written) and close."""
    from feredge.artifact import atomic_write_bytes

    plt = pyplot()
    fig.tight_layout()
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (counts in each cell)."""
    plt = pyplot()
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
    return save(fig, path)


def latency_vs_accuracy(points: list[tuple[float, float]], labels: list[str], front: list[int], path: Path,
                        title: str = "") -> Path:
    """One point per artifact/precision/batch (ms per image vs top-1 %); the Pareto front joined and marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    ax.scatter(xs, ys, color="#888888", zorder=2, label="measured")
    best = sorted(front, key=lambda i: xs[i])
    ax.plot([xs[i] for i in best], [ys[i] for i in best], "-o", color="#d62728", zorder=3, label="Pareto front")
    stacked: dict[float, int] = {}  # same accuracy (one model at several batches): stack the labels
    for (x, y), label in zip(points, labels):
        k = stacked[round(y, 2)] = stacked.get(round(y, 2), -1) + 1
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4 - 10 * k), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("model latency per image, ms (mean over the window / batch; log scale)")
    ax.set_ylabel("top-1 accuracy, %")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return save(fig, path)
