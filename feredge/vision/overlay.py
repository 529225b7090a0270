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


def draw_faces(frame: np.ndarray, boxes: np.ndarray, track_ids: list[int], labels: list[str],
               confidences: np.ndarray) -> np.ndarray:
    """In place: box, track id, label and a confidence bar under each face (run-camera's overlay)."""
    cv2 = require("cv2")
    thickness = max(1, frame.shape[1] // 640)
    for (x, y, w, h), tid, label, conf in zip(np.asarray(boxes).astype(int), track_ids, labels, confidences):
        colour = COLOURS.get(label, (255, 255, 255))
        cv2.rectangle(frame, (x, y), (x + w, y + h), colour, thickness + 1)
        cv2.putText(frame, f"#{tid} {label}", (x, max(y - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.45, w / 260), colour, thickness + 1)
        bar_y = min(y + h + 4, frame.shape[0] - 8)
        cv2.rectangle(frame, (x, bar_y), (x + w, bar_y + 6), (60, 60, 60), -1)
        cv2.rectangle(frame, (x, bar_y), (x + int(w * float(conf)), bar_y + 6), colour, -1)
    return frame


def draw_hud(frame: np.ndarray, fps: float, stages_ms: dict[str, float]) -> np.ndarray:
    """In place: FPS and per-stage milliseconds in the top-left corner, white on a dark box (readable on any
    background), sized with the frame (the same share of its height from 480p to 4K)."""
    cv2 = require("cv2")
    lines = [f"{fps:5.1f} FPS"] + [f"{name} {ms:5.1f} ms" for name, ms in stages_ms.items()]
    scale = max(0.4, frame.shape[0] / 1000)
    thickness = max(1, round(scale * 1.5))
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(text, font, scale, thickness) for text in lines]
    line_h = max(h + base for (_, h), base in sizes) + round(6 * scale)
    pad = round(6 * scale)
    width = max(w for (w, _), _ in sizes) + 2 * pad
    x1, y1 = min(frame.shape[1], pad + width), min(frame.shape[0], pad + line_h * len(lines) + pad)
    region = frame[pad:y1, pad:x1]
    region[:] = (region * 0.25).astype(np.uint8)  # darken, so the frame still shows through faintly
    for i, (text, ((_, h), _)) in enumerate(zip(lines, sizes)):
        y = 2 * pad + h + i * line_h
        cv2.putText(frame, text, (2 * pad, y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return frame
