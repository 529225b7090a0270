"""GPU memory, streams, kernels and graphs through pycuda (the design's choice) or cuda-python as fallback.

Both are imported lazily; the rest of feredge sees only the small ``CudaApi`` surface below. Both work in
the device's primary context, the one TensorRT, torch and the CUDA runtime API use, so device pointers
pass freely between them.
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

    @abstractmethod
    def integrated(self) -> bool:
        """True on GPUs that share DRAM with the CPU (Jetson): mapped host memory then needs no copy."""

    @abstractmethod
    def mapped(self, shape: tuple, dtype) -> tuple[np.ndarray, int]:
        """A pinned host array mapped into the device address space, and its device pointer."""

    @abstractmethod
    def kernel(self, image: bytes, name: str):
        """Load a cubin/fatbin/PTX image and return the named kernel (raises on no matching binary)."""

    @abstractmethod
    def launch(self, fn, grid: tuple[int, int, int], block: tuple[int, int, int], args: list, stream) -> None:
        """Launch ``fn`` with ``args`` (typed NumPy scalars, in the kernel's order) on ``stream``."""

    @abstractmethod
    def timed(self, stream, work) -> float:
        """Milliseconds of GPU time ``work()`` enqueues on ``stream``, measured by CUDA events."""

    def capture(self, stream, work) -> CudaGraph:
        """Record ``work()`` (async calls on ``stream``) into a CUDA graph; both APIs go through cuda.bindings
        because pycuda has no stream-capture API."""
        rt = _runtime()
        handle = self.stream_handle(stream)
        _check(rt.cudaStreamBeginCapture(handle, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        try:
            work()
        finally:
            graph = _check(rt.cudaStreamEndCapture(handle))
        return CudaGraph(rt, _check(rt.cudaGraphInstantiate(graph, 0)), graph)


class CudaGraph:
    """An instantiated CUDA graph: replays the captured copies, kernels and inference in one launch."""

    def __init__(self, rt, executable, graph):
        self.rt, self.executable, self.graph = rt, executable, graph

    def launch(self, stream_handle: int) -> None:
        _check(self.rt.cudaGraphLaunch(self.executable, stream_handle))

    def close(self) -> None:
        _check(self.rt.cudaGraphExecDestroy(self.executable))
        _check(self.rt.cudaGraphDestroy(self.graph))


def _runtime():
    """cuda.bindings.runtime (cuda-python ≥ 12.6 layout, else the older ``cuda.cudart``)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            raise ImportError("cuda-python is not installed (pip install 'feredge[gpu-fallback]')") from None
    return runtime


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError:
        from cuda import cuda as driver
    return driver


def kernel_params(args: list) -> tuple[np.ndarray, list[np.ndarray]]:
    """cuLaunchKernel's ``kernelParams``: an array of pointers, one to each argument's bytes.

    Returns the pointer array and the argument buffers, which must stay alive until the launch returns.
    """
    values = [np.array([a], dtype=np.asarray(a).dtype) for a in args]
    return np.array([v.ctypes.data for v in values], dtype=np.uint64), values


class PycudaApi(CudaApi):
    name = "pycuda"

    def __init__(self):
        import pycuda.autoprimaryctx  # noqa: F401  (retains device 0's primary context)
        import pycuda.driver as drv

        self.drv = drv
        self._allocs: dict[int, object] = {}
        self._modules: list = []  # a module must outlive its functions

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
        return 0 if stream is None else stream.handle

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

    def timed(self, stream, work) -> float:
        start, end = self.drv.Event(), self.drv.Event()
        start.record(stream)
        work()
        end.record(stream)
        end.synchronize()
        return end.time_since(start)

    def integrated(self) -> bool:
        return bool(self.drv.Context.get_device().get_attribute(self.drv.device_attribute.INTEGRATED))

    def mapped(self, shape: tuple, dtype) -> tuple[np.ndarray, int]:
        arr = self.drv.pagelocked_empty(shape, dtype, mem_flags=self.drv.host_alloc_flags.DEVICEMAP)
        return arr, int(arr.base.get_device_pointer())

    def kernel(self, image: bytes, name: str):
        try:
            module = self.drv.module_from_buffer(image)
        except self.drv.Error as exc:
            raise KernelImageError(str(exc)) from None
        self._modules.append(module)
        return module.get_function(name)

    def launch(self, fn, grid, block, args, stream) -> None:
        fn(*args, block=tuple(block), grid=tuple(grid[:2]), stream=stream)


class KernelImageError(FeredgeError):
    """The kernel image holds no code this GPU can run (the caller then compiles with NVRTC)."""


def _host_array(ptr: int, shape: tuple, dtype) -> np.ndarray:
    """A NumPy view of host memory allocated by CUDA (freed with the process)."""
    import ctypes

    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_byte * max(nbytes, 1)).from_address(ptr), dtype=dtype, count=int(np.prod(shape))
                         ).reshape(shape)


def _check(result):
    """cuda-python returns (err, *values); raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise FeredgeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


class CudaPythonApi(CudaApi):
    name = "cuda-python"

    def __init__(self):
        self.rt = _runtime()
        self.drv = _driver()
        _check(self.rt.cudaFree(0))  # initialises and makes current the primary context of device 0
        self._modules: list = []

    def alloc(self, nbytes: int) -> int:
        return int(_check(self.rt.cudaMalloc(max(nbytes, 1))))

    def free(self, ptr: int) -> None:
        _check(self.rt.cudaFree(ptr))

    def pinned(self, shape: tuple, dtype) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return _host_array(int(_check(self.rt.cudaMallocHost(max(nbytes, 1)))), shape, dtype)

    def stream(self):
        return _check(self.rt.cudaStreamCreate())

    def stream_handle(self, stream) -> int:
        return 0 if stream is None else int(stream)

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

    def timed(self, stream, work) -> float:
        start, end = _check(self.rt.cudaEventCreate()), _check(self.rt.cudaEventCreate())
        _check(self.rt.cudaEventRecord(start, self.stream_handle(stream)))
        work()
        _check(self.rt.cudaEventRecord(end, self.stream_handle(stream)))
        _check(self.rt.cudaEventSynchronize(end))
        ms = float(_check(self.rt.cudaEventElapsedTime(start, end)))
        _check(self.rt.cudaEventDestroy(start))
        _check(self.rt.cudaEventDestroy(end))
        return ms

    def integrated(self) -> bool:
        return bool(_check(self.rt.cudaDeviceGetAttribute(self.rt.cudaDeviceAttr.cudaDevAttrIntegrated, 0)))

    def mapped(self, shape: tuple, dtype) -> tuple[np.ndarray, int]:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = int(_check(self.rt.cudaHostAlloc(max(nbytes, 1), self.rt.cudaHostAllocMapped)))
        device_ptr = int(_check(self.rt.cudaHostGetDevicePointer(ptr, 0)))
        return _host_array(ptr, shape, dtype), device_ptr

    def kernel(self, image: bytes, name: str):
        err, module = self.drv.cuModuleLoadData(image)
        if int(err) != 0:
            raise KernelImageError(f"cuModuleLoadData: CUDA error {err}")
        self._modules.append(module)
        return _check(self.drv.cuModuleGetFunction(module, name.encode()))

    def launch(self, fn, grid, block, args, stream) -> None:
        params, values = kernel_params(args)  # ``values`` holds the bytes the pointers name until the call returns
        _check(self.drv.cuLaunchKernel(fn, *grid, *block, 0, self.stream_handle(stream), params.ctypes.data, 0))


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
