"""The campaign's learning curves: every finished stage's validation accuracy per epoch (campaign/logs/),
as a table for the notes and a PNG for people, so the closing rule ("three working periods in a row bring
less than 0.3 points on validation") can be read off one picture.

    python campaign/curves.py [--logs campaign/logs] [--out campaign/curves.png] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from feredge.commands.plots import pyplot, save
from feredge.errors import FeredgeError
from feredge.outputs import output_file


def read_logs(folder: Path) -> dict[str, list[dict]]:
    """Each stage's per-epoch rows, by stage name (the log file's stem), in name order."""
    logs = {}
    for path in sorted(folder.glob("*.json")):
        rows = json.loads(path.read_text())
        if not isinstance(rows, list) or not rows or "val_accuracy" not in rows[0]:
            raise SystemExit(f"error: {path}: expected a training log (a list of epochs with 'val_accuracy')")
        logs[path.stem] = rows
    if not logs:
        raise SystemExit(f"error: {folder}: no stage logs (*.json)")
    return logs


FROM_SCRATCH_BELOW = 0.5  # a warm restart starts from a trained model (≥ 60 % after its first epoch)


def from_scratch(rows: list[dict]) -> bool:
    """Whether a stage started from random weights: the logs carry no settings, but the first epoch tells."""
    return rows[0]["val_accuracy"] < FROM_SCRATCH_BELOW


def table(logs: dict[str, list[dict]]) -> str:
    lines = ["| stage | start | epochs | best validation (epoch) | mean-class there | curve |",
             "|---|---|---|---|---|---|"]
    for name, rows in logs.items():
        best = max(rows, key=lambda r: r["val_accuracy"])
        curve = " ".join(f"{100 * r['val_accuracy']:.2f}" for r in rows)
        start = "scratch" if from_scratch(rows) else "restart"
        lines.append(f"| {name} | {start} | {len(rows)} | {best['val_accuracy']:.2%} ({best['epoch']}) | "
                     f"{best['val_mean_class_accuracy']:.2%} | {curve} |")
    return "\n".join(lines)


def plot(logs: dict[str, list[dict]], out: Path) -> Path:
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    panels = {"warm restarts of a shipped model": {k: v for k, v in logs.items() if not from_scratch(v)},
              "from scratch": {k: v for k, v in logs.items() if from_scratch(v)}}
    panels = {title: stages for title, stages in panels.items() if stages}
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, (title, stages) in zip(axes[0], panels.items()):
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)  # up to 20 stages a panel, each its own colour
        for name, rows in stages.items():
            ax.plot([r["epoch"] for r in rows], [100 * r["val_accuracy"] for r in rows], marker=".",
                    linestyle="--" if name.startswith("n") else "-", label=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch of the stage")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    axes[0][0].set_ylabel("FER2013 validation top-1 (%)")
    fig.suptitle("Training campaign: validation per epoch (dashed: feredge-n)")
    return save(fig, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, default=Path(__file__).parent / "logs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "curves.png")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args()
    try:
        output_file(args.out, args.overwrite)
    except FeredgeError as err:
        parser.error(str(err))
    logs = read_logs(args.logs)
    print(table(logs))
    print(f"wrote {plot(logs, args.out)}")


if __name__ == "__main__":
    main()
