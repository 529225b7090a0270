"""TensorRT engine runner: set_tensor_address + execute_async_v3, dynamic batch via the profile.

Two ways in: ``infer(host batch)`` (pinned staging, async copies), or ``bind(batch)`` + ``enqueue(stream)``
for the GPU pipeline, whose pre-processing kernel writes straight into the engine's input buffer.

Not yet run against a real TensorRT (see README, "Verified on"). The engine's sidecar key is checked
against this machine before deserialising, so a foreign or stale engine is refused with a reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge import artifact
from feredge._optional import require
from feredge.cuda import cuda_api
from feredge.errors import FeredgeError
from feredge.runtime.base import Runner, TensorSpec


class TrtRunner(Runner):
    backend = "trt"
    gpu_io = True  # bind() hands out device pointers
    capturable = True  # execute_async_v3 on the caller's stream can be captured into a CUDA graph

    def __init__(self, path: Path, device: str = "cuda"):
        super().__init__(path)
        trt = require("tensorrt")
        self.cuda = cuda_api()
        self.info = artifact.read(self.path)
        if self.info.kind != "engine":
            raise FeredgeError(f"{self.path}: is described as a {self.info.kind}, expected a TensorRT engine")
        self._check_key(trt)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise FeredgeError(f"{self.path}: TensorRT could not deserialise this engine (built with another "
                               "TensorRT version or GPU?); rebuild it with `feredge export --engine` here")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if n != self.input_name)
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self.item_shape = tuple(self.engine.get_tensor_shape(self.input_name))[1:]
        self.classes = int(self.engine.get_tensor_shape(self.output_name)[-1])
        self.info.check_outputs(self.classes, str(self.path))
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        self.stream = self.cuda.stream()  # one stream per runner: copies and execution stay ordered
        self._buffers: dict[str, tuple[int, int]] = {}
        self._host: dict[str, np.ndarray] = {}

    def _check_key(self, trt) -> None:
        name, cc = self.cuda.identity()
        self.info.check_engine_key({"gpu_name": name, "compute_capability": cc, "tensorrt": trt.__version__},
                                   str(self.path))

    def input_spec(self) -> TensorSpec:
        return TensorSpec(self.input_name, tuple(self.engine.get_tensor_shape(self.input_name)), self.input_dtype.name)

    def _buffer(self, name: str, nbytes: int) -> int:
        """A device buffer bound to tensor ``name``; allocated once, so captured graphs keep valid pointers."""
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self.cuda.free(ptr)
            ptr = self.cuda.alloc(nbytes)
            self._buffers[name] = (ptr, nbytes)
            self.context.set_tensor_address(name, ptr)
        return ptr

    def _pinned(self, name: str, shape: tuple, dtype) -> np.ndarray:
        """A pinned host staging array of at least ``shape`` (async copies need page-locked memory)."""
        size = int(np.prod(shape))
        buf = self._host.get(name)
        if buf is None or buf.size < size:
            buf = self.cuda.pinned((max(size, 1),), dtype)
            self._host[name] = buf
        return buf[:size].reshape(shape)

    def bind(self, batch: int) -> tuple[int, int]:
        """Set the batch size and return the (input, output) device pointers, sized for the profile maximum."""
        if not 1 <= batch <= self.max_batch:
            raise FeredgeError(f"batch of {batch} is outside the engine's profile (1..{self.max_batch})")
        self.context.set_input_shape(self.input_name, (batch, *self.item_shape))
        item = int(np.prod(self.item_shape))
        inp = self._buffer(self.input_name, self.max_batch * item * self.input_dtype.itemsize)
        out = self._buffer(self.output_name, self.max_batch * self.classes * self.output_dtype.itemsize)
        return inp, out

    def enqueue(self, stream) -> None:
        """Run the engine on ``stream`` over what ``bind`` set up (asynchronous; capturable into a graph)."""
        if not self.context.execute_async_v3(self.cuda.stream_handle(stream)):
            raise FeredgeError(f"{self.path}: TensorRT execution failed")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        inp, outp = self.bind(len(batch))
        staged = self._pinned(self.input_name, batch.shape, self.input_dtype)
        staged[:] = batch
        out = self._pinned(self.output_name, (len(batch), self.classes), self.output_dtype)
        self.cuda.htod(inp, staged, self.stream)
        self.enqueue(self.stream)
        self.cuda.dtoh(out, outp, self.stream)
        self.cuda.synchronize(self.stream)
        return out.astype(np.float32)

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cuda.free(ptr)
        self._buffers.clear()
        self.context = self.engine = None
