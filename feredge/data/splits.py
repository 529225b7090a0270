"""Seeded, reproducible splits: stratified hold-outs, subject-wise partitions and the training run's
validation carve (one function, so training, soups and calibration carve alike)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge.config import TrainConfig
from feredge.data.store import Split, load
from feredge.errors import FeredgeError


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, holdout) with ``fraction`` of every class held out, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    keep, hold = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = int(round(len(idx) * fraction))
        hold.append(idx[:n])
        keep.append(idx[n:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(hold))


def subject_partition(subjects: list[str], fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Assign whole subjects to splits so no person appears in two of them."""
    unique = sorted(set(subjects))
    order = np.random.default_rng(seed).permutation(len(unique))
    names = list(fractions)
    bounds = np.cumsum([fractions[n] for n in names]) / sum(fractions.values())
    owner = {}
    for rank, pos in enumerate(order):
        owner[unique[pos]] = names[int(np.searchsorted(bounds, (rank + 0.5) / len(unique)))]
    subj = np.array(subjects)
    return {n: np.flatnonzero(np.array([owner[s] == n for s in subj])) for n in names}


def train_val_splits(cfg: TrainConfig) -> tuple[Split, Split, dict]:
    """Training split and validation split (carved from training unless cfg.val_split names one), and meta."""
    ds = load(Path(cfg.data))
    if "train" not in ds.splits:
        raise FeredgeError(f"{cfg.data}: no 'train' split")
    train = ds.splits["train"]
    if cfg.limit_train:
        keep, _ = stratified_holdout(np.asarray(train.labels), 1 - min(cfg.limit_train / len(train), 1.0), cfg.seed)
        train = train.subset(keep)
    if cfg.val_split:
        if cfg.val_split not in ds.splits:
            raise FeredgeError(f"{cfg.data}: no split {cfg.val_split!r} for validation")
        return train, ds.splits[cfg.val_split], ds.meta
    keep, hold = stratified_holdout(np.asarray(train.labels), cfg.val_fraction, cfg.seed)
    return train.subset(keep), train.subset(hold), ds.meta
