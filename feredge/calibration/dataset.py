"""A reproducible, class-balanced calibration set drawn from the training split (never the test split).

The images that training held out for validation are excluded too, so the accuracy gate that runs on
them measures data the calibration never saw. The selection is cached as indices plus a digest, which
is checked on every read: a damaged cache would otherwise break every export with the same settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feredge.artifact import atomic_write_bytes
from feredge.config import CALIB_SIZE, SEED, VAL_FRACTION
from feredge.data.splits import stratified_holdout
from feredge.data.store import load_split, read_meta
from feredge.errors import FeredgeError


def default_cache() -> Path:
    """Where the chosen indices are kept between exports: the user's cache folder ($XDG_CACHE_HOME or
    ~/.cache), never the folder the command runs in."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "feredge" / "calibration"


#: ``cache_dir`` of `calibration_set` when none is given: `default_cache()` at the time of the call.
DEFAULT = Path("<default>")


@dataclass
class CalibrationSet:
    images: np.ndarray  # uint8 (N, H, W, C)
    indices: np.ndarray  # rows of the training split
    digest: str  # sha256 over the chosen indices and the dataset identity


def balanced_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` indices spread as evenly over classes as their counts allow, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    taken = {c: 0 for c in pools}
    chosen: list[int] = []
    while len(chosen) < size and any(taken[c] < len(p) for c, p in pools.items()):
        for c, pool in pools.items():
            if len(chosen) < size and taken[c] < len(pool):
                chosen.append(int(pool[taken[c]]))
                taken[c] += 1
    return np.sort(np.array(chosen, dtype=np.int64))


def holdout_split(data: Path, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train-remainder indices, held-out validation indices), the same carve as the trainer's."""
    labels = np.asarray(load_split(data, "train").labels)
    return stratified_holdout(labels, val_fraction, seed)


def _read_cache(cache: Path, key: str, n_train: int) -> np.ndarray | str:
    """The cached indices, or why the file cannot be trusted (it is rebuilt then)."""
    try:
        with np.load(cache, allow_pickle=False) as npz:
            indices, digest = npz["indices"], str(npz["digest"]) if "digest" in npz.files else None
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        return f"not a readable calibration cache ({exc.__class__.__name__})"
    if digest is None:
        return "no checksum (written by an older feredge)"
    if indices.dtype != np.int64 or indices.ndim != 1 or not len(indices):
        return f"indices are {indices.dtype} of shape {list(indices.shape)}, expected int64 [N]"
    if _digest(indices, key) != digest:
        return "checksum does not match its indices"
    if indices[0] < 0 or indices[-1] >= n_train or (np.diff(indices) <= 0).any():
        return f"indices are not sorted rows of the {n_train}-image training split"
    return indices


def _digest(indices: np.ndarray, key: str) -> str:
    return hashlib.sha256(indices.tobytes() + key.encode()).hexdigest()


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def calibration_set(data: Path, size: int = CALIB_SIZE, seed: int = SEED, val_fraction: float = VAL_FRACTION,
                    cache_dir: Path | None = DEFAULT, warn: Callable[[str], None] = _warn) -> CalibrationSet:
    """Select (or reload from the cache) ``size`` class-balanced training images; a damaged cache is
    rebuilt (atomically, so a kill cannot leave half a file) and ``warn`` says so in one line."""
    meta = read_meta(data)
    if "train" not in meta["splits"]:
        raise FeredgeError(f"{data}: calibration draws from the 'train' split, which is missing")
    identity = json.dumps({"dataset": meta["dataset"], "splits": meta["splits"], "size": size, "seed": seed,
                           "val_fraction": val_fraction}, sort_keys=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    cache_dir = default_cache() if cache_dir == DEFAULT else cache_dir
    cache = Path(cache_dir) / f"{meta['dataset']}-{size}-s{seed}-{key}.npz" if cache_dir else None
    train = load_split(data, "train")
    cached = _read_cache(cache, key, len(train)) if cache is not None and cache.is_file() else None
    if isinstance(cached, np.ndarray):
        indices = cached
    else:
        keep, _ = holdout_split(data, val_fraction, seed)
        indices = keep[balanced_indices(np.asarray(train.labels)[keep], size, seed)]
        if cache is not None:
            if cached is not None:
                warn(f"calibration cache {cache}: {cached}; rebuilt it")
            buf = io.BytesIO()
            np.savez(buf, indices=indices, digest=np.array(_digest(indices, key)))
            atomic_write_bytes(cache, buf.getvalue())
    return CalibrationSet(np.asarray(train.images[indices]), indices, _digest(indices, key))
