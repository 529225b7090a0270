"""The CUDA pre-processing kernel: load the shipped fatbin, or compile its source with NVRTC.

The launch writes straight into a device buffer (the inference input), reading one device copy of the
frame that was uploaded once from pinned memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feredge.errors import FeredgeError

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
SOURCE = KERNEL_DIR / "preprocess.cu"
FATBIN = KERNEL_DIR / "feredge_preprocess.fatbin"
KERNEL_NAME = "fer_preprocess"
BLOCK = 256


@dataclass(frozen=True)
class Launch:
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    out_elements: int


def launch_config(n_boxes: int, out_size: int, channels: int, mirror: bool) -> Launch:
    """One launch: x covers a face's S×S pixels, y the N faces (2N with mirrored copies)."""
    if n_boxes < 1:
        raise FeredgeError("no face boxes to pre-process")
    faces = n_boxes * (2 if mirror else 1)
    return Launch((math.ceil(out_size * out_size / BLOCK), faces, 1), (BLOCK, 1, 1),
                  faces * channels * out_size * out_size)


def kernel_args(frame_ptr: int, width: int, height: int, pitch: int, boxes_ptr: int, n_boxes: int, margin: float,
                out_size: int, channels: int, fp16: bool, mean, std, out_ptr: int) -> list:
    """Arguments in the kernel's order, as typed NumPy scalars (mean/std padded to 3 channels)."""
    mean = list(mean) + [0.0] * (3 - len(mean))
    inv = [1.0 / s for s in std] + [1.0] * (3 - len(std))
    return [np.uintp(frame_ptr), np.int32(width), np.int32(height), np.int32(pitch), np.uintp(boxes_ptr),
            np.int32(n_boxes), np.float32(margin), np.int32(out_size), np.int32(channels), np.int32(fp16),
            *(np.float32(m) for m in mean), *(np.float32(v) for v in inv), np.uintp(out_ptr)]


def nvrtc_compile(arch: str) -> bytes:
    """Compile preprocess.cu for ``arch`` (e.g. '87') with NVRTC; returns a cubin."""
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        try:
            from cuda import nvrtc  # older cuda-python layout
        except ImportError:
            raise FeredgeError(f"no shipped kernel binary runs on sm_{arch} and compiling one needs NVRTC from "
                               "cuda-python: pip install 'feredge[gpu-fallback]'") from None
    src = SOURCE.read_bytes()
    err, prog = nvrtc.nvrtcCreateProgram(src, b"preprocess.cu", 0, [], [])
    opts = [f"--gpu-architecture=sm_{arch}".encode(), b"--std=c++17"]
    (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    if int(err) != 0:
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        text = log.decode(errors="replace").strip("\x00 \n")
        raise FeredgeError(f"NVRTC failed to compile {SOURCE.name} for sm_{arch}: {text}")
    _, size = nvrtc.nvrtcGetCUBINSize(prog)
    cubin = b" " * size
    nvrtc.nvrtcGetCUBIN(prog, cubin)
    return cubin


class GpuPreprocessor:
    """Loads the kernel once (shipped fatbin, else NVRTC for this GPU) and launches it on a stream.

    Works through either CUDA API (pycuda or cuda-python); ``source`` says where the code came from.
    """

    def __init__(self, api=None):
        from feredge.cuda import KernelImageError, cuda_api

        self.cuda = api or cuda_api()
        try:
            self.fn = self.cuda.kernel(FATBIN.read_bytes(), KERNEL_NAME)
            self.source = "fatbin"
        except (KernelImageError, FileNotFoundError):
            _, cc = self.cuda.identity()
            self.fn = self.cuda.kernel(nvrtc_compile(cc.replace(".", "")), KERNEL_NAME)
            self.source = "nvrtc"

    def __call__(self, frame_ptr: int, width: int, height: int, pitch: int, boxes_ptr: int, n_boxes: int,
                 spec, out_ptr: int, margin: float = 0.0, mirror: bool = False, fp16: bool = False,
                 stream=None) -> Launch:
        launch = launch_config(n_boxes, spec.size, spec.channels, mirror)
        args = kernel_args(frame_ptr, width, height, pitch, boxes_ptr, n_boxes, margin, spec.size, spec.channels,
                           fp16, spec.mean, spec.std, out_ptr)
        self.cuda.launch(self.fn, launch.grid, launch.block, args, stream)
        return launch
