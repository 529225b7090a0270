"""FER2013 from the Kaggle CSV or from image folders, with optional FER+ vote labels.

Split names follow the official usage: Training → ``train``, PublicTest → ``val``,
PrivateTest → ``test`` (the image-folder release names PublicTest ``val`` too).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from feredge.data.images import decode, list_images
from feredge.data.labels import CLASSES, FERPLUS_COLUMNS, canonical_name
from feredge.data.problems import Problems
from feredge.data.store import Dataset, Split
from feredge.errors import DataError, absent

USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FOLDER_TO_SPLIT = {"train": "train", "training": "train", "val": "val", "validation": "val", "publictest": "val",
                   "test": "test", "privatetest": "test"}
SIDE = 48
N_PIXELS = SIDE * SIDE


def _parse_pixels(text: str) -> np.ndarray | str:
    """The 48×48×1 image, or what is wrong with the field."""
    parts = text.split()
    if len(parts) != N_PIXELS:
        return f"field 'pixels' has {len(parts)} values, expected {N_PIXELS} integers 0-255"
    try:
        values = np.array([int(p) for p in parts], dtype=np.int64)
    except ValueError:
        return f"field 'pixels' holds a non-integer value, expected {N_PIXELS} integers 0-255"
    if values.min() < 0 or values.max() > 255:
        return "field 'pixels' has values outside 0-255"
    return values.astype(np.uint8).reshape(SIDE, SIDE, 1)


def _parse_emotion(text: str) -> int | str:
    """The class index, or what is wrong with the field."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < len(CLASSES):
        return f"field 'emotion' is {text!r}, expected an integer 0-{len(CLASSES) - 1}"
    return value


def read_csv(path: Path, problems: Problems) -> tuple[dict[str, Split], list[int]]:
    """Parse the Kaggle CSV; returns the splits and, per kept row, its CSV row number (for FER+)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {absent(path, 'the FER2013 CSV with columns emotion,pixels,Usage')}")
    rows: dict[str, tuple[list, list, list]] = {}
    lineno = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: a BOM (Excel's export) is fine
            reader = csv.reader(fh)
            header = next(reader, None)
            expected = ["emotion", "pixels", "Usage"]
            if header is None:
                raise DataError(f"{path}: empty file, expected a CSV with the header {','.join(expected)}")
            if [h.strip() for h in header] != expected:
                raise DataError(f"{path}: header is {header}, expected {','.join(expected)}")
            for lineno, row in enumerate(reader, start=2):
                _read_row(row, f"{path}: row {lineno}", lineno, rows, problems)
    except UnicodeDecodeError:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:  # decoding runs ahead of the CSV reader: locate the byte in the file
            bad = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
            row = raw[:bad].count(b"\n") + 1
            raise DataError(f"{path}: row {row}: byte 0x{raw[bad]:02x} is not UTF-8 text "
                            "(expected a UTF-8 CSV)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: row {lineno + 1}: not a valid CSV row ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no valid rows")
    splits = {name: Split(np.stack(im), np.array(lb, dtype=np.int64)) for name, (im, lb, _) in rows.items()}
    keys = {name: ln for name, (_, _, ln) in rows.items()}
    return splits, keys


def _read_row(row: list[str], where: str, lineno: int, rows: dict, problems: Problems) -> None:
    """Add one CSV row to ``rows``; a bad row is reported once, naming every bad field."""
    if len(row) != 3:
        problems.report(f"{where}: has {len(row)} fields, expected 3 (emotion,pixels,Usage)")
        return
    emotion, pixels, usage = _parse_emotion(row[0]), _parse_pixels(row[1]), row[2].strip()
    wrong = [v for v in (emotion, pixels) if isinstance(v, str)]
    if usage not in USAGE_TO_SPLIT:
        wrong.append(f"field 'Usage' is {usage!r}, expected one of {', '.join(USAGE_TO_SPLIT)}")
    if wrong:
        problems.report(f"{where}: {'; '.join(wrong)}")
        return
    images, labels, linenos = rows.setdefault(USAGE_TO_SPLIT[usage], ([], [], []))
    images.append(pixels)
    labels.append(emotion)
    linenos.append(lineno)


def _class_index(class_dir: Path) -> int:
    """The class of an emotion folder; FER2013 has no contempt class (CK+ has, and keeps it on request)."""
    name = canonical_name(class_dir.name, str(class_dir))
    if name not in CLASSES:
        raise DataError(f"{class_dir}: '{class_dir.name}' is not a FER2013 class (known: {', '.join(CLASSES)}); "
                        "remove the folder or rename it to one of them")
    return CLASSES.index(name)


def read_folders(root: Path, problems: Problems, size: int | None = None,
                 inputs: tuple[Path, ...] = ()) -> tuple[dict[str, Split], dict[str, list[str]]]:
    """Read ``root/<split>/<emotion>/*``; returns splits and, per split, each image's relative path.

    ``inputs`` are other files of the command (the FER+ vote CSV) that may sit in the tree: used, not ignored.
    """
    root = Path(root)
    used = {Path(p).resolve() for p in inputs}
    if not root.is_dir():
        raise DataError(f"{root}: folder not found (expected <split>/<emotion>/*.jpg)")
    split_dirs = sorted(d for d in root.iterdir() if d.is_dir() and d.name.lower() in FOLDER_TO_SPLIT)
    if not split_dirs:
        raise DataError(f"{root}: no split folders (expected some of {', '.join(sorted(FOLDER_TO_SPLIT))})")
    by_split: dict[str, Path] = {}
    for d in split_dirs:
        name = FOLDER_TO_SPLIT[d.name.lower()]
        if name in by_split:
            raise DataError(f"{root}: folders '{by_split[name].name}' and '{d.name}' both hold split '{name}'; "
                            "keep one of them")
        by_split[name] = d
    for other in sorted(root.iterdir()):
        if other not in split_dirs and not other.name.startswith(".") and other.resolve() not in used:
            problems.ignore(other, f"not a split folder (expected {', '.join(sorted(FOLDER_TO_SPLIT))})")
    splits, keys = {}, {}
    for split_dir in split_dirs:
        images, labels, paths, bad_before = [], [], [], len(problems.items)
        class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir())
        if not class_dirs:
            raise DataError(f"{split_dir}: empty (expected one folder per emotion)")
        for stray in sorted(p for p in split_dir.iterdir() if p.is_file() and not p.name.startswith(".")):
            if stray.resolve() not in used:
                problems.ignore(stray, "a file beside the emotion folders")
        for class_dir in class_dirs:
            label = _class_index(class_dir)
            files = list_images(class_dir, problems)
            if not files:
                raise DataError(f"{class_dir}: no images (expected *.jpg or *.png)")
            for file in files:
                try:
                    images.append(decode(file, size or SIDE, 1))
                except ValueError as exc:
                    problems.report(f"{file}: {exc}")
                    continue
                labels.append(label)
                paths.append(file.relative_to(root).as_posix())
        if not images:
            raise DataError(f"{split_dir}: no usable images, all {len(problems.items) - bad_before} were bad "
                            f"(e.g. {problems.items[-1]}); nothing to prepare")
        name = FOLDER_TO_SPLIT[split_dir.name.lower()]
        splits[name] = Split(np.stack(images), np.array(labels, dtype=np.int64))
        keys[name] = paths
    return splits, keys


def read_ferplus_votes(path: Path) -> dict[str | int, np.ndarray]:
    """FER+ votes over the 7 canonical classes, keyed by image path (folder release) or CSV row number.

    Contempt, unknown and not-a-face votes are not among the 7 classes and are left out on purpose.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {absent(path, 'the FER+ vote CSV', 'FER+ vote file not found')}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        missing = [c for c in FERPLUS_COLUMNS if c not in fields]
        if missing:
            raise DataError(f"{path}: missing vote columns {missing}")
        by_path = "path" in fields
        votes: dict[str | int, np.ndarray] = {}
        for lineno, row in enumerate(reader, start=2):
            vec = np.zeros(len(CLASSES), dtype=np.float32)
            try:
                for column, name in FERPLUS_COLUMNS.items():
                    vec[CLASSES.index(name)] = float(row[column])
            except (TypeError, ValueError):
                raise DataError(f"{path}: row {lineno}: vote columns must be numbers") from None
            votes[row["path"] if by_path else lineno] = vec
    return votes


def attach_ferplus(splits: dict[str, Split], keys: dict[str, list], votes: dict, majority: bool) -> dict:
    """Add soft labels (vote distributions) and optionally replace labels by the FER+ majority.

    Images without any 7-class vote keep their FER2013 label as a one-hot soft label; the count
    is returned so it is reported, not hidden.
    """
    stats = {"ferplus_matched": 0, "ferplus_unmatched": 0}
    for name, split in splits.items():
        soft = np.zeros((len(split), len(CLASSES)), dtype=np.float32)
        for i, key in enumerate(keys[name]):
            vec = votes.get(key)
            if vec is None or vec.sum() == 0:
                soft[i, split.labels[i]] = 1.0
                stats["ferplus_unmatched"] += 1
                continue
            soft[i] = vec / vec.sum()
            stats["ferplus_matched"] += 1
        split.soft = soft
        if majority:
            split.labels = soft.argmax(1).astype(np.int64)
    return stats


def _resize(splits: dict[str, Split], size: int) -> None:
    from PIL import Image

    for split in splits.values():
        split.images = np.stack([np.asarray(Image.fromarray(im[..., 0]).resize((size, size), Image.BILINEAR))[..., None]
                                 for im in split.images])


def prepare(source: Path, problems: Problems, ferplus: Path | None = None, ferplus_majority: bool = False,
            size: int | None = None) -> Dataset:
    """FER2013 from a CSV file or an image-folder tree, optionally with FER+ labels, at 48 px or ``size``."""
    source = Path(source)
    if source.is_file():
        splits, keys = read_csv(source, problems)
        if size and size != SIDE:
            _resize(splits, size)
    else:
        splits, keys = read_folders(source, problems, size, inputs=(ferplus,) if ferplus is not None else ())
    meta: dict = {"source": str(source), "split_origin": {"train": "Training", "val": "PublicTest",
                                                          "test": "PrivateTest"}}
    if ferplus is not None:
        meta.update(attach_ferplus(splits, keys, read_ferplus_votes(ferplus), ferplus_majority))
        meta["labels"] = "ferplus-majority" if ferplus_majority else "fer2013 (FER+ soft labels in soft.npy)"
    elif ferplus_majority:
        raise DataError("--ferplus-majority needs --ferplus VOTES_CSV")
    return Dataset("fer2013", CLASSES, splits, meta)
