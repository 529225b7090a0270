"""The prepared on-disk format: per split, uint8 images and int64 labels as .npy, plus meta.json.

Training memory-maps these arrays instead of decoding thousands of JPEGs every epoch.
Layout::

    DIR/meta.json                    dataset, classes, image shape, per-split counts, skipped items
    DIR/<split>/images.npy           uint8 (N, H, W, C)
    DIR/<split>/labels.npy           int64 (N,)
    DIR/<split>/soft.npy             float32 (N, K) soft labels (optional, e.g. FER+ votes)
    DIR/<split>/attrs.npy            int64 (N, 3) age, race, gender; -1 where unknown (optional)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from feredge.errors import DataError, read_format_json

ATTRIBUTES = ("age", "race", "gender")
ATTRIBUTE_CLASSES = {"age": 5, "race": 3, "gender": 3}
_OPTIONAL = ("soft", "attrs", "subjects")


@dataclass
class Split:
    """One split held in memory (or memory-mapped)."""

    images: np.ndarray
    labels: np.ndarray
    soft: np.ndarray | None = None
    attrs: np.ndarray | None = None
    subjects: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> "Split":
        """Rows ``index`` of every array (used for carving a validation split)."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return Split(self.images[index], self.labels[index], pick(self.soft), pick(self.attrs), pick(self.subjects))


@dataclass
class Dataset:
    """A prepared dataset: class names, splits and free-form metadata."""

    name: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    meta: dict = field(default_factory=dict)


def class_counts(labels: np.ndarray, n_classes: int) -> list[int]:
    return np.bincount(labels.astype(np.int64), minlength=n_classes).tolist()


def save(dataset: Dataset, out: Path, overwrite: bool = False) -> Path:
    """Write ``dataset`` under ``out``; refuses to overwrite an existing prepared dataset unless asked."""
    out = Path(out)
    if (out / "meta.json").exists() and not overwrite:
        raise DataError(f"{out}: already holds a prepared dataset (meta.json); pass --overwrite or pick another --out")
    out.mkdir(parents=True, exist_ok=True)
    split_meta = {}
    for name, split in dataset.splits.items():
        d = out / name
        d.mkdir(exist_ok=True)
        np.save(d / "images.npy", np.ascontiguousarray(split.images, dtype=np.uint8))
        np.save(d / "labels.npy", split.labels.astype(np.int64))
        for key in _OPTIONAL:
            value = getattr(split, key)
            if value is not None:
                np.save(d / f"{key}.npy", value)
            elif (d / f"{key}.npy").exists():
                (d / f"{key}.npy").unlink()
        split_meta[name] = {"count": len(split), "class_counts": class_counts(split.labels, len(dataset.classes))}
    first = next(iter(dataset.splits.values()))
    meta = {
        **dataset.meta,
        "format": "feredge-prepared-v1",
        "dataset": dataset.name,
        "classes": list(dataset.classes),
        "image_shape": list(first.images.shape[1:]),
        "splits": split_meta,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out


def read_meta(root: Path) -> dict:
    return read_format_json(Path(root) / "meta.json", "feredge-prepared-v1", DataError,
                            f"{root}: not a prepared dataset (no meta.json); run `feredge data prepare` first")


def load_split(root: Path, split: str, mmap: bool = True) -> Split:
    """Load one split; arrays are memory-mapped so opening a dataset costs no RAM."""
    meta = read_meta(root)
    if split not in meta["splits"]:
        raise DataError(f"{root}: no split '{split}' (available: {', '.join(meta['splits'])})")
    d = Path(root) / split
    mode = "r" if mmap else None
    arrays = {}
    for key in ("images", "labels", *_OPTIONAL):
        path = d / f"{key}.npy"
        if path.exists():
            arrays[key] = np.load(path, mmap_mode=mode, allow_pickle=False)
        elif key in ("images", "labels"):
            raise DataError(f"{path}: missing (the prepared dataset is incomplete)")
    split_obj = Split(**arrays)
    if len(split_obj.images) != len(split_obj.labels):
        raise DataError(f"{d}: {len(split_obj.images)} images but {len(split_obj.labels)} labels")
    return split_obj


def load(root: Path, mmap: bool = True) -> Dataset:
    meta = read_meta(root)
    splits = {name: load_split(root, name, mmap) for name in meta["splits"]}
    return Dataset(meta["dataset"], tuple(meta["classes"]), splits, meta)
