"""A reproducible, class-balanced calibration set drawn from the training split (never the test split).

The images that training held out for validation are excluded too, so the accuracy gate that runs on
them measures data the calibration never saw. The selection is cached as indices plus a digest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feredge.data.splits import stratified_holdout
from feredge.data.store import load_split, read_meta
from feredge.errors import FeredgeError

DEFAULT_CACHE = Path("calibration/cache")


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


def calibration_set(data: Path, size: int = 512, seed: int = 0, val_fraction: float = 0.1,
                    cache_dir: Path | None = DEFAULT_CACHE) -> CalibrationSet:
    """Select (or reload from the cache) ``size`` class-balanced training images."""
    meta = read_meta(data)
    if "train" not in meta["splits"]:
        raise FeredgeError(f"{data}: calibration draws from the 'train' split, which is missing")
    identity = json.dumps({"dataset": meta["dataset"], "splits": meta["splits"], "size": size, "seed": seed,
                           "val_fraction": val_fraction}, sort_keys=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"{meta['dataset']}-{size}-s{seed}-{key}.npz" if cache_dir else None
    train = load_split(data, "train")
    if cache is not None and cache.is_file():
        indices = np.load(cache, allow_pickle=False)["indices"]
    else:
        keep, _ = holdout_split(data, val_fraction, seed)
        indices = keep[balanced_indices(np.asarray(train.labels)[keep], size, seed)]
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, indices=indices)
    digest = hashlib.sha256(indices.tobytes() + key.encode()).hexdigest()
    return CalibrationSet(np.asarray(train.images[indices]), indices, digest)
