"""The GPU path of one camera frame: one upload, fused pre-processing into the engine input, inference.

Why this shape: uploading a 1080p frame costs ~10× the pre-processing kernel, so the frame is captured
straight into a pinned buffer (on Jetson, a mapped buffer the GPU reads in place: no copy at all) and
uploaded once; the kernel writes every face into the engine's own input buffer; copies, kernel and
inference run on the runner's single stream. For a repeated (faces, frame size) the whole sequence is
captured once into a CUDA graph and replayed with one launch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feredge.cuda.preprocess import GpuPreprocessor
from feredge.errors import FeredgeError


def check_boxes(boxes, max_faces: int) -> np.ndarray:
    """Face boxes as float32 (N, 4) x, y, w, h; a clear error for another shape or too many faces."""
    arr = np.asarray(boxes, np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise FeredgeError(f"face boxes have shape {arr.shape}, expected (N, 4) as x, y, width, height")
    if len(arr) > max_faces:
        raise FeredgeError(f"{len(arr)} faces exceed the pipeline's max_faces={max_faces}; raise it when building")
    return arr


@dataclass
class FrameBuffer:
    """Host frame the camera writes into, and the device address the kernel reads."""

    host: np.ndarray
    device: int
    mapped: bool  # True: the GPU reads host memory in place (integrated GPU), nothing to upload

    @classmethod
    def allocate(cls, cuda, height: int, width: int) -> FrameBuffer:
        if cuda.integrated():
            host, device = cuda.mapped((height, width, 3), np.uint8)
            return cls(host, device, True)
        host = cuda.pinned((height, width, 3), np.uint8)
        return cls(host, cuda.alloc(host.nbytes), False)


class GpuPipeline:
    """Frame + face boxes → logits per face on the GPU, through a runner whose ``bind``/``enqueue`` work on
    device buffers (``gpu_io``): TensorRT, or ONNX Runtime's CUDA provider. Graphs need a ``capturable`` runner."""

    def __init__(self, runner, spec, margin: float, mirror: bool, max_faces: int,
                 graphs: bool = True):
        per_face = 2 if mirror else 1
        if max_faces * per_face > runner.max_batch:
            raise FeredgeError(f"max_faces={max_faces}{' (x2 mirrored)' if mirror else ''} exceeds the engine's "
                               f"maximum batch {runner.max_batch}; rebuild it with a larger profile")
        self.runner, self.spec, self.margin, self.mirror = runner, spec, margin, mirror
        self.cuda, self.stream = runner.cuda, runner.stream
        self.max_faces, self.per_face = max_faces, per_face
        self.pre = GpuPreprocessor(self.cuda)
        self.fp16 = runner.input_dtype == np.float16
        self.boxes = self.cuda.pinned((max_faces, 4), np.float32)
        self.d_boxes = self.cuda.alloc(self.boxes.nbytes)
        self.out = self.cuda.pinned((runner.max_batch, runner.classes), runner.output_dtype)
        self.d_out = runner.bind(1)[1]  # engine buffers are sized for the profile maximum once: fixed pointers
        self.frame: FrameBuffer | None = None
        self.graphs: dict | None = {} if graphs and runner.capturable else None
        self.graph_error = ""  # why graphs are off although asked for
        if graphs and not runner.capturable:
            self.graph_error = f"CUDA graphs off: the {runner.backend} runner launches on its own stream"

    def frame_buffer(self, height: int, width: int) -> np.ndarray:
        """The array to capture frames into (e.g. ``cap.read(image=buf)``) so no host copy is needed."""
        if self.frame is None or self.frame.host.shape[:2] != (height, width):
            if self.frame is not None and not self.frame.mapped:
                self.cuda.free(self.frame.device)
            self.frame = FrameBuffer.allocate(self.cuda, height, width)
            self._drop_graphs()
        return self.frame.host

    def __call__(self, frame: np.ndarray, boxes) -> np.ndarray:
        """BGR uint8 frame (H, W, 3) + boxes (N, 4) → float32 logits (N, classes)."""
        boxes = check_boxes(boxes, self.max_faces)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise FeredgeError(f"frame is {frame.dtype} {frame.shape}, expected uint8 (H, W, 3) BGR")
        n = len(boxes)
        if n == 0:
            return np.zeros((0, self.runner.classes), np.float32)
        host = self.frame_buffer(*frame.shape[:2])
        if frame is not host:
            np.copyto(host, frame)
        self.boxes[:n] = boxes
        self._run(n)
        batch = n * self.per_face
        self.cuda.dtoh(self.out[:batch], self.d_out, self.stream)
        self.cuda.synchronize(self.stream)
        return self.out[:batch].astype(np.float32)  # the views' logits: the Classifier folds them

    def _run(self, n: int) -> None:
        """Replay the graph for n faces, else launch eagerly and capture a graph for the next frame."""
        key = (n, self.frame.host.shape)
        graph = self.graphs.get(key) if self.graphs is not None else None
        if graph is not None:
            graph.launch(self.cuda.stream_handle(self.stream))
            return
        self._enqueue(n)
        if self.graphs is not None:
            self._capture(key, n)

    def _enqueue(self, n: int) -> None:
        inp, _ = self.runner.bind(n * self.per_face)
        height, width = self.frame.host.shape[:2]
        if not self.frame.mapped:
            self.cuda.htod(self.frame.device, self.frame.host, self.stream)
        self.cuda.htod(self.d_boxes, self.boxes, self.stream)
        self.pre(self.frame.device, width, height, width * 3, self.d_boxes, n, self.spec, inp, self.margin,
                 self.mirror, self.fp16, self.stream)
        self.runner.enqueue(self.stream)

    def _capture(self, key: tuple, n: int) -> None:
        """Capture after an eager run with the same shapes (TensorRT needs one before capturing), where the
        runner says its stream can be captured now (TensorRT for RTX decides per context)."""
        if not self.runner.capturable:
            self._drop_graphs()
            self.graphs = None
            self.graph_error = f"CUDA graphs off: the {self.runner.backend} runner cannot be captured"
            return
        try:
            self.graphs[key] = self.cuda.capture(self.stream, lambda: self._enqueue(n))
        except (FeredgeError, ImportError) as exc:
            self._drop_graphs()
            self.graphs, self.graph_error = None, f"CUDA graphs off: {exc}"

    def _drop_graphs(self) -> None:
        for graph in (self.graphs or {}).values():
            graph.close()
        if self.graphs is not None:
            self.graphs.clear()

    def close(self) -> None:
        self._drop_graphs()
        self.cuda.free(self.d_boxes)
        if self.frame is not None and not self.frame.mapped:
            self.cuda.free(self.frame.device)
