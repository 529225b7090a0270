"""The `fer` package's own pipeline on a video, as a command: each frame through ``FER().detect_emotions``
(its defaults: OpenCV's Haar cascade, then its TFLite classifier on each face), one JSON line at the end.
Run with the Python that has fer installed (benchmarks/camera_vs_fer.py says how); imports nothing of feredge.

    python benchmarks/fer_clip.py CLIP [--max-frames N]
"""

from __future__ import annotations

import argparse
import json
import time

T0 = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("--max-frames", type=int, default=0)
    args = parser.parse_args()
    import cv2
    from fer.fer import FER

    detector = FER()
    cap = cv2.VideoCapture(args.clip)
    frames, faces, first = 0, 0, None
    while not args.max_frames or frames < args.max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        faces += len(detector.detect_emotions(frame))
        frames += 1
        if first is None:
            first = time.perf_counter()
    cap.release()
    end = time.perf_counter()
    print(json.dumps({"frames": frames, "faces": faces, "seconds_to_first_frame_done": (first or end) - T0,
                      "seconds_after_first_frame": end - (first or end)}))


if __name__ == "__main__":
    main()
