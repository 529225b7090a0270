"""`Classifier`: crops → expressions, the one answer to "what does the model say about these faces?".

Every caller goes through it — `Recognizer` (frames), `feredge eval` on any file, bench's accuracy, the
export's parity check and accuracy gate, the model card's scores, the served ``fer`` model and explain —
so pre-processing, test-time augmentation and softmax are written once, whatever backend runs the model
(ONNX Runtime, TensorRT, torch, or `feredge serve` over HTTP), as Ultralytics' AutoBackend serves every format.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from feredge.artifact import Artifact, InputSpec
from feredge.config import COLOR, COLORS, PRECISION, THREADS, TTA, TTA_MODES, check_choice
from feredge.errors import FeredgeError
from feredge.metrics import softmax
from feredge.runtime.base import Runner

#: Images per chunk when a dataset is classified: bounds the memory of ten-crop views.
CHUNK = 256


def fold(logits: np.ndarray, n: int, tta: str) -> np.ndarray:
    """The views' logits (laid out as `views` lays them out) folded into one row per face: TTA averages
    logits, not probabilities, the same for every backend and for the GPU pipeline's mirrored copies."""
    if tta == "hflip":
        return (logits[:n] + logits[n:2 * n]) / 2
    if tta == "ten-crop":
        return logits[:10 * n].reshape(n, 10, -1).mean(1)
    return logits[:n]


def mirrored(x: np.ndarray, tta: str) -> np.ndarray:
    """A pre-processed batch (N, C, S, S) with its mirrored copies after it when ``tta`` is hflip."""
    return np.ascontiguousarray(np.concatenate([x, x[..., ::-1]]) if tta == "hflip" else x)


def views(images: np.ndarray, spec: InputSpec, tta: str, eval_crop: int | None = None) -> np.ndarray:
    """Equal-sized uint8 faces (N, H, W, C) → the model's input for every TTA view, as training evaluates:
    a model trained on crops (``eval_crop``) sees the centre crop; ten-crop takes the four corners, the
    centre and their mirrors at ``eval_crop`` (else 7/8 of the side), each resized to the model's input."""
    from feredge.vision.preprocess import preprocess_faces

    side = images.shape[1]
    if tta == "ten-crop":
        c = eval_crop or round(side * 7 / 8)
        top = (side - c) // 2
        corners = [(0, 0), (0, side - c), (side - c, 0), (side - c, side - c), (top, top)]
        crops = np.stack([images[:, i:i + c, j:j + c] for i, j in corners], 1)
        x = preprocess_faces(crops.reshape(-1, *crops.shape[2:]), spec).reshape(len(images), 5, *_chw(spec))
        return np.ascontiguousarray(np.concatenate([x, x[..., ::-1]], 1).reshape(-1, *_chw(spec)))
    if eval_crop is not None and eval_crop < side:
        o = (side - eval_crop) // 2
        images = images[:, o:o + eval_crop, o:o + eval_crop]
    return mirrored(preprocess_faces(images, spec), tta)


def _chw(spec: InputSpec) -> tuple[int, int, int]:
    return spec.channels, spec.size, spec.size


class Classifier:
    """Faces → probabilities, through one runner of any backend.

    ``model``: a shipped model's name, a .onnx / .engine / .safetensors file, or None (the default model);
    ``backend`` ort / trt / torch (default: the file type; torch takes a shipped name's checkpoint);
    ``device`` auto / cpu / cuda / cuda:N; ``precision`` which of a shipped model's files (auto / fp32 / fp16 /
    int8: auto takes the fastest whose accuracy gate passed for the device); ``tta`` none / hflip / ten-crop;
    ``threads`` ONNX Runtime's
    intra-op threads (0: its own choice); ``server`` host:port of `feredge serve`, which then runs the model;
    ``exact_qdq`` as in `feredge.runtime.ort` (the export's gate judges Q/DQ as TensorRT computes it).

    Safe to share between threads: calls are serialised by a lock (a runner's I/O buffers are per call).
    """

    def __init__(self, model: str | Path | None = None, *, backend: str | None = None, device: str | None = None,
                 precision: str = PRECISION, tta: str = TTA, threads: int = THREADS, server: str | None = None,
                 exact_qdq: bool | None = None):
        from feredge.runtime.loader import open_runner

        check_choice("tta", tta, TTA_MODES)
        self.tta = tta
        self.runner: Runner = open_runner(model, backend=backend, device=device, precision=precision,
                                          threads=threads, server=server, exact_qdq=exact_qdq)
        self.device = getattr(self.runner, "device", device or "cpu")
        self.closed = False
        self._lock = threading.RLock()

    @property
    def info(self) -> Artifact:
        """The model file's validated description: classes, input spec, precision, sources."""
        return self.runner.info

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.runner.info.classes)

    @property
    def spec(self) -> InputSpec:
        return self.runner.info.input_spec

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def path(self) -> Path:
        return self.runner.path

    def infer(self, x: np.ndarray, n: int, tta: str | None = None) -> np.ndarray:
        """Logits (n, classes) of a pre-processed batch holding ``n`` faces in ``tta``'s layout of views."""
        self._check_open()
        with self._lock:
            return fold(self.runner.infer_all(x), n, tta or self.tta).astype(np.float32)

    def probabilities_of(self, x: np.ndarray, n: int) -> np.ndarray:
        """``infer`` then softmax: (n, classes) float32."""
        return softmax(self.infer(x, n)).astype(np.float32)

    def probabilities_from(self, logits: np.ndarray, n: int) -> np.ndarray:
        """Probabilities (n, classes) from views' logits run elsewhere — the GPU pipeline, whose kernel lays
        out the mirrored copies as `views` does — folded and normalised here, as on the CPU path."""
        self._check_open()
        return softmax(fold(logits, n, self.tta)).astype(np.float32)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits (N, classes) for equal-sized uint8 faces (N, H, W, C), a dataset's images, with the TTA
        views; chunked, so a test split with ten-crop stays within memory."""
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise FeredgeError(f"images are a {images.dtype} array of shape {list(images.shape)}; expected uint8 "
                               "(N, H, W, C)")
        crop = self.info.details.get("eval_crop")
        out = [self.infer(views(images[i:i + CHUNK], self.spec, self.tta, crop), len(images[i:i + CHUNK]))
               for i in range(0, len(images), CHUNK)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """``logits`` then softmax: (N, classes) float32."""
        return softmax(self.logits(images)).astype(np.float32)

    def classify(self, faces: np.ndarray | Sequence[np.ndarray], color: str = COLOR) -> np.ndarray:
        """Probabilities (N, classes) float32 for already-cropped faces of any sizes, pre-processed as in
        training: each face is resized to the model's input (bilinear) and converted to its channels.

        ``faces``: uint8 pixels, one face (H, W) gray, (H, W, 1) gray or (H, W, 3) colour; a batch of them
        as (N, H, W), (N, H, W, 1) or (N, H, W, 3); or a list of faces of different sizes. Colour crops are
        BGR (OpenCV's order) unless ``color="rgb"``. Any other shape or dtype is refused: a (H, W, 4) crop
        is not 4-pixel-wide gray faces."""
        from feredge.vision.preprocess import preprocess_faces

        check_choice("color", color, COLORS)
        if self.tta == "ten-crop":
            raise FeredgeError("tta 'ten-crop' needs equal-sized images (a dataset); crops of any size take "
                               "'none' or 'hflip'")
        batch = [as_hwc(f, color, i) for i, f in enumerate(face_list(faces))]
        if not batch:
            return np.zeros((0, len(self.classes)), np.float32)
        x = np.concatenate([preprocess_faces(f[None], self.spec) for f in batch])
        return self.probabilities_of(mirrored(x, self.tta), len(batch))

    def close(self) -> None:
        """Free the runner; the Classifier cannot be used afterwards."""
        if not self.closed:
            self.runner.close()
            self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise FeredgeError(f"this model ({self.path.name}) is closed; create a new one")

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def face_list(faces) -> list[np.ndarray]:
    """A batch array or a list of faces, as a list of single faces; a 3-D array is one face only when its
    last axis holds 1 or 3 channels, and a 4-D one is a batch only of such faces."""
    if isinstance(faces, np.ndarray):
        if faces.ndim == 2 or (faces.ndim == 3 and faces.shape[-1] in (1, 3)):
            return [faces]
        if faces.ndim in (3, 4) and faces.shape[-1] in (2, 4):
            alpha = " (drop the alpha channel: cv2.cvtColor(face, cv2.COLOR_BGRA2BGR))" if faces.shape[-1] == 4 else ""
            raise FeredgeError(f"faces have shape {list(faces.shape)}: {faces.shape[-1]} channels; expected gray "
                               "(H, W) or (H, W, 1) or colour (H, W, 3) faces, one or a batch of them" + alpha)
        if faces.ndim == 3 or (faces.ndim == 4 and faces.shape[-1] in (1, 3)):
            return list(faces)
        raise FeredgeError(f"faces have shape {list(faces.shape)}; expected (H, W), (H, W, 1|3) or a batch "
                           "(N, H, W), (N, H, W, 1|3)")
    if isinstance(faces, (list, tuple)):
        return [np.asarray(f) if not isinstance(f, np.ndarray) else f for f in faces]
    raise FeredgeError(f"faces is a {type(faces).__name__}; expected a uint8 array or a list of them")


def as_hwc(face: np.ndarray, color: str, index: int) -> np.ndarray:
    """One face as uint8 (H, W, 1) gray or (H, W, 3) RGB (what training's pre-processing takes)."""
    if not isinstance(face, np.ndarray) or face.dtype != np.uint8:
        what = face.dtype if isinstance(face, np.ndarray) else type(face).__name__
        raise FeredgeError(f"face {index}: {what} pixels; expected uint8 (0–255)")
    if face.ndim == 2:
        face = face[..., None]
    if face.ndim != 3 or face.shape[-1] not in (1, 3) or min(face.shape[:2]) < 1:
        raise FeredgeError(f"face {index} has shape {list(face.shape)}; expected (H, W), (H, W, 1) or (H, W, 3)")
    return face[..., ::-1] if face.shape[-1] == 3 and color == "bgr" else face
