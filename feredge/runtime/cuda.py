"""GPU memory, streams and events through pycuda (the design's choice) or cuda-python as fallback.

Both are imported lazily; the rest of feredge sees only the small ``CudaApi`` surface below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import lru_cache

import numpy as np

from feredge.errors import FeredgeError


class CudaApi(ABC):
    """Device buffers, pinned host buffers, async copies and streams: all the runtime needs from CUDA."""

    name = ""

    @abstractmethod
    def alloc(self, nbytes: int) -> int: ...

    @abstractmethod
    def free(self, ptr: int) -> None: ...

    @abstractmethod
    def pinned(self, shape: tuple, dtype) -> np.ndarray: ...

    @abstractmethod
    def stream(self): ...

    @abstractmethod
    def stream_handle(self, stream) -> int: ...

    @abstractmethod
    def htod(self, dst: int, src: np.ndarray, stream) -> None: ...

    @abstractmethod
    def dtoh(self, dst: np.ndarray, src: int, stream) -> None: ...

    @abstractmethod
    def synchronize(self, stream) -> None: ...

    @abstractmethod
    def identity(self) -> tuple[str, str]: ...


class PycudaApi(CudaApi):
    name = "pycuda"

    def __init__(self):
        import pycuda.autoinit  # noqa: F401  (creates the context on device 0)
        import pycuda.driver as drv

        self.drv = drv
        self._allocs: dict[int, object] = {}

    def alloc(self, nbytes: int) -> int:
        mem = self.drv.mem_alloc(max(nbytes, 1))
        self._allocs[int(mem)] = mem
        return int(mem)

    def free(self, ptr: int) -> None:
        self._allocs.pop(ptr).free()

    def pinned(self, shape: tuple, dtype) -> np.ndarray:
        return self.drv.pagelocked_empty(shape, dtype)

    def stream(self):
        return self.drv.Stream()

    def stream_handle(self, stream) -> int:
        return stream.handle

    def htod(self, dst: int, src: np.ndarray, stream) -> None:
        self.drv.memcpy_htod_async(dst, src, stream)

    def dtoh(self, dst: np.ndarray, src: int, stream) -> None:
        self.drv.memcpy_dtoh_async(dst, src, stream)

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def identity(self) -> tuple[str, str]:
        dev = self.drv.Context.get_device()
        major, minor = dev.compute_capability()
        return dev.name(), f"{major}.{minor}"


def _check(result):
    """cuda-python returns (err, *values); raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise FeredgeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


class CudaPythonApi(CudaApi):
    name = "cuda-python"

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6 layout
        self.rt = cudart

    def alloc(self, nbytes: int) -> int:
        return int(_check(self.rt.cudaMalloc(max(nbytes, 1))))

    def free(self, ptr: int) -> None:
        _check(self.rt.cudaFree(ptr))

    def pinned(self, shape: tuple, dtype) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = int(_check(self.rt.cudaMallocHost(nbytes)))
        import ctypes

        buf = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(buf, dtype=dtype).reshape(shape)

    def stream(self):
        return _check(self.rt.cudaStreamCreate())

    def stream_handle(self, stream) -> int:
        return int(stream)

    def htod(self, dst: int, src: np.ndarray, stream) -> None:
        _check(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes,
                                       self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def dtoh(self, dst: np.ndarray, src: int, stream) -> None:
        _check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes,
                                       self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def synchronize(self, stream) -> None:
        _check(self.rt.cudaStreamSynchronize(stream))

    def identity(self) -> tuple[str, str]:
        props = _check(self.rt.cudaGetDeviceProperties(0))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00"), f"{props.major}.{props.minor}"


@lru_cache(maxsize=1)
def cuda_api(prefer: str = "pycuda") -> CudaApi:
    """pycuda when installed, else cuda-python; an actionable error when neither is."""
    order = [PycudaApi, CudaPythonApi] if prefer == "pycuda" else [CudaPythonApi, PycudaApi]
    errors = []
    for cls in order:
        try:
            return cls()
        except ImportError as exc:
            errors.append(f"{cls.name}: {exc}")
    raise FeredgeError("GPU runtime needs pycuda (pip install 'feredge[gpu]') or cuda-python "
                       f"(pip install 'feredge[gpu-fallback]'): {'; '.join(errors)}")


def device_identity() -> tuple[str, str]:
    return cuda_api().identity()
