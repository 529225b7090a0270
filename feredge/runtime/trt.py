"""TensorRT engine runner: set_tensor_address + execute_async_v3, dynamic batch via the profile.

Two ways in: ``infer(host batch)`` (pinned staging, async copies), or ``bind(batch)`` + ``enqueue(stream)``
for the GPU pipeline, whose pre-processing kernel writes straight into the engine's input buffer.

Runs engines of the regular TensorRT and of TensorRT for RTX (the flavour named in the sidecar). Neither has
run on a GPU yet (see README, "Verified on"). Before deserialising, the plan is checked against its sidecar
(a truncated or altered file is refused), a GPU must be usable, and the engine's key must fit this machine:
the regular TensorRT's GPU and version, or one of TensorRT for RTX's architectures and its exact version.
TensorRT for RTX compiles kernels for this GPU when it first runs: its runtime cache is kept beside the
engine, one file per GPU, driver and version, so the next start skips that.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from feredge import artifact
from feredge.cuda import CudaApi, cuda_api
from feredge.engine.tensorrt import REGULAR, RTX_ARCHS, load
from feredge.errors import FeredgeError
from feredge.runtime.base import Runner, TensorSpec


def check_plan_file(path: Path, details: dict) -> None:
    """A plan whose size or sha256 differs from what its builder recorded is refused before TensorRT reads it."""
    size, sha = details.get("size_bytes"), details.get("sha256")
    actual = path.stat().st_size
    if isinstance(size, int) and actual != size:
        raise FeredgeError(f"{path}: {actual} bytes, but its sidecar records {size} (truncated or replaced?); "
                           "rebuild it with `feredge export --engine`")
    if isinstance(sha, str) and artifact.file_sha256(path) != sha:
        raise FeredgeError(f"{path}: its sha256 differs from the one its sidecar records (altered?); rebuild it "
                           "with `feredge export --engine`")


def usable_gpu(path: Path) -> CudaApi:
    """The CUDA layer, or one line saying an engine needs a GPU (no driver here is the common case)."""
    try:
        return cuda_api()
    except Exception as exc:  # pycuda raises its own types without a driver, cuda-python a FeredgeError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if re.search(r"InsufficientDriver|NoDevice|no CUDA-capable|cuInit", reason):
            reason = "no NVIDIA GPU or driver found"
        raise FeredgeError(f"{path}: a TensorRT engine runs only on an NVIDIA GPU, and none is usable here "
                           f"({reason}); on this machine use the .onnx exported beside it") from None


def driver_version(cuda: CudaApi) -> str:
    """The CUDA version the driver supports, e.g. 13000 → "13.0" (part of the runtime cache's key)."""
    try:
        if cuda.name == "pycuda":
            import pycuda.driver as drv

            code = int(drv.get_driver_version())
        else:
            from cuda.bindings import runtime as rt

            err, code = rt.cudaDriverGetVersion()
            code = int(code)
    except Exception:  # any API that cannot tell: the cache is then keyed without it
        return "unknown"
    return f"{code // 1000}.{code % 1000 // 10}"


class TrtRunner(Runner):
    backend = "trt"
    gpu_io = True  # bind() hands out device pointers

    def __init__(self, path: Path, device: str = "cuda"):
        super().__init__(path)
        self.info = artifact.read(self.path)
        if self.info.kind != "engine":
            raise FeredgeError(f"{self.path}: is described as {self.info.kind!r}, not as a TensorRT engine; the trt "
                               "backend runs .engine files (`feredge export --engine` builds them)")
        key = self.info.engine_key or {}
        check_plan_file(self.path, self.info.details)
        self.cuda = usable_gpu(self.path)
        self.found = load(str(key.get("flavour", REGULAR)), f"{self.path}")
        trt = self.found.module
        self.gpu_name, self.cc = self.cuda.identity()
        if self.found.rtx:
            self._check_rtx_key(key)
        else:
            self._check_key()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        data = self.path.read_bytes()
        if self.found.rtx:
            self._check_validity(trt, data)
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise FeredgeError(f"{self.path}: TensorRT could not deserialise this engine (built with another "
                               "TensorRT version or GPU?); rebuild it with `feredge export --engine` here")
        self.runtime_cache_path: Path | None = None
        self.context = self._rtx_context(trt) if self.found.rtx else self.engine.create_execution_context()
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

    @property
    def capturable(self) -> bool:  # type: ignore[override]
        """execute_async_v3 on the caller's stream can be captured into a CUDA graph; TensorRT for RTX says per
        context and stream once shapes are bound (its engines are built with REQUIRE_USER_ALLOCATION, which
        capture needs); before that it cannot tell, and callers ask again after their warm-up run."""
        if not self.found.rtx or not self._buffers:
            return True
        return bool(self.context.is_stream_capturable(self.cuda.stream_handle(self.stream)))

    def _check_key(self) -> None:
        self.info.check_engine_key({"gpu_name": self.gpu_name, "compute_capability": self.cc,
                                    "tensorrt": self.found.version}, str(self.path))

    def _check_rtx_key(self, key: dict) -> None:
        """This GPU's architecture among the engine's, and the same TensorRT-for-RTX version."""
        archs = [str(a) for a in key.get("compute_capabilities", [])]
        if self.cc not in archs:
            listed = ", ".join("sm" + a.replace(".", "") for a in archs) or "none"
            fix = (f"rebuild it with `feredge export --engine --gpu-arch sm{self.cc.replace('.', '')}`"
                   if self.cc in RTX_ARCHS else "TensorRT for RTX does not target this GPU: build with the regular "
                   "TensorRT on it")
            raise FeredgeError(f"{self.path}: built for {listed}; this GPU ({self.gpu_name}) is "
                               f"sm{self.cc.replace('.', '')}: {fix}")
        if key.get("tensorrt") != self.found.version:
            raise FeredgeError(f"{self.path}: built with TensorRT for RTX {key.get('tensorrt')}, this is "
                               f"{self.found.version}: install that version or rebuild the engine with this one")

    def _check_validity(self, trt, data: bytes) -> None:
        """TensorRT for RTX's own verdict on the plan for this GPU, driver and runtime, before deserialising."""
        validity, diagnostics = self.runtime.get_engine_validity(data)
        if validity == trt.EngineValidity.INVALID:
            why = [name for name, flag in trt.EngineInvalidityDiagnostics.__members__.items()
                   if int(diagnostics) & int(flag)]
            raise FeredgeError(f"{self.path}: TensorRT for RTX {self.found.version} refuses this plan here "
                               f"({', '.join(why) or 'no reason given'}); rebuild it with `feredge export --engine`")

    def _rtx_context(self, trt):
        """An execution context whose runtime cache is read from, and saved to, a file beside the engine."""
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-").lower()
        self.runtime_cache_path = self.path.with_name(
            f"{self.path.name}.{gpu}-sm{self.cc.replace('.', '')}-cuda{driver_version(self.cuda)}"
            f"-rtx{self.found.version}.runtime-cache")
        self.runtime_config = self.engine.create_runtime_config()
        # Specialised kernels compile at the first run of each shape (not in the background), so a CUDA graph
        # captured after that warm-up holds them rather than the fallback ones.
        self.runtime_config.dynamic_shapes_kernel_specialization_strategy = \
            trt.DynamicShapesKernelSpecializationStrategy.EAGER
        self.runtime_cache = self.runtime_config.create_runtime_cache()
        if self.runtime_cache_path.is_file():
            self.runtime_cache.deserialize(self.runtime_cache_path.read_bytes())  # False: stale, rebuilt as we go
        self.runtime_config.set_runtime_cache(self.runtime_cache)
        return self.engine.create_execution_context(self.runtime_config)

    def save_runtime_cache(self) -> Path | None:
        """Write the kernels compiled so far beside the engine (TensorRT for RTX; a no-op otherwise)."""
        if self.runtime_cache_path is None or self.context is None:
            return None
        try:
            return artifact.atomic_write_bytes(self.runtime_cache_path, bytes(self.runtime_cache.serialize()))
        except OSError:  # a read-only model folder: the cache only saves time
            return None

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
        self.save_runtime_cache()
        for ptr, _ in self._buffers.values():
            self.cuda.free(ptr)
        self._buffers.clear()
        self.context = self.engine = None
