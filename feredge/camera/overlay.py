"""Draw boxes and predicted expressions onto a frame."""

from __future__ import annotations

import numpy as np

from feredge._optional import require

#: BGR colour per canonical class, so an expression keeps its colour across frames.
COLOURS = {"angry": (40, 40, 220), "disgust": (40, 140, 40), "fear": (160, 60, 160), "happy": (40, 200, 240),
           "sad": (200, 120, 40), "surprise": (240, 160, 240), "neutral": (200, 200, 200), "contempt": (90, 90, 90)}


def draw(frame: np.ndarray, boxes: np.ndarray, labels: list[str], scores: np.ndarray) -> np.ndarray:
    cv2 = require("cv2")
    out = frame.copy()
    thickness = max(2, frame.shape[1] // 640)
    for (x, y, w, h), label, score in zip(boxes.astype(int), labels, scores):
        colour = COLOURS.get(label, (255, 255, 255))
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness)
        text = f"{label} {score:.0%}"
        scale = max(0.5, w / 200)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.rectangle(out, (x, max(y - th - 8, 0)), (x + tw + 6, max(y, th + 8)), colour, -1)
        cv2.putText(out, text, (x + 3, max(y - 5, th + 3)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness)
    return out
