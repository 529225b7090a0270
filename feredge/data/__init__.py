"""Datasets: loaders per source format, one prepared on-disk format, and splits."""

from __future__ import annotations

from pathlib import Path

from feredge.data import fer2013, rafdb, subjects
from feredge.data.problems import Problems
from feredge.data.store import Dataset, check_out, save
from feredge.errors import DataError

DATASETS = ("fer2013", "rafdb", "ckplus", "jaffe")


def prepare(kind: str, source: Path, out: Path, *, skip_bad: bool = False, overwrite: bool = False,
            size: int | None = None, seed: int = 0, ferplus: Path | None = None,
            ferplus_majority: bool = False, contempt: str = "drop") -> tuple[Dataset, Problems]:
    """Convert ``source`` (any supported layout of ``kind``) into the prepared format under ``out``."""
    if size is not None and not 8 <= size <= 1024:
            raise DataError(f"--size {size}: expected a side length in pixels between 8 and 1024")
    check_out(out, overwrite)  # before minutes of decoding, not after
    problems = Problems(skip_bad)
    if kind == "fer2013":
        ds = fer2013.prepare(source, problems, ferplus, ferplus_majority, size)
    elif kind == "rafdb":
        ds = rafdb.prepare(source, problems, size or 100)
    elif kind == "ckplus":
        ds = subjects.prepare_ckplus(source, problems, size or 48, seed, contempt)
    elif kind == "jaffe":
        ds = subjects.prepare_jaffe(source, problems, size or 48, seed)
    else:
        raise ValueError(f"unknown dataset kind {kind!r}")
    ds.meta["skipped"] = problems.items
    ds.meta["ignored"] = problems.ignored
    save(ds, out, overwrite=overwrite)
    return ds, problems
