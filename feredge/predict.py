"""Images → faces → expressions: the runtime path end to end (no torch needed with ONNX/TensorRT)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.errors import FeredgeError
from feredge.evaluate import softmax
from feredge.runtime.base import load_runner

#: Context around the detector's box; FER2013 faces are loosely cropped.
FACE_MARGIN = 0.15


def default_onnx() -> Path:
    from feredge.weights import DEFAULT_ONNX

    if not DEFAULT_ONNX.is_file():
        raise FeredgeError(f"{DEFAULT_ONNX}: the default model is not installed; pass --model")
    return DEFAULT_ONNX


def _spec(meta: dict):
    from feredge.models._registry import InputSpec

    if "input_spec" not in meta or "classes" not in meta:
        raise FeredgeError("the model carries no input spec/classes metadata (export it with `feredge export`)")
    return InputSpec.from_dict(meta["input_spec"])


def face_classifier(runner, spec, mirror: bool):
    """frame, boxes → logits per face: the fused GPU pipeline when the runner works on device buffers
    (TensorRT, ONNX Runtime on CUDA), OpenCV + runner elsewhere."""
    from feredge.runtime.pipeline import merge_mirrored

    if getattr(runner, "gpu_io", False):
        from feredge.runtime.pipeline import GpuPipeline

        return GpuPipeline(runner, spec, FACE_MARGIN, mirror, max_faces=runner.max_batch // (2 if mirror else 1))
    from feredge.runtime.preprocess import preprocess_frame_cv2

    def classify(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        x = preprocess_frame_cv2(frame, boxes, spec.size, spec.channels, spec.mean, spec.std, FACE_MARGIN, mirror)
        return merge_mirrored(runner.infer_all(x), len(boxes), mirror)

    return classify


def predict_images(images: list[Path], model: Path | None = None, backend: str | None = None,
                   out: Path = Path("runs/predict"), tta: bool = False, device: str = "cpu") -> list[dict]:
    """Detect faces in each image, classify their expression, write annotated copies and results.json."""
    cv2 = require("cv2")
    from feredge.camera.detector import YuNetDetector
    from feredge.camera.overlay import draw
    runner = load_runner(model or default_onnx(), backend, device=device)
    spec, classes = _spec(runner.meta), runner.meta["classes"]
    classify = face_classifier(runner, spec, tta)
    detector = YuNetDetector()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in images:
        frame = cv2.imread(str(path))
        if frame is None:
            raise FeredgeError(f"{path}: cannot read image (expected a JPEG/PNG file)")
        t0 = time.perf_counter()
        boxes, det_scores = detector.detect(frame)
        t1 = time.perf_counter()
        faces = []
        if len(boxes):
            probs = softmax(classify(frame, boxes))
            faces = [{"box": [round(float(v), 1) for v in b], "detector_score": float(s),
                      "expression": classes[int(p.argmax())], "confidence": float(p.max()),
                      "probabilities": {c: round(float(v), 4) for c, v in zip(classes, p)}}
                     for b, s, p in zip(boxes, det_scores, probs)]
        t2 = time.perf_counter()
        annotated = draw(frame, boxes, [f["expression"] for f in faces], np.array([f["confidence"] for f in faces]))
        target = out / f"{Path(path).stem}.annotated.jpg"
        cv2.imwrite(str(target), annotated)
        results.append({"image": str(path), "annotated": str(target), "faces": faces,
                        "ms": {"detect": 1e3 * (t1 - t0), "classify": 1e3 * (t2 - t1)}})
    if hasattr(classify, "close"):
        classify.close()
    runner.close()
    (out / "results.json").write_text(json.dumps({"model": str(model or default_onnx()), "backend": runner.backend,
                                                  "results": results}, indent=2))
    return results
