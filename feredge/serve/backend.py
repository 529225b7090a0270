"""What the served models compute, kept out of Triton's model.py so it is importable and tested on its own.

``FerModel``   batches of pre-processed faces (N, C, H, W) float32 → probabilities (N, classes).
``FrameModel`` one encoded image (JPEG/PNG bytes) → JSON faces (box, label, probabilities), through the
               same detector, crop and pre-processing as `feredge predict`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from feredge.errors import FeredgeError
from feredge.metrics import softmax
from feredge.runtime.records import face_records


class FerModel:
    def __init__(self, artifact: Path, threads: int = 1):
        from feredge.runtime.loader import load_runner

        kwargs = {"threads": threads} if Path(artifact).suffix == ".onnx" else {}
        self.runner = load_runner(Path(artifact), **kwargs)
        self.info = self.runner.info

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        spec = self.info.input_spec
        if batch.ndim != 4 or batch.shape[1:] != (spec.channels, spec.size, spec.size):
            raise FeredgeError(f"input has shape {list(batch.shape)}, expected [N, {spec.channels}, {spec.size}, {spec.size}]")
        return softmax(self.runner.infer_all(np.ascontiguousarray(batch, np.float32))).astype(np.float32)


class FrameModel:
    def __init__(self, artifact: Path, threads: int = 1):
        from feredge.vision.detector import YuNetDetector
        from feredge.predict import CpuFaceClassifier

        self.fer = FerModel(artifact, threads)
        self.detector = YuNetDetector()
        self.classify = CpuFaceClassifier(self.fer.runner, self.fer.info.input_spec, mirror=False)

    def __call__(self, encoded: bytes) -> str:
        import cv2

        frame = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            raise FeredgeError("image: cannot decode the bytes (expected a JPEG or PNG file's contents)")
        boxes, scores = self.detector.detect(frame)
        classes = list(self.fer.info.classes)
        probs = softmax(self.classify(frame, boxes)) if len(boxes) else np.zeros((0, len(classes)))
        return json.dumps({"faces": face_records(boxes, probs, classes, scores)})
