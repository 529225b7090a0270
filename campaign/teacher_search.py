"""Choose a distillation teacher: the validation accuracy of each checkpoint, single pass and ten-crop,
and of every ensemble of their ten-crop logits (against FER2013's labels, and the FER+ majority vote where
the data carry FER+ votes; ``--by`` ranks by either).

    python campaign/teacher_search.py --data PREPARED CKPT [CKPT ...] --out teachers.json [--by ferplus_accuracy]

Scored on the training run's own validation carve (same seed and fraction as the students' runs), so the
choice never sees PublicTest. Each checkpoint's logits are cached beside --out, keyed by its sha256.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from feredge.artifact import atomic_write_text, file_sha256
from feredge.config import SELECT_METRICS, TrainConfig
from feredge.data.splits import train_val_splits
from feredge.errors import FeredgeError
from feredge.metrics import validation_figures
from feredge.outputs import output_file
from feredge.train.inference import checkpoint_logits

TTAS = ("none", "ten-crop")


def row_names(paths: list[Path]) -> list[str]:
    """Each checkpoint's name in the rows: its stem, or folder/stem where two files share a stem (two runs'
    best.safetensors); the same file twice is refused, as it would weigh double in every ensemble."""
    if len({p.resolve() for p in paths}) < len(paths):
        raise SystemExit("error: a checkpoint is listed twice")
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared FER2013 (feredge data prepare)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file of every row, best first")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--by", choices=SELECT_METRICS, default="accuracy",
                        help="rank by this validation figure (ferplus_*: against the FER+ majority vote)")
    parser.add_argument("checkpoints", type=Path, nargs="+")
    args = parser.parse_args()
    try:
        output_file(args.out, args.overwrite)
    except FeredgeError as err:
        parser.error(str(err))
    names = row_names(args.checkpoints)
    _, val, meta = train_val_splits(TrainConfig(data=str(args.data)))
    labels, images = np.asarray(val.labels), np.asarray(val.images)
    soft = None if val.soft is None else np.asarray(val.soft)  # FER+ votes, where prepared with --ferplus
    if soft is None and args.by.startswith("ferplus"):
        parser.error(f"--by {args.by}: {args.data} has no FER+ votes (prepare it with --ferplus VOTES.csv)")
    cache = args.out.parent / "val-logits"
    cache.mkdir(parents=True, exist_ok=True)
    logits = {}
    for name, path in zip(names, args.checkpoints):
        for tta in TTAS:  # keyed by content: two runs' best.safetensors differ, a replaced file is recomputed
            file = cache / f"{file_sha256(path)[:16]}-{tta}.npy"
            if not file.exists():
                np.save(file, checkpoint_logits(path, images, tta, "cpu", 64)[0])
            logits[name, tta] = np.load(file)

    def row(name: str, lg: np.ndarray) -> dict:
        m = validation_figures(lg, labels, soft, meta["classes"])
        return {"teacher": name, **{f"val_{k}": round(100 * m[k], 2) for k in SELECT_METRICS if k in m}}

    rows = [row(f"{n} {tta}", logits[n, tta]) for n in names for tta in TTAS]
    for k in range(2, len(names) + 1):
        for combo in itertools.combinations(names, k):
            rows.append(row("+".join(combo) + " ten-crop", np.mean([logits[n, "ten-crop"] for n in combo], 0)))
    rows.sort(key=lambda r: -r[f"val_{args.by}"])
    atomic_write_text(args.out, json.dumps(rows, indent=1) + "\n")
    print(f"{'validation':>10} {'mean-class':>10} {'FER+':>6}  teacher")
    for r in rows[:15]:
        print(f"{r['val_accuracy']:10.2f} {r['val_mean_class_accuracy']:10.2f} {r.get('val_ferplus_accuracy', '-'):>6}  "
              f"{r['teacher']}")
    print(f"({len(rows)} rows in {args.out})")


if __name__ == "__main__":
    main()
