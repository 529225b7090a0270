"""`Recognizer`: the one path from a frame to faces to expressions. Every command (predict, run-camera,
serve's `fer_frame`, explain, bench's end-to-end measure) goes through it, so there is one frame path; the
fused GPU pipeline is a branch inside it. No torch unless a torch checkpoint is asked for."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from feredge.artifact import Artifact
from feredge.config import DEVICES
from feredge.errors import FeredgeError
from feredge.metrics import softmax
from feredge.vision.crop import FACE_MARGIN
from feredge.vision.detector import DETECT_MAX_SIDE, DETECT_MIN_SIDE, DETECTORS


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


def resolve_device(device: str | None, backend: str) -> str:
    """``auto``/None/"" → cuda where the backend can run there (TensorRT always; ONNX Runtime with its CUDA
    provider; torch with a CUDA build and a GPU), else cpu."""
    if device not in (None, "", "auto"):
        if device not in DEVICES and not str(device).startswith("cuda:"):
            raise FeredgeError(f"device {device!r}: expected one of {', '.join(DEVICES)}")
        return str(device)
    if backend == "trt":
        return "cuda"
    if backend == "ort":
        from feredge._optional import require

        return "cuda" if "CUDAExecutionProvider" in require("onnxruntime").get_available_providers() else "cpu"
    if backend == "torch":
        from feredge._optional import require

        return "cuda" if require("torch").cuda.is_available() else "cpu"
    return "cpu"


class Recognizer:
    """frame → faces → expressions.

    ``Recognizer()`` loads the shipped default model through ONNX Runtime; ``model`` takes a shipped
    model's name or a .onnx / .engine / .safetensors file. ``rec(frame)`` detects and classifies every
    face of a BGR uint8 frame (H, W, 3) and returns a list of `Face` (``[]`` when there is none);
    ``rec(frame, boxes)`` classifies given boxes (x, y, w, h) without detecting; ``rec.classify(crops)``
    classifies already-cropped faces.

    Options: ``backend`` ort / trt / torch (default: from the file type; torch takes a shipped name's
    checkpoint); ``device`` auto / cpu / cuda; ``detector`` yunet / haar; ``tta`` averages with the mirrored
    face; ``margin`` (0–1) widens each box by that share on every side; ``detect_max_side`` scales the frame
    the detector sees; ``max_faces`` keeps the largest faces; ``align`` levels the eyes (CPU crops only);
    ``threads`` ONNX Runtime's intra-op threads (0: its own choice); ``server`` host:port of `feredge serve`,
    which then runs the model while the crops are made here.

    Threads: one Recognizer holds per-call state (the detector's input size, the GPU pipeline's stream,
    buffers and graphs), so call it from one thread at a time; give each thread its own Recognizer
    (they share nothing but the model file). ``close()`` or ``with`` frees the runner's memory.
    """

    def __init__(self, model: str | Path | None = None, *, backend: str | None = None, device: str | None = None,
                 detector: str = "yunet", tta: bool = False, margin: float = FACE_MARGIN,
                 detect_max_side: int = DETECT_MAX_SIDE, max_faces: int | None = None, align: bool = False,
                 threads: int = 0, server: str | None = None):
        from feredge.runtime.loader import backend_for, load_runner
        from feredge.weights import resolve

        if detect_max_side < DETECT_MIN_SIDE:
            raise FeredgeError(f"detect_max_side {detect_max_side}: expected at least {DETECT_MIN_SIDE} pixels "
                               "(a smaller detector input finds no face)")
        if detector not in DETECTORS:
            raise FeredgeError(f"detector {detector!r}: expected one of {', '.join(DETECTORS)}")
        if max_faces is not None and max_faces < 1:
            raise FeredgeError(f"max_faces {max_faces}: expected a positive integer (or None: every face)")
        if not 0 <= margin <= 1:
            raise FeredgeError(f"margin {margin}: expected 0 ≤ margin ≤ 1 (the share of the box added on each side)")
        cores = os.cpu_count() or 1
        if not 0 <= threads <= cores:
            raise FeredgeError(f"threads {threads}: expected 0 (ONNX Runtime chooses) up to {cores}, this machine's cores")
        self.path = resolve(model, "checkpoint" if backend == "torch" else "onnx")
        kind = backend or backend_for(self.path)
        self.device = resolve_device(device, kind or "")
        kwargs = {"threads": threads} if threads and kind == "ort" else {}
        self.runner = load_runner(self.path, backend, device=self.device, **kwargs)
        self.tta, self.margin, self.align, self.max_faces = tta, margin, align, max_faces
        self.detector_name, self.detect_max_side = detector, detect_max_side
        self._detector = None
        self._gpu = None
        self.closed = False
        self._remote = None
        try:
            if server is not None:
                from feredge.runtime.remote import RemoteFer

                self._remote = RemoteFer(server, self.runner.info)
            elif self.runner.gpu_io:
                if align:
                    raise FeredgeError("align=True rotates crops on the CPU; the GPU pipeline crops them unrotated: "
                                       "turn alignment off for a GPU runner")
                from feredge.runtime.pipeline import GpuPipeline

                per_face = 2 if tta else 1
                self._gpu = GpuPipeline(self.runner, self.info.input_spec, margin, tta,
                                        max_faces=min(max_faces or 10**9, self.runner.max_batch // per_face))
        except BaseException:
            self.runner.close()
            raise

    @property
    def info(self) -> Artifact:
        """The model file's validated description: classes, input spec, precision, sources."""
        return self.runner.info

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.runner.info.classes)

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def detector(self):
        """The face detector, created on first use (classifying crops needs none)."""
        if self._detector is None:
            from feredge.vision.detector import make_detector

            self._detector = make_detector(self.detector_name, self.detect_max_side)
        return self._detector

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (N, 4) x, y, w, h; scores (N,); landmarks (N, 5, 2)) of the faces in a BGR frame, the
        ``max_faces`` largest when that is set."""
        check_frame(frame)
        boxes, scores = self.detector.detect(frame)
        landmarks = self.detector.landmarks
        if self.max_faces is not None and len(boxes) > self.max_faces:
            keep = np.sort(np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable")[:self.max_faces])
            boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
        return boxes, scores, landmarks

    def crops(self, frame: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """The model's float32 input batch (N, C, H, W) for these boxes: square crop, margin, resize,
        colour, normalisation — rotated so the eyes are level when ``align`` is on (needs ``landmarks``)."""
        from feredge.vision.detector import eye_angles
        from feredge.vision.preprocess import preprocess_frame_cv2

        s = self.info.input_spec
        angles = eye_angles(landmarks) if self.align and landmarks is not None and len(boxes) else None
        return preprocess_frame_cv2(frame, boxes, s.size, s.channels, s.mean, s.std, self.margin, self.tta, angles)

    def probabilities(self, frame: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, classes) probabilities for given boxes of a frame — the path after detection."""
        check_frame(frame)
        return self._probabilities(frame, check_boxes(boxes, frame.shape), landmarks)

    def _probabilities(self, frame: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        """``probabilities`` for a checked frame and boxes: the GPU pipeline's branch or OpenCV crops."""
        if not len(boxes):
            return np.zeros((0, len(self.classes)), np.float32)
        self._check_open()
        if self._gpu is not None:
            step = self._gpu.max_faces
            return np.concatenate([softmax(self._gpu(frame, boxes[i:i + step])) for i in range(0, len(boxes), step)]
                                  ).astype(np.float32)
        return self._batch_probabilities(self.crops(frame, boxes, landmarks), len(boxes))

    def _batch_probabilities(self, x: np.ndarray, n: int) -> np.ndarray:
        from feredge.runtime.pipeline import merge_mirrored

        if self._remote is not None:
            p = self._remote.probabilities(x)
            return (p[:n] + p[n:]) / 2 if self.tta else p
        return softmax(merge_mirrored(self.runner.infer_all(x), n, self.tta)).astype(np.float32)

    def __call__(self, frame: np.ndarray, boxes: np.ndarray | None = None) -> list[Face]:
        """Every face of ``frame`` (detected, or the given ``boxes``) with its expression; ``[]`` if none."""
        if boxes is None:
            return self.faces(frame, *self.detect(frame))
        return self.faces(frame, boxes)

    def faces(self, frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None = None,
              landmarks: np.ndarray | None = None) -> list[Face]:
        """`Face` objects for boxes found (``detect``) or known beforehand, classified in one batch."""
        check_frame(frame)
        boxes = check_boxes(boxes, frame.shape)
        probs = self._probabilities(frame, boxes, landmarks)
        return [Face(as_box(boxes[i]), self.classes, probs[i],
                     None if scores is None else float(scores[i]), None if landmarks is None else landmarks[i])
                for i in range(len(boxes))]

    def classify(self, faces: np.ndarray | Sequence[np.ndarray], color: str = "bgr") -> np.ndarray:
        """Probabilities (N, classes) float32 for already-cropped faces, pre-processed as in training.

        ``faces``: uint8 pixels, one face (H, W) gray, (H, W, 1) gray or (H, W, 3) colour (a 3-D array
        whose last axis is 1 or 3 is one face); a batch of them as (N, H, W), (N, H, W, 1) or (N, H, W, 3);
        or a list of faces of different sizes. Colour
        crops are BGR (OpenCV's order, as frames are) unless ``color="rgb"``. Each face is resized to the
        model's input (bilinear) and converted to its channels. With ``tta`` the mirrored face is averaged in.
        """
        from feredge.vision.preprocess import preprocess_faces

        if color not in ("bgr", "rgb"):
            raise FeredgeError(f"color {color!r}: expected 'bgr' or 'rgb' (the channel order of 3-channel crops)")
        batch = [_as_hwc(f, color, i) for i, f in enumerate(_face_list(faces))]
        spec = self.info.input_spec
        if not batch:
            return np.zeros((0, len(self.classes)), np.float32)
        self._check_open()
        x = np.concatenate([preprocess_faces(f[None], spec) for f in batch])
        if self.tta:
            x = np.concatenate([x, x[..., ::-1]])
        return self._batch_probabilities(np.ascontiguousarray(x), len(batch))

    def close(self) -> None:
        """Free the GPU pipeline and the runner; the Recognizer cannot be used afterwards."""
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None
        if not self.closed:
            self.runner.close()
            self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise FeredgeError(f"this Recognizer of {self.path.name} is closed; create a new one")

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_frame(frame) -> None:
    """Frames are BGR uint8 (H, W, 3), as OpenCV reads them."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        what = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise FeredgeError(f"frame is a {what}; expected a BGR uint8 array (H, W, 3), as cv2.imread gives")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise FeredgeError(f"frame has shape {frame.shape}; expected at least one pixel")


def check_boxes(boxes, frame_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Boxes as float32 (N, 4) x, y, w, h with positive width and height (and, given the frame's shape,
    overlapping the frame: a crop of nothing but padding would still get a confident label)."""
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
        outside = (b[:, 0] >= w) | (b[:, 1] >= h) | (b[:, 0] + b[:, 2] <= 0) | (b[:, 1] + b[:, 3] <= 0)
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            raise FeredgeError(f"box {k} {b[k].tolist()} lies wholly outside the {w}×{h} frame")
    return b


def _face_list(faces) -> list[np.ndarray]:
    """A batch array or a list of faces, as a list of single faces."""
    if isinstance(faces, np.ndarray):
        if faces.ndim == 2 or (faces.ndim == 3 and faces.shape[-1] in (1, 3)):
            return [faces]
        if faces.ndim in (3, 4):
            return list(faces)
        raise FeredgeError(f"faces have shape {list(faces.shape)}; expected (H, W), (H, W, 1|3) or a batch "
                           "(N, H, W), (N, H, W, 1|3)")
    if isinstance(faces, (list, tuple)):
        return [np.asarray(f) for f in faces]
    raise FeredgeError(f"faces is a {type(faces).__name__}; expected a uint8 array or a list of them")


def _as_hwc(face: np.ndarray, color: str, index: int) -> np.ndarray:
    """One face as uint8 (H, W, 1) gray or (H, W, 3) RGB (what training's pre-processing takes)."""
    if not isinstance(face, np.ndarray) or face.dtype != np.uint8:
        what = face.dtype if isinstance(face, np.ndarray) else type(face).__name__
        raise FeredgeError(f"face {index}: {what} pixels; expected uint8 (0–255)")
    if face.ndim == 2:
        face = face[..., None]
    if face.ndim != 3 or face.shape[-1] not in (1, 3) or min(face.shape[:2]) < 1:
        raise FeredgeError(f"face {index} has shape {list(face.shape)}; expected (H, W), (H, W, 1) or (H, W, 3)")
    return face[..., ::-1] if face.shape[-1] == 3 and color == "bgr" else face
