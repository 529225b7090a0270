"""The pictures the README and the documentation show, made by feredge's own commands with today's defaults.

    python benchmarks/docs_images.py          # rewrites docs/images/group.annotated.{jpg,json}, run-camera.jpg

- `group.annotated.jpg`: `feredge predict` on the bundled group photo, as it writes it; `group.annotated.json`
  keeps that run's model and faces, so that `tests/test_docs.py` can tell when the default model's answers
  move away from the picture (then run this again).
- `run-camera.jpg`: one frame of `feredge run-camera --record` on a clip panned across the bundled photo
  (`benchmarks/clips.py`; no video is committed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
sys.path.insert(0, str(ROOT / "benchmarks"))
from clips import group_clip  # noqa: E402

#: The recorded frame shown: two thirds into the pan, the three faces whole, tracked and large.
FRAME, FRAMES = 60, 90


def feredge(*args: str) -> str:
    """Run a feredge command as a user would (a fresh process, today's defaults); its stdout."""
    return subprocess.run([sys.executable, "-m", "feredge.commands.cli", *args], check=True, capture_output=True,
                          text=True).stdout


def faces_record(document: dict) -> dict:
    """What the picture shows: the model file and each face's box, label and confidence."""
    return {"model": Path(document["model"]).name,
            "faces": [{k: f[k] for k in ("box", "label", "confidence")} for f in document["results"][0]["faces"]]}


def main() -> None:
    """Write the pictures atomically, so that a failed run leaves the committed ones as they were."""
    import cv2

    from feredge.artifact import atomic_write_bytes, atomic_write_text

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shown = faces_record(json.loads(feredge("predict", "--out", str(work / "predict"), "--json")))
        atomic_write_bytes(IMAGES / "group.annotated.jpg", (work / "predict" / "group.annotated.jpg").read_bytes())
        atomic_write_text(IMAGES / "group.annotated.json", json.dumps(shown, indent=2) + "\n")
        group_clip(work / "clip.avi", frames=FRAMES)
        feredge("run-camera", "--source", str(work / "clip.avi"), "--record", str(work / "camera.avi"))
        video = cv2.VideoCapture(str(work / "camera.avi"))
        video.set(cv2.CAP_PROP_POS_FRAMES, FRAME)
        ok, frame = video.read()
        video.release()
        if not ok:
            raise SystemExit(f"could not read frame {FRAME} of the recording")
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
        atomic_write_bytes(IMAGES / "run-camera.jpg", jpeg.tobytes())
    print(f"wrote {IMAGES / 'group.annotated.jpg'}, group.annotated.json and run-camera.jpg "
          f"(model {shown['model']})")


if __name__ == "__main__":
    main()
