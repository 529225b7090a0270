"""Images → faces → expressions: the runtime path end to end (no torch needed with ONNX/TensorRT)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.errors import FeredgeError
from feredge.artifact import InputSpec, atomic_write_bytes, atomic_write_text, check_folder
from feredge.metrics import softmax
from feredge.runtime.base import Runner
from feredge.runtime.loader import load_runner
from feredge.vision.crop import FACE_MARGIN
from feredge.vision.images import read_image
from feredge.runtime.records import face_records

DEFAULT_OUT = Path("runs/predict")


def output_folder(out: Path | None, overwrite: bool) -> Path:
    """Never replace earlier results silently: the default folder gets a free -2, -3 … suffix, an explicit
    one needs ``overwrite``."""
    if out is not None:
        check_folder(out)
        if (Path(out) / "results.json").exists() and not overwrite:
            raise FeredgeError(f"{out}: holds earlier results (results.json); pass --overwrite or choose another --out")
        return Path(out)
    candidate, n = DEFAULT_OUT, 1
    while (candidate / "results.json").exists() and not overwrite:
        n += 1
        candidate = DEFAULT_OUT.with_name(f"{DEFAULT_OUT.name}-{n}")
    return candidate


def face_classifier(runner: Runner, spec: InputSpec, mirror: bool):
    """frame, boxes → logits per face: the fused GPU pipeline when the runner works on device buffers
    (TensorRT, ONNX Runtime on CUDA), OpenCV + runner elsewhere."""
    if runner.gpu_io:
        from feredge.runtime.pipeline import GpuPipeline

        return GpuPipeline(runner, spec, FACE_MARGIN, mirror, max_faces=runner.max_batch // (2 if mirror else 1))
    return CpuFaceClassifier(runner, spec, mirror)


class CpuFaceClassifier:
    """OpenCV crops of every face in one batch → the runner (any backend, host buffers)."""

    def __init__(self, runner: Runner, spec: InputSpec, mirror: bool):
        self.runner, self.spec, self.mirror = runner, spec, mirror

    def crops(self, frame: np.ndarray, boxes: np.ndarray, angles: np.ndarray | None = None) -> np.ndarray:
        """The model's input batch for every face; ``angles`` (radians) rotate each crop so the eyes are level."""
        from feredge.runtime.preprocess import preprocess_frame_cv2

        s = self.spec
        return preprocess_frame_cv2(frame, boxes, s.size, s.channels, s.mean, s.std, FACE_MARGIN, self.mirror, angles)

    def __call__(self, frame: np.ndarray, boxes: np.ndarray, angles: np.ndarray | None = None) -> np.ndarray:
        """Logits per face (mirrored copies averaged when flip TTA is on)."""
        from feredge.runtime.pipeline import merge_mirrored

        return merge_mirrored(self.runner.infer_all(self.crops(frame, boxes, angles)), len(boxes), self.mirror)

    def close(self) -> None:
        """Nothing to free: the runner belongs to the caller."""


def output_names(images: list[Path]) -> list[str]:
    """One annotated-file name per input; same-named images from different folders get -2, -3 …"""
    names, seen = [], {}
    for path in images:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.annotated.jpg" if seen[stem] == 1 else f"{stem}-{seen[stem]}.annotated.jpg")
    return names


def predict_images(images: list[Path], model: Path | None = None, backend: str | None = None,
                   out: Path = DEFAULT_OUT, tta: bool = False, device: str = "cpu") -> list[dict]:
    """Detect faces in each image, classify their expression, write annotated copies and results.json."""
    cv2 = require("cv2")
    from feredge.vision.detector import YuNetDetector
    from feredge.vision.overlay import draw

    frames = [read_image(Path(p)) for p in images]  # every input checked before any output is written
    from feredge.weights import resolve

    model = resolve(model)
    runner = load_runner(model, backend, device=device)
    spec, classes = runner.info.input_spec, list(runner.info.classes)
    classify = face_classifier(runner, spec, tta)
    detector = YuNetDetector()
    out = Path(out)
    results = []
    for path, frame, name in zip(images, frames, output_names(images)):
        t0 = time.perf_counter()
        boxes, det_scores = detector.detect(frame)
        t1 = time.perf_counter()
        faces = []
        if len(boxes):
            probs = softmax(classify(frame, boxes))
            faces = face_records(boxes, probs, classes, det_scores)
        t2 = time.perf_counter()
        annotated = draw(frame, boxes, [f["label"] for f in faces], np.array([f["confidence"] for f in faces]))
        ok, jpeg = cv2.imencode(".jpg", annotated)
        target = atomic_write_bytes(out / name, jpeg.tobytes())
        results.append({"image": str(path), "annotated": str(target), "faces": faces,
                        "ms": {"detect": 1e3 * (t1 - t0), "classify": 1e3 * (t2 - t1)}})
    classify.close()
    runner.close()
    atomic_write_text(out / "results.json", json.dumps({"model": str(model), "backend": runner.backend,
                                                        "results": results}, indent=2))
    return results
