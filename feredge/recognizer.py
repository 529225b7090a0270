"""`Recognizer`: the one path from a frame to faces to expressions. Every command (predict, run-camera,
serve's `fer_frame`, explain, bench's end-to-end measure) goes through it, so there is one frame path: the
detector finds faces, the `Classifier` says what they show; the fused GPU pipeline is a branch inside it.
No torch unless a torch checkpoint is asked for."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from feredge.artifact import Artifact
from feredge.config import (
    ALIGN,
    COLOR,
    COLORS,
    DETECT_MAX_SIDE,
    DETECTOR,
    DETECTORS,
    FACE_MARGIN,
    MAX_FACES,
    PRECISION,
    THREADS,
    TTA,
    TTA_MODES,
    check_choice,
    check_ranges,
)
from feredge.errors import FeredgeError
from feredge.runtime.classifier import Classifier

#: A caller's box must lie at least this share inside the frame: a crop of mostly padding would still get
#: a confident label. (The detector's own boxes at a frame's edge are kept as found.)
MIN_INSIDE = 0.5


def _round(p: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    return {c: round(float(v), 4) for c, v in zip(classes, p)}


@dataclass
class Face:
    """One face in a frame: where it is, what the detector said, and what the model said about it.

    ``probs`` are the model's probabilities for this frame alone; in a stream, ``smoothed`` are the
    track's exponentially smoothed ones and ``track_id`` the track's stable id."""

    box: tuple[float, float, float, float]  # x, y, w, h in frame pixels
    classes: tuple[str, ...]
    probs: np.ndarray  # (classes,) float32
    score: float | None = None  # detector score; None when the caller gave the boxes
    landmarks: np.ndarray | None = None  # (5, 2): eyes, nose tip, mouth corners (YuNet)
    track_id: int | None = None
    smoothed: np.ndarray | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.classes[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))

    @property
    def probabilities(self) -> dict[str, float]:
        return {c: float(v) for c, v in zip(self.classes, self.probs)}

    @property
    def smoothed_label(self) -> str | None:
        return None if self.smoothed is None else self.classes[int(np.argmax(self.smoothed))]

    @property
    def smoothed_confidence(self) -> float | None:
        """The track's smoothed probability of ``smoothed_label`` (what the overlay's bar shows)."""
        return None if self.smoothed is None else float(np.max(self.smoothed))

    def to_dict(self) -> dict:
        """The JSON record `feredge predict` writes per face (run-camera adds the track's fields, each
        smoothed value under a ``smoothed_`` name so it cannot be mistaken for this frame's)."""
        record: dict = {"box": [round(float(v), 1) for v in self.box], "label": self.label,
                        "confidence": round(self.confidence, 4), "probabilities": _round(self.probs, self.classes)}
        if self.score is not None:
            record["detector_score"] = round(float(self.score), 4)
        if self.track_id is not None:
            record["track_id"] = int(self.track_id)
        if self.smoothed is not None:
            k = int(np.argmax(self.smoothed))
            record.update(smoothed_label=self.classes[k], smoothed_confidence=round(float(self.smoothed[k]), 4),
                          smoothed_probabilities=_round(self.smoothed, self.classes))
        return record


def as_box(row: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in row)
    return x, y, w, h


class Recognizer:
    """frame → faces → expressions.

    ``Recognizer()`` loads the shipped default model through ONNX Runtime; ``model`` takes a shipped
    model's name or a .onnx / .engine / .safetensors file. ``rec(frame)`` detects and classifies every
    face of a frame — BGR uint8 (H, W, 3) as OpenCV reads it, RGB with ``color="rgb"``, or gray (H, W) —
    and returns a list of `Face`, left to right (``[]`` when there is none); ``rec(frame, boxes)``
    classifies given boxes (x, y, w, h) without detecting; ``rec.classify(crops)`` classifies
    already-cropped faces.

    Options: ``backend`` ort / trt / torch (default: from the file type; torch takes a shipped name's
    checkpoint); ``device`` auto / cpu / cuda; ``precision`` which of a shipped model's files runs (auto: the
    fastest whose accuracy gate passed for the device; fp32 / fp16 / int8); ``detector`` yunet / haar;
    ``tta`` none / hflip (averages
    with the mirrored face); ``margin`` (0–1) widens each box by that share on every side;
    ``detect_max_side`` scales the frame the detector sees; ``max_faces`` keeps the largest faces (0: every
    face); ``align`` levels the eyes (CPU crops only); ``threads`` ONNX Runtime's intra-op threads (0: its
    own choice); ``server`` host:port of `feredge serve`, which then runs the model while the crops are
    made here. Defaults: `feredge.config`.

    Threads: one Recognizer may be shared; its calls take turns (a lock: the detector's input size and the
    GPU pipeline's buffers are per call), so threads that need to run at once each create their own.
    ``close()`` or ``with`` frees the runner's memory.
    """

    def __init__(self, model: str | Path | None = None, *, backend: str | None = None, device: str | None = None,
                 precision: str = PRECISION, detector: str = DETECTOR, tta: str = TTA, margin: float = FACE_MARGIN,
                 detect_max_side: int = DETECT_MAX_SIDE, max_faces: int = MAX_FACES, align: bool = ALIGN,
                 threads: int = THREADS, server: str | None = None):
        check_choice("detector", detector, DETECTORS)
        check_choice("tta", tta, TTA_MODES[:2])  # ten-crop needs equal-sized images: a dataset, not a frame
        check_ranges(detect_max_side=detect_max_side, max_faces=max_faces, margin=margin)
        if align and detector == "haar":
            raise FeredgeError("align (--align) levels the eyes by the detector's landmarks, and the haar detector "
                               "gives none: use detector yunet, or no alignment")
        self.classifier = Classifier(model, backend=backend, device=device, precision=precision, tta=tta,
                                     threads=threads, server=server)
        self.tta, self.margin, self.align, self.max_faces = tta, margin, align, max_faces
        self.detector_name, self.detect_max_side = detector, detect_max_side
        self._detector = None
        self._gpu = None
        self._lock = threading.RLock()
        runner = self.classifier.runner
        try:
            if runner.gpu_io:
                if align:
                    raise FeredgeError("align=True rotates crops on the CPU; the GPU pipeline crops them unrotated: "
                                       "turn alignment off for a GPU runner")
                from feredge.runtime.pipeline import GpuPipeline

                views = 2 if tta == "hflip" else 1
                self._gpu = GpuPipeline(runner, self.info.input_spec, margin, tta == "hflip",
                                        max_faces=min(max_faces or runner.max_batch, runner.max_batch // views))
        except BaseException:
            self.classifier.close()
            raise

    @property
    def info(self) -> Artifact:
        """The model file's validated description: classes, input spec, precision, sources."""
        return self.classifier.info

    @property
    def classes(self) -> tuple[str, ...]:
        return self.classifier.classes

    @property
    def backend(self) -> str:
        return self.classifier.backend

    @property
    def device(self) -> str:
        return self.classifier.device

    @property
    def path(self) -> Path:
        return self.classifier.path

    @property
    def closed(self) -> bool:
        return self.classifier.closed

    @property
    def detector(self):
        """The face detector, created on first use (classifying crops needs none)."""
        if self._detector is None:
            from feredge.vision.detector import make_detector

            self._detector = make_detector(self.detector_name, self.detect_max_side)
        return self._detector

    def detect(self, frame: np.ndarray, color: str = COLOR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (N, 4) x, y, w, h; scores (N,); landmarks (N, 5, 2)) of the faces in a frame, left to right,
        the ``max_faces`` largest when that is set."""
        frame = as_bgr(frame, color)
        with self._lock:
            boxes, scores = self.detector.detect(frame)
            landmarks = self.detector.landmarks
        keep = np.arange(len(boxes))
        if self.max_faces and len(boxes) > self.max_faces:
            keep = np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable")[:self.max_faces]
        keep = keep[np.argsort(boxes[keep, 0], kind="stable")]
        return boxes[keep], scores[keep], landmarks[keep]

    def crops(self, frame: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None = None,
              color: str = COLOR) -> np.ndarray:
        """The model's float32 input batch (N, C, H, W) for these boxes — square crop, margin, resize,
        colour, normalisation, rotated so the eyes are level when ``align`` is on (needs ``landmarks``) —
        followed by the mirrored copies with flip TTA."""
        from feredge.vision.detector import eye_angles
        from feredge.vision.preprocess import preprocess_frame_cv2

        frame = as_bgr(frame, color)
        s = self.info.input_spec
        angles = eye_angles(landmarks) if self.align and landmarks is not None and len(boxes) else None
        return preprocess_frame_cv2(frame, boxes, s.size, s.channels, s.mean, s.std, self.margin,
                                    self.tta == "hflip", angles)

    def probabilities(self, frame: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None = None,
                      color: str = COLOR) -> np.ndarray:
        """(N, classes) probabilities for given boxes of a frame — the path after detection."""
        frame = as_bgr(frame, color)
        return self._probabilities(frame, check_boxes(boxes, frame.shape, MIN_INSIDE), landmarks)

    def _probabilities(self, frame: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        """``probabilities`` for a checked BGR frame and boxes: the GPU pipeline's branch or OpenCV crops."""
        if not len(boxes):
            return np.zeros((0, len(self.classes)), np.float32)
        with self._lock:
            if self._gpu is not None:
                step = self._gpu.max_faces
                return np.concatenate([self.classifier.probabilities_from(self._gpu(frame, boxes[i:i + step]),
                                                                          len(boxes[i:i + step]))
                                       for i in range(0, len(boxes), step)])
            return self.classifier.probabilities_of(self.crops(frame, boxes, landmarks), len(boxes))

    def __call__(self, frame: np.ndarray, boxes: np.ndarray | None = None, color: str = COLOR) -> list[Face]:
        """Every face of ``frame`` (detected, or the given ``boxes``) with its expression; ``[]`` if none."""
        frame = as_bgr(frame, color)
        if boxes is None:
            return self.faces(frame, *self.detect(frame))
        return self.faces(frame, check_boxes(boxes, frame.shape, MIN_INSIDE))

    def faces(self, frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None = None,
              landmarks: np.ndarray | None = None, color: str = COLOR) -> list[Face]:
        """`Face` objects for boxes found (``detect``) or known beforehand, classified in one batch."""
        frame = as_bgr(frame, color)
        boxes = check_boxes(boxes, frame.shape)
        probs = self._probabilities(frame, boxes, landmarks)
        return [Face(as_box(boxes[i]), self.classes, probs[i],
                     None if scores is None else float(scores[i]), None if landmarks is None else landmarks[i])
                for i in range(len(boxes))]

    def classify(self, faces: np.ndarray | Sequence[np.ndarray], color: str = COLOR) -> np.ndarray:
        """Probabilities (N, classes) float32 for already-cropped faces (see `Classifier.classify`: one face
        (H, W), (H, W, 1) or (H, W, 3), a batch of them, or a list of faces of different sizes)."""
        return self.classifier.classify(faces, color)

    def close(self) -> None:
        """Free the GPU pipeline and the runner; the Recognizer cannot be used afterwards."""
        with self._lock:
            if self._gpu is not None:
                self._gpu.close()
                self._gpu = None
            self.classifier.close()

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def as_bgr(frame, color: str = COLOR) -> np.ndarray:
    """A frame as BGR uint8 (H, W, 3): BGR as given, RGB (``color="rgb"``) reversed, gray (H, W) or
    (H, W, 1) repeated into three channels (the gray weights sum to one: a gray model sees the same pixels).
    Anything else is refused, naming what was expected."""
    check_choice("color", color, COLORS)
    if isinstance(frame, (str, Path)):
        raise FeredgeError(f"frame is a path ({str(frame)[:80]!r}); read the picture first: "
                           "feredge.read_image(path) gives a BGR frame")
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or not (
            frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3))):
        what = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        hint = " (drop the alpha channel: cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR))" if (
            isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 4) else ""
        raise FeredgeError(f"frame is a {what}; expected a uint8 array (H, W, 3) BGR as cv2.imread gives, RGB with "
                           f"color='rgb', or gray (H, W){hint}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise FeredgeError(f"frame has shape {frame.shape}; expected at least one pixel")
    if frame.ndim == 2 or frame.shape[2] == 1:
        return np.repeat(frame.reshape(*frame.shape[:2], 1), 3, axis=2)
    return np.ascontiguousarray(frame[..., ::-1]) if color == "rgb" else frame


def check_boxes(boxes, frame_shape: tuple[int, ...] | None = None, min_inside: float = 0.0) -> np.ndarray:
    """Boxes as float32 (N, 4) x, y, w, h with positive width and height; given the frame's shape, each must
    overlap the frame (and lie at least ``min_inside`` of its area inside it): a crop of nothing but
    padding would still get a confident label."""
    b = np.asarray(boxes, np.float32)
    if b.size == 0:
        return np.zeros((0, 4), np.float32)
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise FeredgeError(f"boxes have shape {list(b.shape)}; expected (N, 4): x, y, width, height per face")
    if not np.isfinite(b).all() or (b[:, 2:] <= 0).any():
        raise FeredgeError("boxes: expected finite x, y and a positive width and height per face")
    if frame_shape is not None:
        h, w = frame_shape[:2]
        iw = np.clip(b[:, 0] + b[:, 2], 0, w) - np.clip(b[:, 0], 0, w)
        ih = np.clip(b[:, 1] + b[:, 3], 0, h) - np.clip(b[:, 1], 0, h)
        inside = iw * ih / (b[:, 2] * b[:, 3])
        bad = (inside <= 0) | (inside < min_inside)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            where = "wholly" if inside[k] <= 0 else f"{100 * (1 - inside[k]):.0f} %"
            want = f"at least {100 * min_inside:.0f} % of each box inside it" if min_inside else "boxes on the frame"
            raise FeredgeError(f"box {k} {b[k].tolist()} lies {where} outside the {w}×{h} frame; expected {want}")
    return b
