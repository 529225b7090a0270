"""ONNX Runtime runner: CPU everywhere, CUDA execution provider when onnxruntime-gpu is installed.

Besides ``infer(host batch)``, ``bind(batch)`` + ``enqueue(stream)`` run the model on buffers the runner
owns, through ONNX Runtime's I/O binding: on the CUDA provider those are device buffers, so the GPU
pipeline's pre-processing kernel writes straight into the model input, as it does for TensorRT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.artifact import from_onnx_properties
from feredge.config import MAX_BATCH, THREADS
from feredge.errors import FeredgeError
from feredge.runtime.base import Runner, TensorSpec
from feredge.runtime.ort_session import int8_kernels_saturate, narrow_weights, session_options

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OrtRunner(Runner):
    backend = "ort"

    def __init__(self, path: Path, device: str = "cpu", threads: int = THREADS, exact_qdq: bool | None = None,
                 max_batch: int = MAX_BATCH):
        """``exact_qdq`` runs Q/DQ nodes as written instead of ONNX Runtime's fused int8 kernels; by default
        only on CPUs where those clip (``feredge.runtime.ort_session``), so an INT8 file answers alike everywhere.
        ``max_batch`` bounds ``bind`` for a dynamic batch axis (buffers are sized for it once)."""
        super().__init__(path)
        ort = require("onnxruntime")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise FeredgeError(f"device {device}: this onnxruntime has no CUDA execution provider "
                                   "(pip install onnxruntime-gpu, or run on cpu)")
            providers.insert(0, "CUDAExecutionProvider")
        self.session = self._open(ort, exact_qdq, False, threads, providers)
        self.info = from_onnx_properties(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        if exact_qdq is None and narrow_weights(self.info) and int8_kernels_saturate():
            # a CPU INT8 file with 7-bit weights is exact in the fused kernels here too: reopen it with them
            self.session = self._open(ort, None, True, threads, providers)
        self.providers = self.session.get_providers()
        self._input, self._output = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self._check_graph()
        self._init_io(max_batch)

    def _open(self, ort, exact_qdq: bool | None, narrow: bool, threads: int, providers: list[str]):
        options = session_options(exact_qdq, narrow)
        if threads:
            options.intra_op_num_threads = threads
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # ORT raises its own types (InvalidProtobuf, InvalidGraph, Fail, …)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise FeredgeError(f"{self.path}: ONNX Runtime cannot load this file as an ONNX model "
                               f"({first[:200]})") from None

    def _check_graph(self) -> None:
        """The graph must take what its description promises and output one score per class."""
        spec = self.info.input_spec
        want = (spec.channels, spec.size, spec.size)
        got = tuple(self._input.shape[1:])
        if len(self._input.shape) != 4 or any(isinstance(g, int) and g != w for g, w in zip(got, want)):
            raise FeredgeError(f"{self.path}: input '{self._input.name}' has shape {list(self._input.shape)}, "
                               f"but its input_spec says [N, {', '.join(map(str, want))}]")
        self.info.check_outputs(self._output.shape[-1], str(self.path))

    def _init_io(self, max_batch: int) -> None:
        """Shapes and dtypes for device-level binding, read from the graph."""
        fixed = self._input.shape[0]
        self.max_batch = fixed if isinstance(fixed, int) and fixed > 0 else max_batch
        self.item_shape = tuple(self._input.shape[1:])
        self.classes = self._output.shape[-1]
        self.input_dtype = np.dtype(_ORT_DTYPES.get(self._input.type, np.float32))
        self.output_dtype = np.dtype(_ORT_DTYPES.get(self._output.type, np.float32))
        self.gpu_io = "CUDAExecutionProvider" in self.providers  # bind() hands out device pointers
        # capturable stays False: ONNX Runtime launches on its own stream, which a graph of ours cannot hold
        self.cuda = self.stream = None
        if self.gpu_io:
            from feredge.cuda import cuda_api

            self.cuda = cuda_api()
            self.stream = self.cuda.stream()
        self._binding = self.session.io_binding()
        self._buffers: dict[str, int | np.ndarray] = {}

    def _check_bindable(self) -> None:
        """Fixed-size buffers need every axis but the batch to be static, and float tensors."""
        for name, value in (("input", self._input), ("output", self._output)):
            if value.type not in _ORT_DTYPES:
                raise FeredgeError(f"{self.path}: {name} '{value.name}' is {value.type}, expected float or float16")
        if not all(isinstance(d, int) for d in (*self.item_shape, self.classes)):
            raise FeredgeError(f"{self.path}: only the batch axis may be dynamic, got input {self._input.shape} "
                               f"and output {self._output.shape}")

    def input_spec(self) -> TensorSpec:
        return TensorSpec(self._input.name, tuple(self._input.shape), self._input.type)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self._input.name: np.ascontiguousarray(batch, dtype=self.input_dtype)})[0]
        return out.astype(np.float32, copy=False)

    def _buffer(self, name: str, nbytes: int) -> int:
        """The address of a buffer for ``name`` sized for ``max_batch``: device memory on CUDA, host otherwise."""
        if name not in self._buffers:
            self._buffers[name] = self.cuda.alloc(nbytes) if self.gpu_io else np.zeros(nbytes, np.uint8)
        buf = self._buffers[name]
        return buf if isinstance(buf, int) else buf.ctypes.data

    def bind(self, batch: int) -> tuple[int, int]:
        """Bind a batch of ``batch`` and return the (input, output) addresses, fixed for the runner's life."""
        if not 1 <= batch <= self.max_batch:
            raise FeredgeError(f"batch of {batch} is outside 1..{self.max_batch} (raise the runner's max_batch)")
        if not self._buffers:
            self._check_bindable()
        place = ("cuda", 0) if self.gpu_io else ("cpu", 0)
        item = int(np.prod(self.item_shape))
        inp = self._buffer(self._input.name, self.max_batch * item * self.input_dtype.itemsize)
        out = self._buffer(self._output.name, self.max_batch * self.classes * self.output_dtype.itemsize)
        self._binding.bind_input(self._input.name, *place, self.input_dtype.type, [batch, *self.item_shape], inp)
        self._binding.bind_output(self._output.name, *place, self.output_dtype.type, [batch, self.classes], out)
        return inp, out

    def enqueue(self, stream) -> None:
        """Run over what ``bind`` set up. ONNX Runtime has its own stream, so the caller's work on ``stream``
        (the kernel writing the input) must finish first; the run returns with the outputs written."""
        if self.gpu_io:
            self.cuda.synchronize(stream)
        self.session.run_with_iobinding(self._binding)

    def close(self) -> None:
        for buf in self._buffers.values():
            if isinstance(buf, int):
                self.cuda.free(buf)
        self._buffers.clear()
        self.session = self._binding = None

