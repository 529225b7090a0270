"""Real photos through the whole path (detector → crop → model), as `feredge predict` runs it.

Reads a folder laid out as ../shared/data/real-photos (``labels.csv``: path, identity, label7), splits it
by identity into a *tune* half (for choosing margin, alignment, augmentation) and a *check* half (looked at
for the final numbers only), and scores the largest face of each photo through `feredge.Recognizer`.
Labels are noisy and classes very imbalanced, so mean-class accuracy is the headline; a photo where no face
is found counts as wrong (the detector is part of the path).

    python benchmarks/real_photos.py --photos ~/feredge-runs/real-photos --model feredge-s feredge-n \
        [--half tune|check|all] [--margin 0 0.1] [--align] [--tta] [--out results.json]

The photos and any crops of them must never be committed (see their README); only the numbers are.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from feredge import Recognizer  # noqa: E402
from feredge.artifact import atomic_write_text  # noqa: E402
from feredge.vision.crop import FACE_MARGIN  # noqa: E402
from feredge.vision.images import read_image  # noqa: E402

#: Classes with fewer photos than this in a half (fear has 13 in all) swing mean-class accuracy by several
#: points per photo; the mean over the others is reported beside it as the steadier figure.
STEADY = 30


def half_of(identity: str) -> str:
    """A stable split by identity (no person in both halves), independent of file order."""
    return "tune" if int(hashlib.sha256(identity.encode()).hexdigest(), 16) % 2 == 0 else "check"


def load(photos: Path, half: str) -> list[tuple[Path, str]]:
    with open(photos / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [(photos / r["path"], r["label7"]) for r in rows if half == "all" or half_of(r["identity"]) == half]


def score(rec: Recognizer, items: list[tuple[Path, str]]) -> dict:
    """Top-1, mean-class, per-class recall and the share of photos where a face was found."""
    classes = list(rec.classes)
    truth, pred, found = [], [], 0
    for path, label in items:
        faces = rec(read_image(path))
        truth.append(classes.index(label))
        if faces:
            found += 1
            largest = max(faces, key=lambda f: f.box[2] * f.box[3])
            pred.append(classes.index(largest.label))
        else:
            pred.append(-1)  # no face: wrong whatever the label
    truth_a, pred_a = np.array(truth), np.array(pred)
    recall = {c: float((pred_a[truth_a == k] == k).mean()) for k, c in enumerate(classes) if (truth_a == k).any()}
    support = {c: int((truth_a == k).sum()) for k, c in enumerate(classes) if (truth_a == k).any()}
    steady = [recall[c] for c in recall if support[c] >= STEADY]
    # rows: the label; columns: the prediction, then "no face" (where the errors go says more than recall)
    confusion = {c: [int((pred_a[truth_a == k] == j).sum()) for j in [*range(len(classes)), -1]]
                 for k, c in enumerate(classes) if (truth_a == k).any()}
    return {"n": len(items), "face_found": found / max(len(items), 1),
            "accuracy": float((pred_a == truth_a).mean()), "mean_class_accuracy": float(np.mean(list(recall.values()))),
            f"mean_class_accuracy_{STEADY}plus": float(np.mean(steady)), "recall": recall, "support": support,
            "confusion": confusion, "confusion_columns": [*classes, "no face"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, required=True, help="folder with labels.csv and images/")
    ap.add_argument("--model", nargs="+", default=["feredge-s", "feredge-n"])
    ap.add_argument("--half", choices=["tune", "check", "all"], default="tune")
    ap.add_argument("--margin", type=float, nargs="+", default=[FACE_MARGIN])
    ap.add_argument("--align", action="store_true")
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos of the half (quick looks)")
    ap.add_argument("--out", type=Path, help="append the results to this JSON file")
    args = ap.parse_args()
    items = load(args.photos, args.half)
    if args.limit:
        items = items[:args.limit]
    results = []
    for model in args.model:
        for margin in args.margin:
            t0 = time.perf_counter()
            with Recognizer(model, margin=margin, align=args.align, tta=args.tta, device="cpu") as rec:
                r = score(rec, items)
            r.update(model=model, margin=margin, align=args.align, tta=args.tta, half=args.half,
                     seconds=round(time.perf_counter() - t0, 1))
            results.append(r)
            print(f"{model:<10} margin {margin:<5} align {args.align!s:<5} tta {args.tta!s:<5} {args.half}: "
                  f"n {r['n']}, face found {r['face_found']:.1%}, top-1 {r['accuracy']:.2%}, "
                  f"mean-class {r['mean_class_accuracy']:.2%} (classes with ≥ {STEADY} photos: "
                  f"{r[f'mean_class_accuracy_{STEADY}plus']:.2%})  "
                  + " ".join(f"{c} {v:.2f}" for c, v in r["recall"].items()), flush=True)
    if args.out:
        old = json.loads(args.out.read_text()) if args.out.exists() else []
        atomic_write_text(args.out, json.dumps(old + results, indent=1))


if __name__ == "__main__":
    main()
