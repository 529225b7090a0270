"""Seeded, reproducible splits: stratified hold-outs and subject-wise partitions."""

from __future__ import annotations

import numpy as np


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
