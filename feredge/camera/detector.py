"""Face detection with YuNet (shipped, MIT) through OpenCV's FaceDetectorYN."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.errors import FeredgeError

YUNET = Path(__file__).resolve().parent.parent / "weights" / "face_detection_yunet_2023mar.onnx"


class YuNetDetector:
    """Boxes (x, y, w, h), scores and 5 landmarks per face, in frame pixels."""

    def __init__(self, model: Path = YUNET, score_threshold: float = 0.7, nms_threshold: float = 0.3):
        cv2 = require("cv2")
        if not Path(model).is_file():
            raise FeredgeError(f"{model}: face detector model not found")
        self.detector = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score_threshold, nms_threshold)

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (N, 4) float32, scores (N,)) for a BGR uint8 frame."""
        h, w = frame.shape[:2]
        self.detector.setInputSize((w, h))
        _, faces = self.detector.detect(frame)
        if faces is None:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        return faces[:, :4].astype(np.float32), faces[:, 14].astype(np.float32)
