"""Real photos through the whole path (detector → crop → model), as `feredge predict` runs it.

Reads a folder laid out as ../shared/data/real-photos (``labels.csv``: path, identity, label7), splits it
by identity into a *tune* half (for choosing margin, alignment, augmentation) and a *check* half (looked at
for the final numbers only), and scores the largest face of each photo through `feredge.Recognizer`.
Labels are noisy and classes very imbalanced, so mean-class accuracy is the headline; a photo where no face
is found counts as wrong (the detector is part of the path).

    python benchmarks/real_photos.py --photos ~/feredge-runs/real-photos --model feredge-s feredge-n \
        [--half tune|check|all] [--margin 0 0.1] [--align] [--tta none|hflip] [--out results.json]

Each model after the first is also compared with the first on the same photos: the difference in top-1,
mean-class and steady mean-class, with a 90 % interval from resampling identities (how much of a gap the
luck of who is in the half could make).

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
from feredge.config import FACE_MARGIN, TTA, TTA_MODES  # noqa: E402
from feredge.vision.images import read_image  # noqa: E402

#: Classes with fewer photos than this in a half (fear has 13 in all) swing mean-class accuracy by several
#: points per photo; the mean over the others is reported beside it as the steadier figure.
STEADY = 30


def half_of(identity: str) -> str:
    """A stable split by identity (no person in both halves), independent of file order."""
    return "tune" if int(hashlib.sha256(identity.encode()).hexdigest(), 16) % 2 == 0 else "check"


#: Bootstrap draws for the paired comparison against the first model (identities resampled with replacement).
DRAWS = 2000


def load(photos: Path, half: str) -> list[tuple[Path, str, str]]:
    """(image, label, identity) of each photo in the half."""
    with open(photos / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [(photos / r["path"], r["label7"], r["identity"]) for r in rows
            if half == "all" or half_of(r["identity"]) == half]


def predict(rec: Recognizer, items: list[tuple[Path, str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Class index of each label and of the largest face's prediction (-1 where no face was found)."""
    classes = list(rec.classes)
    truth, pred = [], []
    for path, label, _ in items:
        faces = rec(read_image(path))
        truth.append(classes.index(label))
        # no face: wrong whatever the label
        pred.append(classes.index(max(faces, key=lambda f: f.box[2] * f.box[3]).label) if faces else -1)
    return np.array(truth), np.array(pred)


def steady_classes(truth: np.ndarray) -> list[int]:
    """The classes with at least STEADY photos, where one photo moves the class's recall by at most 3.3 points."""
    return [int(k) for k in np.unique(truth) if (truth == k).sum() >= STEADY]


def class_recall(truth: np.ndarray, pred: np.ndarray) -> dict[int, float]:
    """Recall of each class present in ``truth``."""
    return {int(k): float((pred[truth == k] == k).mean()) for k in np.unique(truth)}


def headline(truth: np.ndarray, pred: np.ndarray, steady: list[int] | None = None) -> dict[str, float]:
    """Top-1, mean-class and steady mean-class, the figures the rule compares (``steady``: the classes to
    average for the last, by default those with ≥ STEADY photos here; a resample keeps the whole half's)."""
    recall = class_recall(truth, pred)
    steady = steady_classes(truth) if steady is None else steady
    return {"accuracy": float((pred == truth).mean()), "mean_class_accuracy": float(np.mean(list(recall.values()))),
            f"mean_class_accuracy_{STEADY}plus": float(np.mean([recall[k] for k in steady if k in recall]))}


def score(truth: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    """The headline figures, per-class recall and support, the confusion and the share of faces found."""
    per_class = class_recall(truth, pred)
    recall = {classes[k]: r for k, r in per_class.items()}
    support = {classes[k]: int((truth == k).sum()) for k in per_class}
    # rows: the label; columns: the prediction, then "no face" (where the errors go says more than recall)
    confusion = {c: [int((pred[truth == k] == j).sum()) for j in [*range(len(classes)), -1]]
                 for k, c in enumerate(classes) if (truth == k).any()}
    return {"n": len(truth), "face_found": float((pred >= 0).mean()) if len(pred) else 0.0,
            **headline(truth, pred), "recall": recall, "support": support,
            "confusion": confusion, "confusion_columns": [*classes, "no face"]}


def paired_difference(truth: np.ndarray, base: np.ndarray, other: np.ndarray, identities: list[str],
                      draws: int = DRAWS, seed: int = 0) -> dict[str, list[float]]:
    """``other`` minus ``base`` on each headline figure, with a 90 % interval from resampling identities.

    Both models see the same resampled photos (paired), and a person's photos move together, so the interval
    says how far a difference of this size is from the noise of which people happen to be in the half."""
    names, index = np.unique(np.array(identities), return_inverse=True)
    members = [np.flatnonzero(index == i) for i in range(len(names))]
    rng = np.random.default_rng(seed)
    steady = steady_classes(truth)
    point = {k: headline(truth, other, steady)[k] - v for k, v in headline(truth, base, steady).items()}
    samples: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(draws):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        b, o = headline(truth[rows], base[rows], steady), headline(truth[rows], other[rows], steady)
        for k in samples:
            samples[k].append(o[k] - b[k])
    return {k: [point[k], *np.percentile(samples[k], [5, 95]).tolist()] for k in point}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, required=True, help="folder with labels.csv and images/")
    ap.add_argument("--model", nargs="+", default=["feredge-s", "feredge-n"])
    ap.add_argument("--half", choices=["tune", "check", "all"], default="tune")
    ap.add_argument("--margin", type=float, nargs="+", default=[FACE_MARGIN])
    ap.add_argument("--align", action="store_true")
    ap.add_argument("--tta", choices=TTA_MODES[:2], default=TTA, help="as Recognizer(tta=)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos of the half (quick looks)")
    ap.add_argument("--out", type=Path, help="append the results to this JSON file")
    args = ap.parse_args()
    items = load(args.photos, args.half)
    if args.limit:
        items = items[:args.limit]
    results, first = [], None
    identities = [identity for _, _, identity in items]
    for model in args.model:
        for margin in args.margin:
            t0 = time.perf_counter()
            with Recognizer(model, margin=margin, align=args.align, tta=args.tta, device="cpu") as rec:
                truth, pred = predict(rec, items)
                r = score(truth, pred, list(rec.classes))
            r.update(model=model, margin=margin, align=args.align, tta=args.tta, half=args.half,
                     seconds=round(time.perf_counter() - t0, 1))
            if first is None:
                first = (model, margin, pred)
            else:
                r["against_first"] = {"model": first[0], "margin": first[1],
                                      "difference": paired_difference(truth, first[2], pred, identities)}
            results.append(r)
            print(f"{model:<10} margin {margin:<5} align {args.align!s:<5} tta {args.tta:<5} {args.half}: "
                  f"n {r['n']}, face found {r['face_found']:.1%}, top-1 {r['accuracy']:.2%}, "
                  f"mean-class {r['mean_class_accuracy']:.2%} (classes with ≥ {STEADY} photos: "
                  f"{r[f'mean_class_accuracy_{STEADY}plus']:.2%})  "
                  + " ".join(f"{c} {v:.2f}" for c, v in r["recall"].items()), flush=True)
            if "against_first" in r:
                print("    minus the first, 90 % interval over identities: " + ", ".join(
                    f"{key} {d:+.2%} [{lo:+.2%}, {hi:+.2%}]"
                    for key, (d, lo, hi) in r["against_first"]["difference"].items()), flush=True)
    if args.out:
        old = json.loads(args.out.read_text()) if args.out.exists() else []
        atomic_write_text(args.out, json.dumps(old + results, indent=1))


if __name__ == "__main__":
    main()
