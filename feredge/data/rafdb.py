"""RAF-DB basic: aligned 100×100 faces, 7 emotions, and the manual age/race/gender attributes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge.data.images import decode
from feredge.data.labels import CLASSES, RAFDB_CODES
from feredge.data.problems import Problems
from feredge.data.store import Dataset, Split
from feredge.errors import DataError

LABEL_FILE = Path("EmoLabel/list_patition_label.txt")
#: Line index in <name>_manu_attri.txt → (attribute column, number of classes).
_ATTR_LINES = {7: (0, 5), 6: (1, 3), 5: (2, 3)}  # age, race, gender


def _root(source: Path) -> Path:
    for candidate in (source, source / "basic"):
        if (candidate / LABEL_FILE).is_file():
            return candidate
    raise DataError(f"{source}: no {LABEL_FILE} (expected the RAF-DB 'basic' folder or its parent)")


def _attributes(path: Path, problems: Problems) -> np.ndarray | None:
    """Age, race, gender codes from a manual attribute file; -1 each when the file is absent."""
    out = np.full(3, -1, dtype=np.int64)
    if not path.is_file():
        return out
    lines = path.read_text().splitlines()
    for line_no, (col, n) in _ATTR_LINES.items():
        try:
            value = int(lines[line_no].strip())
        except (IndexError, ValueError):
            problems.report(f"{path}: line {line_no + 1} should hold an integer {('age', 'race', 'gender')[col]} code")
            return None
        if not 0 <= value < n:
            problems.report(f"{path}: line {line_no + 1} is {value}, expected 0-{n - 1}")
            return None
        out[col] = value
    return out


def prepare(source: Path, problems: Problems, size: int = 100, channels: int = 3) -> Dataset:
    root = _root(Path(source))
    label_path = root / LABEL_FILE
    rows: dict[str, tuple[list, list, list]] = {}
    for lineno, line in enumerate(label_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{label_path}: line {lineno}"
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in RAFDB_CODES:
            problems.report(f"{where}: expected '<name>.jpg <1-7>', got {line.strip()!r}")
            continue
        name, code = parts[0], int(parts[1])
        split = "train" if name.startswith("train_") else "test" if name.startswith("test_") else None
        if split is None:
            problems.report(f"{where}: image name {name!r} starts with neither train_ nor test_")
            continue
        stem = Path(name).stem
        image_path = root / "Image" / "aligned" / f"{stem}_aligned.jpg"
        try:
            image = decode(image_path, size, channels)
        except (ValueError, FileNotFoundError) as exc:
            problems.report(f"{image_path}: {exc}")
            continue
        attrs = _attributes(root / "Annotation" / "manual" / f"{stem}_manu_attri.txt", problems)
        if attrs is None:
            continue
        images, labels, attr_rows = rows.setdefault(split, ([], [], []))
        images.append(image)
        labels.append(CLASSES.index(RAFDB_CODES[code]))
        attr_rows.append(attrs)
    if not rows:
        raise DataError(f"{label_path}: no usable entries")
    splits = {n: Split(np.stack(i), np.array(lab, dtype=np.int64), attrs=np.stack(a)) for n, (i, lab,
                                                                                              a) in rows.items()}
    return Dataset("rafdb", CLASSES, splits, {"source": str(source), "attributes": ["age", "race", "gender"]})
