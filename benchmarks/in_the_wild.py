"""Detector-in-the-loop accuracy: FER2013 PublicTest faces pasted into larger frames at random scale,
offset and rotation, then the full runtime path (YuNet → crop with margin [→ alignment] → model), beside
the direct number on the same faces. Chooses the crop margin and whether to align by default.

    python benchmarks/in_the_wild.py --data prepared/fer2013 [--model feredge-s RUN/best.safetensors …]
        [--holdout --split train] [--n 600] [--margins 0 0.1] [--align off] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feredge.data.face_boxes import matched_box, paste  # noqa: E402
from feredge.data.splits import stratified_holdout  # noqa: E402
from feredge.data.store import load_split  # noqa: E402
from feredge.runtime.loader import load_runner  # noqa: E402
from feredge.vision.detector import YuNetDetector, eye_angles  # noqa: E402
from feredge.vision.preprocess import preprocess_faces, preprocess_frame_cv2  # noqa: E402
from feredge.weights import resolve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--holdout", action="store_true",
                        help="use training's validation carve of --split (10 %%, stratified, seed 0) instead: "
                             "choices made on it leave PublicTest unseen")
    parser.add_argument("--model", nargs="+", default=[None], help="shipped names or model files (several: compared)")
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.15, 0.3])
    parser.add_argument("--align", choices=["both", "off", "on"], default="both")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    part = load_split(args.data, args.split)
    if args.holdout:
        part = part.subset(stratified_holdout(np.asarray(part.labels), 0.1, 0)[1])
    rng = np.random.default_rng(0)
    pick = rng.choice(len(part), min(args.n, len(part)), replace=False)
    images, labels = np.asarray(part.images)[pick], np.asarray(part.labels)[pick]
    detector = YuNetDetector()
    found = []  # per face: (frame, detected box, landmarks) or None
    for face in images[..., 0]:
        frame, truth = paste(face, rng)
        boxes, _ = detector.detect(frame)
        k = matched_box(boxes, truth)
        found.append(None if k is None else (frame, boxes[k], detector.landmarks[k]))
    detected = np.array([f is not None for f in found])
    where = f"{args.split}{' holdout' if args.holdout else ''}"
    print(f"{len(images)} {where} faces; the detector found {detected.mean():.3f} of them", flush=True)
    aligns = {"both": (False, True), "off": (False,), "on": (True,)}[args.align]
    results = []
    for model in args.model:
        runner = load_runner(resolve(model))
        spec = runner.info.input_spec
        direct = float((runner.infer_all(preprocess_faces(images, spec)).argmax(1) == labels).mean())
        rows = [{"setting": "direct (FER2013 crops)", "accuracy": direct}]
        print(f"{model or 'default'}: direct {direct:.4f}", flush=True)
        for margin in args.margins:
            for align in aligns:
                correct = []
                for (f, label) in zip(found, labels):
                    if f is None:
                        continue
                    frame, box, lm = f
                    angles = eye_angles(lm[None]) if align else None
                    x = preprocess_frame_cv2(frame, box[None], spec.size, spec.channels, spec.mean, spec.std, margin,
                                             False, angles)
                    correct.append(int(runner.infer(x).argmax(1)[0] == label))
                acc_found = float(np.mean(correct)) if correct else 0.0
                row = {"setting": f"detector, margin {margin}, {'aligned' if align else 'not aligned'}",
                       "accuracy_on_found": acc_found, "end_to_end": acc_found * float(detected.mean()),
                       "found": float(detected.mean())}
                rows.append(row)
                print(f"  margin {margin:4.2f} align {str(align):5}: accuracy on found faces {acc_found:.4f}  "
                      f"end to end {row['end_to_end']:.4f}", flush=True)
        results.append({"model": str(model), "rows": rows})
    if args.json:
        args.json.write_text(json.dumps({"split": where, "n": len(images), "results": results}, indent=2))


if __name__ == "__main__":
    main()
