"""The prepared on-disk format: per split, uint8 images and int64 labels as .npy, plus meta.json.

Training memory-maps these arrays instead of decoding thousands of JPEGs every epoch.
Layout::

    DIR/meta.json                    dataset, classes, image shape, per-split counts, skipped items
    DIR/<split>/images.npy           uint8 (N, H, W, C)
    DIR/<split>/labels.npy           int64 (N,)
    DIR/<split>/soft.npy             float32 (N, K) soft labels (optional, e.g. FER+ votes)
    DIR/<split>/attrs.npy            int64 (N, 3) age, race, gender; -1 where unknown (optional)
    DIR/<split>/face_boxes.npy       float32 (N, 4) the face detector's box per image, NaN if none
                                     (optional, `feredge data face-boxes`)
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from feredge.artifact import check_folder, no_space
from feredge.errors import DataError, FeredgeError, read_format_json
from feredge.outputs import refuse_existing

ATTRIBUTES = ("age", "race", "gender")
ATTRIBUTE_CLASSES = {"age": 5, "race": 3, "gender": 3}
_OPTIONAL = ("soft", "attrs", "subjects", "face_boxes")


@dataclass
class Split:
    """One split held in memory (or memory-mapped)."""

    images: np.ndarray
    labels: np.ndarray
    soft: np.ndarray | None = None
    attrs: np.ndarray | None = None
    subjects: np.ndarray | None = None
    face_boxes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> Split:
        """Rows ``index`` of every array (used for carving a validation split)."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return Split(self.images[index], self.labels[index], pick(self.soft), pick(self.attrs), pick(self.subjects),
                     pick(self.face_boxes))


@dataclass
class Dataset:
    """A prepared dataset: class names, splits and free-form metadata."""

    name: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    meta: dict = field(default_factory=dict)


def class_counts(labels: np.ndarray, n_classes: int) -> list[int]:
    return np.bincount(labels.astype(np.int64), minlength=n_classes).tolist()


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, or that holds a prepared dataset, before any work is done. The dataset
    is built beside ``out`` and swapped in, so its parent folder must be writable too."""
    out = check_folder(out)
    check_folder(out.parent, "--out", out)
    if (out / "meta.json").exists():
        try:
            refuse_existing([out], overwrite, holds="a prepared dataset (meta.json)")
        except FeredgeError as exc:
            raise DataError(str(exc)) from None
    if out.is_dir() and any(out.iterdir()) and not (out / "meta.json").exists():
        raise DataError(f"{out}: is a folder with other files in it; pick an empty or new --out")


def save(dataset: Dataset, out: Path, overwrite: bool = False) -> Path:
    """Write ``dataset`` under ``out``: built in a temporary folder beside it and swapped in only when
    complete, so an interrupted run never leaves new arrays beside an old meta.json. An --out that is a
    symbolic link is followed: the dataset is swapped in where it points, and the link stays."""
    out = Path(out).resolve() if Path(out).is_symlink() else Path(out)
    check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    held = os.open(staging, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # ours while we build: another prepare can tell it from a killed one's
    _remove_stale_staging(out, staging)
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it owner-only; a dataset is as readable as any folder
        try:
            _write(dataset, staging)
        except OSError as exc:  # out of space: the staging folder goes (below), the old dataset stays
            needed = sum(a.nbytes for sp in dataset.splits.values() for a in _arrays(sp))
            full = no_space(out, needed, exc)
            if full is None:
                raise
            raise full from None
        if out.exists():
            old = staging.with_name(staging.name.replace(".staging-", ".old-"))
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
        os.close(held)
    return out


def _remove_stale_staging(out: Path, own: Path) -> None:
    """Remove the staging folders a killed prepare of ``out`` left (no process holds their lock), and an old
    dataset a kill left after the new one was swapped in; say so in one line."""
    stale = []
    for folder in out.parent.glob(f".{out.name}.staging-*"):
        if folder == own:
            continue
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # another prepare is building it now
        finally:
            os.close(fd)
        stale.append(folder)
    if (out / "meta.json").is_file():  # swapped in: an .old- folder beside it is the replaced dataset's leftover
        stale += list(out.parent.glob(f".{out.name}.old-*"))
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    if stale:
        print(f"{out.parent}: removed {len(stale)} folder(s) an interrupted prepare left "
              f"({', '.join(f.name for f in stale[:3])}{', …' * (len(stale) > 3)})", file=sys.stderr)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _arrays(split) -> list[np.ndarray]:
    """The arrays a split is saved as (images, labels, and the optional ones it has)."""
    optional = [getattr(split, key) for key in _OPTIONAL]
    return [np.asarray(split.images), np.asarray(split.labels)] + [np.asarray(v) for v in optional if v is not None]


def _write(dataset: Dataset, out: Path) -> None:
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


def read_meta(root: Path) -> dict:
    """meta.json, checked for the fields every reader relies on and for the split folders it names."""
    path = Path(root) / "meta.json"
    meta = read_format_json(path, "feredge-prepared-v1", DataError,
                            f"{root}: not a prepared dataset (no meta.json); run `feredge data prepare` first")
    _check_meta(meta, path)
    return meta


def _check_meta(meta: dict, path: Path) -> None:
    """A hand-edited or foreign meta.json fails here in one line instead of deep inside a command."""
    again = "prepare the dataset again"
    if not isinstance(meta.get("dataset"), str):
        raise DataError(f"{path}: field 'dataset' is missing or not a name; {again}")
    classes = meta.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise DataError(f"{path}: field 'classes' is missing or not a list of class names; {again}")
    shape = meta.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise DataError(f"{path}: field 'image_shape' is {shape!r}, expected [height, width, channels]; {again}")
    splits = meta.get("splits")
    if not (isinstance(splits, dict) and splits):
        raise DataError(f"{path}: no splits (field 'splits' is {splits!r}, expected one entry per split "
                        f"such as train, val); {again}")
    for name, info in splits.items():
        counted = isinstance(info, dict) and isinstance(info.get("count"), int)
        if not (counted and isinstance(info.get("class_counts"), list) and len(info["class_counts"]) == len(classes)):
            raise DataError(f"{path}: split '{name}' needs a 'count' and one 'class_counts' entry per class; {again}")
        for key in ("images", "labels"):
            if not (path.parent / name / f"{key}.npy").is_file():
                raise DataError(f"{path.parent / name / f'{key}.npy'}: missing (meta.json lists split '{name}'); "
                                f"the prepared dataset is incomplete; {again}")


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
            try:
                arrays[key] = np.load(path, mmap_mode=mode, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise DataError(f"{path}: not a readable .npy array ({exc}); prepare the dataset again") from None
        elif key in ("images", "labels"):
            raise DataError(f"{path}: missing (the prepared dataset is incomplete)")
    split_obj = Split(**arrays)
    _check_arrays(split_obj, d, meta)
    return split_obj


def _check_arrays(split: Split, d: Path, meta: dict) -> None:
    """Arrays of the wrong kind would evaluate to nonsense instead of failing: check them against meta.json."""
    shape = tuple(meta.get("image_shape", ()))
    if split.images.dtype != np.uint8 or split.images.ndim != 4 or (shape and split.images.shape[1:] != shape):
        raise DataError(f"{d / 'images.npy'}: {split.images.dtype} array of shape {list(split.images.shape)}, "
                        f"expected uint8 [N, {', '.join(map(str, shape)) or 'H, W, C'}] as meta.json says")
    if split.labels.ndim != 1 or not np.issubdtype(split.labels.dtype, np.integer):
        raise DataError(f"{d / 'labels.npy'}: {split.labels.dtype} array of shape {list(split.labels.shape)}, "
                        "expected one integer label per image")
    if len(split.images) != len(split.labels):
        raise DataError(f"{d}: {len(split.images)} images but {len(split.labels)} labels")
    boxes = split.face_boxes
    if boxes is not None and (boxes.shape != (len(split.labels), 4) or not np.issubdtype(boxes.dtype, np.floating)):
        raise DataError(f"{d / 'face_boxes.npy'}: {boxes.dtype} array of shape {list(boxes.shape)}, expected float "
                        f"[{len(split.labels)}, 4] (one x, y, w, h box per image); run `feredge data face-boxes` again")
    n_classes = len(meta.get("classes", ()))
    if len(split.labels) and n_classes and (split.labels.min() < 0 or split.labels.max() >= n_classes):
        raise DataError(f"{d / 'labels.npy'}: labels outside 0..{n_classes - 1} (meta.json names {n_classes} classes)")


def load(root: Path, mmap: bool = True) -> Dataset:
    meta = read_meta(root)
    splits = {name: load_split(root, name, mmap) for name in meta["splits"]}
    return Dataset(meta["dataset"], tuple(meta["classes"]), splits, meta)
