"""run-camera speed: per-stage milliseconds and end-to-end FPS at 720p and 1080p with 1, 3 and 5 faces.

Each configuration is a short MJPG clip made from the bundled group photo's faces pasted on a plain
background, played through `feredge run-camera`'s own loop (capture thread, decode, detector, batch
pre-processing, model, overlay drawn as for recording), so the FPS is what a user gets from a file.

    python benchmarks/pipeline.py [--model feredge-s] [--device cpu] [--frames 90] [--detect-every 1 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feredge.commands.camera.app import CameraOptions, run_camera  # noqa: E402
from feredge.vision.detector import YuNetDetector  # noqa: E402

GROUP = ROOT / "feredge" / "media" / "group.jpg"


def face_crops() -> list[np.ndarray]:
    import cv2

    image = cv2.imread(str(GROUP))
    boxes, _ = YuNetDetector().detect(image)
    crops = []
    for x, y, w, h in boxes.astype(int):  # square crops centred on each face: resizing keeps its shape
        side = int(1.6 * max(w, h))
        x0, y0 = max(x + w // 2 - side // 2, 0), max(y + h // 2 - side // 2, 0)
        crops.append(image[y0:y0 + side, x0:x0 + side])
    return crops


def make_clip(path: Path, width: int, height: int, faces: int, frames: int, crops: list[np.ndarray]) -> Path:
    """Faces of ~1/6 of the frame height on a grid, drifting a few pixels per frame (so tracking works)."""
    import cv2

    side = height // 6
    cols = min(faces, 5)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (width, height))
    for f in range(frames):
        frame = np.full((height, width, 3), 150, np.uint8)
        for i in range(faces):
            crop = cv2.resize(crops[i % len(crops)], (int(side * 1.6), int(side * 1.6)))
            x = int((i % cols + 0.5) * width / cols - crop.shape[1] / 2) + (f % 20)
            y = int(height / 2 - crop.shape[0] / 2 + (i // cols) * side * 2)
            frame[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
        writer.write(frame)
    writer.release()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="shipped model name or file (default: the default model)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--detect-every", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--detect-max-side", type=int, default=640)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    crops = face_crops()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in ((1280, 720), (1920, 1080)):
            for faces in (1, 3, 5):
                clip = make_clip(Path(tmp) / f"{height}p-{faces}.avi", width, height, faces, args.frames, crops)
                for every in args.detect_every:
                    opts = CameraOptions(source=str(clip), model=args.model, device=args.device, detect_every=every,
                                         detect_max_side=args.detect_max_side, record=Path(tmp) / "out.avi",
                                         overwrite=True)
                    t0 = time.perf_counter()
                    summary = run_camera(opts, log=lambda m: None)
                    wall = time.perf_counter() - t0
                    row = {"resolution": f"{height}p", "faces": faces, "detect_every": every,
                           "frames": summary["frames"], "faces_found_per_frame": summary["faces"] / summary["frames"],
                           "fps": summary["frames"] / wall, **{f"{k}_ms": v for k, v in summary["mean_ms"].items()}}
                    rows.append(row)
                    print(f"{row['resolution']:>6} faces {faces} detect every {every}: {row['fps']:6.1f} FPS "
                          f"(found {row['faces_found_per_frame']:.1f}/frame)  "
                          + "  ".join(f"{k} {v:.2f}" for k, v in summary["mean_ms"].items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "device": args.device, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
