"""Test clips made at run time (no video is committed), with what is known to be in them.

- `group_clip`: 1280×720 MJPG panning and zooming across the bundled group photo (three faces, MIT), with each
  frame's true face boxes (the photo's YuNet boxes carried through the crop and resize).
- `photo_clip`: 1280×720 MJPG of labelled photos, three side by side per shot, each shot held for some frames
  while it drifts a few pixels a frame; each frame's tiles and their labels. Written to a temporary folder and
  deleted with it: the photos must never be committed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GROUP = ROOT / "feredge" / "media" / "group.jpg"
WIDTH, HEIGHT = 1280, 720


def open_writer(path: Path, fps: float):
    """An MJPG writer, or an error: OpenCV's writer fails silently (no folder, no permission, no encoder)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise SystemExit(f"{path}: OpenCV cannot write an MJPG video there (does the folder exist and is it "
                         "writable?)")
    return writer


def group_clip(path: Path, frames: int = 300, fps: float = 30.0) -> list[np.ndarray]:
    """Write the clip; return each frame's true boxes (3, 4) as x, y, w, h in clip pixels. The view narrows
    from the whole photo's width to 1520 px and back while it pans (up to ~5 px a frame at 720p)."""
    import cv2

    from feredge.vision.detector import YuNetDetector

    image = cv2.imread(str(GROUP))
    ih, iw = image.shape[:2]
    faces = YuNetDetector(max_side=max(ih, iw)).detect(image)[0].astype(np.float64)
    left, right = faces[:, 0].min(), (faces[:, 0] + faces[:, 2]).max()
    top, bottom = faces[:, 1].min(), (faces[:, 1] + faces[:, 3]).max()
    writer = open_writer(path, fps)
    truth = []
    for f in range(frames):
        t = f / max(frames - 1, 1)
        cw = int(iw - 400 * (0.5 - 0.5 * np.cos(2 * np.pi * t)))
        ch = cw * HEIGHT // WIDTH
        lo, hi = max(0.0, right - cw), min(left, iw - cw)  # every face stays whole in view
        x0 = int(lo + (hi - lo) * (0.5 - 0.5 * np.cos(4 * np.pi * t)))
        ylo, yhi = max(0.0, bottom - ch), min(top, ih - ch)
        y0 = int(ylo + (yhi - ylo) * (0.5 - 0.5 * np.cos(6 * np.pi * t)))
        writer.write(cv2.resize(image[y0:y0 + ch, x0:x0 + cw], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA))
        s = WIDTH / cw
        truth.append(np.stack([(faces[:, 0] - x0) * s, (faces[:, 1] - y0) * s, faces[:, 2] * s, faces[:, 3] * s], 1))
    writer.release()
    return truth


def photo_clip(path: Path, photos: list[tuple[Path, str]], frames_per_shot: int = 15,
               fps: float = 30.0) -> list[list[tuple[np.ndarray, str]]]:
    """Write the clip, three photos a shot scaled to 400 px and drifting 2 px a frame; return each frame's
    tiles as (x, y, w, h, label)."""
    import cv2

    side, gap = 400, (WIDTH - 3 * 400) // 4
    writer = open_writer(path, fps)
    truth = []
    for shot in range(len(photos) // 3):
        tiles = [cv2.resize(cv2.imread(str(p)), (side, side), interpolation=cv2.INTER_CUBIC)
                 for p, _ in photos[3 * shot:3 * shot + 3]]
        labels = [label for _, label in photos[3 * shot:3 * shot + 3]]
        for f in range(frames_per_shot):
            frame = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
            dx, dy = 2 * f - frames_per_shot, f - frames_per_shot // 2
            rects = []
            for i, tile in enumerate(tiles):
                x, y = gap + i * (side + gap) + dx, (HEIGHT - side) // 2 + dy
                frame[y:y + side, x:x + side] = tile
                rects.append((np.array([x, y, side, side], np.float64), labels[i]))
            writer.write(frame)
            truth.append(rects)
    writer.release()
    return truth


def match(boxes: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> tuple[int, int]:
    """(true faces found, detections that match none) for one frame, by IoU ≥ ``threshold``."""
    from feredge.vision.tracker import iou

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return 0, 0
    overlap = iou(np.asarray(truth, np.float64).reshape(-1, 4), boxes)
    return int((overlap.max(1) >= threshold).sum()), int((overlap.max(0) < threshold).sum())


def in_tile(box, rects: list[tuple[np.ndarray, str]]) -> int | None:
    """The index of the tile that holds the box's centre, or None."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    for k, ((x, y, w, h), _) in enumerate(rects):
        if x <= cx < x + w and y <= cy < y + h:
            return k
    return None


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2 or Path(sys.argv[1]).suffix.lower() != ".avi":
        raise SystemExit("usage: python benchmarks/clips.py OUT.avi  (a 10 s 720p MJPG clip panned across the "
                         "bundled group photo)")
    if Path(sys.argv[1]).exists():
        raise SystemExit(f"{sys.argv[1]}: already exists; choose another name or remove it")
    sys.path.insert(0, str(ROOT))
    group_clip(Path(sys.argv[1]))
    print(f"wrote {sys.argv[1]}: 300 frames, 1280x720, three faces")
