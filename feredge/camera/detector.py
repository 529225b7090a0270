"""Face detection with YuNet (shipped, MIT) through OpenCV's FaceDetectorYN."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.errors import FeredgeError

YUNET = Path(__file__).resolve().parent.parent / "weights" / "face_detection_yunet_2023mar.onnx"


#: The detector sees frames scaled so their longer side is at most this. YuNet's cost grows with the
#: pixel count (~68 ms for 1280×853 at full size, ~12 ms at 480 px wide on 2 cores) while its anchors
#: find faces down to ~10 px, so a 40 px face in a 720p frame is still ~20 px here; at full resolution
#: a multi-megapixel photo's faces are larger than YuNet's largest anchors and are lost.
DETECT_MAX_SIDE = 640


class YuNetDetector:
    """Boxes (x, y, w, h), scores and 5 landmarks per face, in frame pixels."""

    def __init__(self, model: Path = YUNET, score_threshold: float = 0.7, nms_threshold: float = 0.3,
                 max_side: int = DETECT_MAX_SIDE):
        cv2 = require("cv2")
        if not Path(model).is_file():
            raise FeredgeError(f"{model}: face detector model not found")
        self.cv2, self.max_side = cv2, max_side
        self.detector = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score_threshold, nms_threshold)
        self.landmarks = np.zeros((0, 5, 2), np.float32)  # of the last detect(): eyes, nose, mouth corners

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (N, 4) float32, scores (N,)) for a BGR uint8 frame; landmarks of the same faces in
        ``self.landmarks``."""
        h, w = frame.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = frame if scale == 1.0 else self.cv2.resize(frame, (round(w * scale), round(h * scale)),
                                                           interpolation=self.cv2.INTER_AREA)
        self.detector.setInputSize((small.shape[1], small.shape[0]))
        _, faces = self.detector.detect(small)
        if faces is None:
            self.landmarks = np.zeros((0, 5, 2), np.float32)
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        self.landmarks = (faces[:, 4:14].reshape(-1, 5, 2) / scale).astype(np.float32)
        return (faces[:, :4] / scale).astype(np.float32), faces[:, 14].astype(np.float32)
