"""CK+ and JAFFE: small posed datasets split by subject so no person is in two splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge.data.images import decode, list_images
from feredge.data.labels import CLASSES, CONTEMPT, canonical_name
from feredge.data.problems import Problems
from feredge.data.splits import subject_partition
from feredge.data.store import Dataset, Split
from feredge.errors import DataError

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def _build(name: str, items: list[tuple[Path, str, str]], classes: tuple[str, ...], size: int,
           seed: int, problems: Problems, meta: dict) -> Dataset:
    images, labels, subjects = [], [], []
    for path, label, subject in items:
        try:
            images.append(decode(path, size, 1))
        except ValueError as exc:
            problems.report(f"{path}: {exc}")
            continue
        labels.append(classes.index(label))
        subjects.append(subject)
    if not images:
        raise DataError(f"{meta['source']}: no decodable images")
    split = Split(np.stack(images), np.array(labels, dtype=np.int64), subjects=np.array(subjects))
    parts = subject_partition(subjects, FRACTIONS, seed)
    splits = {n: split.subset(idx) for n, idx in parts.items() if len(idx)}
    return Dataset(name, classes, splits, {**meta, "split": "subject-wise 60/20/20", "seed": seed})


def _contempt(label: str, policy: str, where: Path, counts: dict) -> str | None:
    """Apply the explicit contempt policy: 'drop' (images counted), 'class' (8th class) or 'error'."""
    if label != CONTEMPT:
        return label
    if policy == "error":
        raise DataError(f"{where}: contempt is not among the 7 classes; choose --contempt drop or --contempt class")
    if policy == "drop":
        counts["contempt_dropped"] += len(list_images(where))
        return None
    return label


def prepare_ckplus(source: Path, problems: Problems, size: int = 48, seed: int = 0,
                   contempt: str = "drop") -> Dataset:
    """CK+ as one folder per emotion with files named <subject>_<sequence>_<frame>.png."""
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"{source}: folder not found (expected one folder per emotion)")
    counts = {"contempt_dropped": 0}
    items = []
    class_dirs = sorted(d for d in source.iterdir() if d.is_dir())
    if not class_dirs:
        raise DataError(f"{source}: empty (expected one folder per emotion, e.g. anger/, happy/)")
    for class_dir in class_dirs:
        label = _contempt(canonical_name(class_dir.name, str(class_dir)), contempt, class_dir, counts)
        if label is None:
            continue
        files = list_images(class_dir, problems)
        if not files:
            raise DataError(f"{class_dir}: no images")
        items += [(f, label, f.name.split("_")[0]) for f in files]
    classes = CLASSES + (CONTEMPT,) if contempt == "class" else CLASSES
    return _build("ckplus", items, classes, size, seed, problems, {"source": str(source), "contempt": contempt,
                                                                   **counts})


#: JAFFE file names look like KA.AN1.39.tiff: subject, emotion code + index, image id.
def prepare_jaffe(source: Path, problems: Problems, size: int = 48, seed: int = 0) -> Dataset:
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"{source}: folder not found (expected JAFFE images such as KA.AN1.39.tiff)")
    files = list_images(source, problems)
    if not files:
        raise DataError(f"{source}: no images")
    items = []
    for f in files:
        parts = f.name.split(".")
        if len(parts) < 3 or len(parts[1]) < 2:
            problems.report(f"{f}: file name does not follow <subject>.<EMOTION><n>.<id>.<ext>")
            continue
        try:
            label = canonical_name(parts[1][:2], str(f))
        except DataError as exc:
            problems.report(str(exc))
            continue
        items.append((f, label, parts[0]))
    return _build("jaffe", items, CLASSES, size, seed, problems, {"source": str(source)})
