"""One JSON record per detected face, the same keys from predict, run-camera and the `fer_frame` server model."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _distribution(classes: Sequence[str], p: np.ndarray) -> dict[str, float]:
    return {c: round(float(v), 4) for c, v in zip(classes, p)}


def face_records(boxes: np.ndarray, probs: np.ndarray, classes: Sequence[str], scores: np.ndarray | None = None,
                 track_ids: Sequence[int] | None = None, smoothed: np.ndarray | None = None) -> list[dict]:
    """``box`` (x, y, w, h), ``label`` and ``confidence`` (of the top class), ``probabilities`` per class;
    ``detector_score``, ``track_id`` and ``smoothed`` (tracked probabilities) where the caller has them.
    With ``smoothed`` the label and confidence are the smoothed ones — what the overlay shows."""
    records = []
    for n, (box, p) in enumerate(zip(boxes, probs)):
        shown = p if smoothed is None else smoothed[n]
        k = int(np.argmax(shown))
        record = {"box": [round(float(v), 1) for v in box], "label": classes[k],
                  "confidence": round(float(shown[k]), 4), "probabilities": _distribution(classes, p)}
        if scores is not None:
            record["detector_score"] = round(float(scores[n]), 4)
        if track_ids is not None:
            record["track_id"] = int(track_ids[n])
        if smoothed is not None:
            record["smoothed"] = _distribution(classes, smoothed[n])
        records.append(record)
    return records
