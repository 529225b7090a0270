"""TensorRT engine runner: set_tensor_address + execute_async_v3, dynamic batch via the profile.

Not yet run against a real TensorRT (see README, "Verified on"). The engine's sidecar key is checked
against this machine before deserialising, so a foreign or stale engine is refused with a reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.engine.plan import key_mismatch
from feredge.errors import FeredgeError
from feredge.export.metadata import read_sidecar
from feredge.runtime.base import Runner, TensorSpec
from feredge.runtime.cuda import cuda_api


class TrtRunner(Runner):
    backend = "trt"

    def __init__(self, path: Path, device: str = "cuda"):
        super().__init__(path)
        trt = require("tensorrt")
        self.cuda = cuda_api()
        self.meta = read_sidecar(self.path) or {}
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
        self.stream = self.cuda.stream()  # one stream per runner: copies and execution stay ordered
        self._buffers: dict[str, tuple[int, int]] = {}
        self._host: dict[str, np.ndarray] = {}

    def _check_key(self, trt) -> None:
        key = self.meta.get("engine_key")
        if not key:
            return
        name, cc = self.cuda.identity()
        problems = key_mismatch(key, {"gpu_name": name, "compute_capability": cc, "tensorrt": trt.__version__})
        if problems:
            raise FeredgeError(f"{self.path}: engine was built elsewhere ({'; '.join(problems)}); "
                               "rebuild it with `feredge export --engine` on this machine")

    def input_spec(self) -> TensorSpec:
        return TensorSpec(self.input_name, tuple(self.engine.get_tensor_shape(self.input_name)), "float32")

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self.cuda.free(ptr)
            ptr = self.cuda.alloc(nbytes)
            self._buffers[name] = (ptr, nbytes)
            self.context.set_tensor_address(name, ptr)
        return ptr

    def _pinned(self, name: str, shape: tuple) -> np.ndarray:
        """A pinned host staging array of at least ``shape`` (async copies need page-locked memory)."""
        size = int(np.prod(shape))
        buf = self._host.get(name)
        if buf is None or buf.size < size:
            buf = self.cuda.pinned((max(size, 1),), np.float32)
            self._host[name] = buf
        return buf[:size].reshape(shape)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) > self.max_batch:
            raise FeredgeError(f"batch of {len(batch)} exceeds the engine's profile maximum {self.max_batch}")
        staged = self._pinned(self.input_name, batch.shape)
        staged[:] = batch
        self.context.set_input_shape(self.input_name, batch.shape)
        out = self._pinned(self.output_name, tuple(self.context.get_tensor_shape(self.output_name)))
        inp = self._buffer(self.input_name, staged.nbytes)
        outp = self._buffer(self.output_name, out.nbytes)
        self.cuda.htod(inp, staged, self.stream)
        if not self.context.execute_async_v3(self.cuda.stream_handle(self.stream)):
            raise FeredgeError(f"{self.path}: TensorRT execution failed")
        self.cuda.dtoh(out, outp, self.stream)
        self.cuda.synchronize(self.stream)
        return out.copy()

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cuda.free(ptr)
        self._buffers.clear()
        self.context = self.engine = None
