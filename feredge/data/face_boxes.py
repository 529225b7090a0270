"""Where the runtime's face detector puts its box on each training face, so training can see detector crops.

FER2013 faces are centred, registered crops; at run time the model sees YuNet's box instead — tighter,
shifted, at another scale. Each face is pasted into a frame (random size and place, like
``benchmarks/in_the_wild.py``), YuNet runs on it, and the matched box is mapped back into the face's own
pixels. Training then cuts the runtime's square crop (margin included) out of the face with probability
``detector_crops``. Stored as ``<split>/face_boxes.npy``: float32 (N, 4) x, y, w, h, NaN where YuNet
found nothing.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

from feredge.artifact import atomic_write_bytes
from feredge.errors import DataError

FILE = "face_boxes.npy"


def paste(face: np.ndarray, rng: np.random.Generator, width: int = 640, height: int = 480,
          max_angle: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """A BGR frame with ``face`` (gray, square) scaled to 80–220 px, rotated up to ±``max_angle``°,
    somewhere inside on a noisy background; and the face's box (x, y, side, side) before rotation."""
    import cv2

    side = int(rng.integers(80, 221))
    angle = float(rng.uniform(-max_angle, max_angle)) if max_angle else 0.0
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    frame = np.full((height, width), int(np.median(face)), np.uint8)
    frame = cv2.GaussianBlur(frame + rng.integers(0, 30, frame.shape, dtype=np.uint8), (0, 0), 3)
    x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
    frame[y:y + side, x:x + side] = big
    if angle:
        rot = cv2.getRotationMatrix2D((x + side / 2, y + side / 2), angle, 1.0)
        frame = cv2.warpAffine(frame, rot, (width, height), borderMode=cv2.BORDER_REFLECT)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), np.array([x, y, side, side], np.float32)


def matched_box(boxes: np.ndarray, truth: np.ndarray, min_iou: float = 0.3) -> int | None:
    """Index of the detected box that overlaps the pasted face most (IoU ≥ ``min_iou``), else None."""
    from feredge.vision.tracker import iou

    if not len(boxes):
        return None
    overlap = iou(boxes, truth[None])[:, 0]
    k = int(overlap.argmax())
    return k if overlap[k] >= min_iou else None


def detect_face_boxes(images: np.ndarray, seed: int = 0, progress: bool = True) -> np.ndarray:
    """YuNet's box on each face (N, H, W, C uint8) in that face's pixels; NaN rows where it found none."""
    from tqdm import tqdm

    from feredge.vision.detector import YuNetDetector

    rng = np.random.default_rng(seed)
    detector = YuNetDetector()
    out = np.full((len(images), 4), np.nan, np.float32)
    for n in tqdm(range(len(images)), desc="detecting", unit="face", disable=not progress, file=sys.stderr):
        face = np.asarray(images[n])
        face = face[..., 0] if face.shape[-1] == 1 else face.mean(-1).astype(np.uint8)
        frame, truth = paste(face, rng, max_angle=0.0)
        boxes = detector.detect(frame)[0]
        k = matched_box(boxes, truth)
        if k is not None:
            box, scale = boxes[k], face.shape[1] / truth[2]
            out[n] = [(box[0] - truth[0]) * scale, (box[1] - truth[1]) * scale, box[2] * scale, box[3] * scale]
    return out


def add_face_boxes(root: Path, split: str = "train", seed: int = 0) -> tuple[Path, float]:
    """Write ``root/split/face_boxes.npy`` (atomically); returns its path and the share of faces found."""
    from feredge.data.store import load_split

    part = load_split(root, split)
    boxes = detect_face_boxes(part.images, seed)
    path = Path(root) / split / FILE
    buf = io.BytesIO()
    np.save(buf, boxes, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    return path, float(np.isfinite(boxes[:, 0]).mean())


def crop_views(boxes: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Per face, the affine (scale, x offset, y offset) in grid_sample's normalised coordinates that maps
    the output onto the runtime's square crop of ``boxes`` (x, y, w, h in pixels of a ``size`` image)."""
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{FILE}: expected an (N, 4) array of x, y, w, h boxes, got shape {boxes.shape}")
    side = np.maximum(boxes[:, 2], boxes[:, 3]) * (1 + margin)
    x0 = boxes[:, 0] + boxes[:, 2] / 2 - side / 2
    y0 = boxes[:, 1] + boxes[:, 3] / 2 - side / 2
    return np.stack([side / size, (2 * x0 + side) / size - 1, (2 * y0 + side) / size - 1], 1).astype(np.float32)
