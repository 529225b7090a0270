"""Face detection with YuNet (shipped, MIT) through OpenCV's FaceDetectorYN."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.config import DETECT_MAX_SIDE, DETECTORS, check_choice
from feredge.errors import FeredgeError

YUNET = Path(__file__).resolve().parent.parent / "weights" / "face_detection_yunet_2023mar.onnx"


class YuNetDetector:
    """Boxes (x, y, w, h), scores and 5 landmarks per face, in frame pixels."""

    def __init__(self, model: Path = YUNET, score_threshold: float = 0.7, nms_threshold: float = 0.3,
                 max_side: int = DETECT_MAX_SIDE):
        cv2 = require("cv2")
        if not Path(model).is_file():
            raise FeredgeError(f"{model}: face detector model not found")
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # DNN warns about targets on every run
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


class HaarDetector:
    """OpenCV's frontal-face Haar cascade: the fallback that needs no model file beyond OpenCV itself.
    It gives no landmarks (no alignment) and no real score (1.0 for every face)."""

    def __init__(self, max_side: int = DETECT_MAX_SIDE):
        cv2 = require("cv2")
        if not hasattr(cv2, "CascadeClassifier"):
            raise FeredgeError(f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 removed them from its "
                               "wheels); use --detector yunet, or install opencv-python-headless<5")
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise FeredgeError(f"{path}: OpenCV's Haar cascade could not be loaded; use --detector yunet")
        self.cv2, self.max_side = cv2, max_side
        self.landmarks = np.zeros((0, 5, 2), np.float32)

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        gray = self.cv2.cvtColor(frame, self.cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            gray = self.cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=self.cv2.INTER_AREA)
        faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
        boxes = (np.asarray(faces, np.float32).reshape(-1, 4) / scale).astype(np.float32)
        self.landmarks = np.zeros((len(boxes), 5, 2), np.float32)
        return boxes, np.ones(len(boxes), np.float32)


def eye_angles(landmarks: np.ndarray) -> np.ndarray:
    """Angle (radians) of the line through the eyes of each face, from YuNet's 5 landmarks (eyes first)."""
    lm = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    left = np.where(lm[:, 0:1, 0] <= lm[:, 1:2, 0], lm[:, 0], lm[:, 1])  # the eye with the smaller x first
    right = np.where(lm[:, 0:1, 0] <= lm[:, 1:2, 0], lm[:, 1], lm[:, 0])
    return np.arctan2(right[:, 1] - left[:, 1], right[:, 0] - left[:, 0])


def make_detector(name: str, max_side: int = DETECT_MAX_SIDE):
    check_choice("detector", name, DETECTORS)
    if name == "yunet":
        return YuNetDetector(max_side=max_side)
    if name == "haar":
        return HaarDetector(max_side=max_side)
    raise FeredgeError(f"detector {name!r}: expected yunet or haar")
