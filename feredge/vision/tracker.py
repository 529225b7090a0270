"""Face tracks across frames: stable ids by IoU matching, smoothed probabilities, and an end after K
frames unseen. Greedy matching in order of IoU is optimal enough for the few faces of a camera frame and
needs no SciPy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feredge.config import SMOOTH, TRACK_IOU, TRACK_MAX_UNSEEN


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) boxes in (x, y, w, h)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    w = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def _inside(box: np.ndarray, size: tuple[int, int]) -> float:
    """The share of an (x, y, w, h) box inside a (height, width) frame."""
    h, w = size
    iw = min(box[0] + box[2], w) - max(box[0], 0)
    ih = min(box[1] + box[3], h) - max(box[1], 0)
    return max(iw, 0) * max(ih, 0) / (box[2] * box[3])


@dataclass
class Track:
    id: int
    box: np.ndarray
    smoothed: np.ndarray | None = None
    unseen: int = 0
    velocity: np.ndarray | None = None  # box change per frame between its last two detections


class Tracker:
    """``update(boxes)`` → the track id of each box; ``smooth(ids, probs)`` → exponentially smoothed probs.

    ``alpha`` is the weight of the newest frame (1 = no smoothing); a track unseen for ``max_unseen``
    consecutive updates ends, and a face that returns later gets a new id.
    """

    def __init__(self, iou_threshold: float = TRACK_IOU, max_unseen: int = TRACK_MAX_UNSEEN, alpha: float = SMOOTH):
        if not 0 < alpha <= 1:
            raise ValueError(f"smoothing alpha {alpha}: expected 0 < alpha ≤ 1")
        self.iou_threshold, self.max_unseen, self.alpha = iou_threshold, max_unseen, alpha
        self.tracks: dict[int, Track] = {}
        self._next = 1

    def update(self, boxes: np.ndarray, frames: int = 1) -> list[int]:
        """Match a detection's boxes to the tracks; ``frames`` since the previous detection give each matched
        track its velocity (what `predict` moves it by between detections)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = list(self.tracks)
        overlap = iou(boxes, np.array([self.tracks[i].box for i in ids]).reshape(-1, 4))
        assigned: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for flat in np.argsort(-overlap, axis=None):
            b, t = divmod(int(flat), max(len(ids), 1))
            if overlap.size == 0 or overlap[b, t] < self.iou_threshold:
                break
            if assigned[b] is None and t not in used:
                assigned[b] = ids[t]
                used.add(t)
        ids_out: list[int] = []
        for b, found in enumerate(assigned):
            track_id = found if found is not None else self._next
            if found is None:
                self._next += 1
                self.tracks[track_id] = Track(track_id, boxes[b])
            track = self.tracks[track_id]
            track.velocity = None if found is None or track.unseen else (boxes[b] - track.box) / max(frames, 1)
            track.box, track.unseen = boxes[b], 0
            ids_out.append(int(track_id))
        seen = set(ids_out)
        for track_id in list(self.tracks):
            if track_id not in seen:
                self.tracks[track_id].unseen += 1
                if self.tracks[track_id].unseen > self.max_unseen:
                    del self.tracks[track_id]
        return ids_out

    def predict(self, ids: list[int], frames: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """The tracks' boxes ``frames`` after their last detection, moved at their last velocity: what a stream
        classifies between detections. A new track stays where it was found, and so does a box that would
        shrink below half its size or leave the (height, width) ``size`` by more than half."""
        out = np.zeros((len(ids), 4), np.float32)
        for k, track_id in enumerate(ids):
            track = self.tracks[track_id]
            box = track.box if track.velocity is None else track.box + frames * track.velocity
            if (box[2:] < track.box[2:] / 2).any() or size is not None and _inside(box, size) < 0.5:
                box = track.box
            out[k] = box
        return out

    def smooth(self, ids: list[int], probs: np.ndarray) -> np.ndarray:
        out = np.empty_like(probs)
        for k, (track_id, p) in enumerate(zip(ids, probs)):
            track = self.tracks[track_id]
            track.smoothed = p.copy() if track.smoothed is None else self.alpha * p + (1 - self.alpha) * track.smoothed
            out[k] = track.smoothed
        return out
