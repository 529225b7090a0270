"""What the served models compute, kept out of Triton's model.py so it is importable and tested on its own.

``FerModel``   batches of pre-processed faces (N, C, H, W) float32 → probabilities (N, classes).
``FrameModel`` one encoded image (JPEG/PNG bytes) → JSON faces (box, label, probabilities), through the
               same detector, crop and pre-processing as `feredge predict`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from feredge.config import DEVICE
from feredge.errors import FeredgeError


class FerModel:
    """Pre-processed faces → probabilities through the one `Classifier` (its softmax, no TTA: a client that
    wants flip TTA sends the mirrored faces too, and its own Classifier folds them)."""

    def __init__(self, artifact: Path, threads: int = 1, device: str = DEVICE):
        from feredge.runtime.classifier import Classifier

        self.classifier = Classifier(Path(artifact), device=device,
                                     threads=threads if Path(artifact).suffix == ".onnx" else 0)
        self.info = self.classifier.info

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        spec = self.info.input_spec
        if batch.ndim != 4 or batch.shape[1:] != (spec.channels, spec.size, spec.size):
            raise FeredgeError(f"input has shape {list(batch.shape)}, expected "
                               f"[N, {spec.channels}, {spec.size}, {spec.size}]")
        return self.classifier.probabilities_of(np.ascontiguousarray(batch, np.float32), len(batch))


class FrameModel:
    def __init__(self, artifact: Path, threads: int = 1, device: str = DEVICE):
        from feredge.recognizer import Recognizer

        self.recognizer = Recognizer(artifact, device=device, threads=threads)

    def __call__(self, encoded: bytes) -> str:
        from feredge.vision.images import decode_image

        return json.dumps({"faces": [f.to_dict() for f in self.recognizer(decode_image(encoded))]})
