"""Detector input size vs recall and time: faces of 40, 60 and 120 px pasted into 720p frames, detected
with YuNet at several input sizes (the longer side). Chooses run-camera's --detect-max-side default.

    python benchmarks/detector_size.py [--frames 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pipeline import face_crops  # noqa: E402

from feredge.vision.detector import YuNetDetector  # noqa: E402


def main() -> None:
    import cv2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 480, 640, 800, 960, 1280])
    args = parser.parse_args()
    crops = face_crops()
    rng = np.random.default_rng(0)
    print("face px  max side  recall  ms/frame")
    for face_px in (40, 60, 120):
        frames = []
        for k in range(args.frames):
            frame = np.full((720, 1280, 3), 150, np.uint8)
            for i in range(5):  # five faces per frame, 1.6x context around each, never overlapping
                crop = cv2.resize(crops[(i + k) % len(crops)], (int(face_px * 1.6),) * 2, interpolation=cv2.INTER_AREA)
                step = (1280 - 80) // 5  # five slots side by side
                x, y = 40 + i * step + int(rng.integers(0, max(step - crop.shape[1], 1))), 50 + int(rng.integers(0, 400))
                frame[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
            frames.append(frame)
        for side in args.sizes:
            detector, found, seconds = YuNetDetector(max_side=side), 0, 0.0
            for frame in frames:
                t0 = time.perf_counter()
                boxes, _ = detector.detect(frame)
                seconds += time.perf_counter() - t0
                found += min(len(boxes), 5)
            print(f"{face_px:7d}  {side:8d}  {found / (5 * len(frames)):6.2f}  {1e3 * seconds / len(frames):8.1f}", flush=True)


if __name__ == "__main__":
    main()
