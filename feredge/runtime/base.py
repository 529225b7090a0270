"""The runner interface shared by TensorRT, ONNX Runtime and torch backends (Polygraphy-style)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feredge.artifact import Artifact
from feredge.errors import FeredgeError, absent

BACKENDS = ("trt", "ort", "torch")
SUFFIX_TO_BACKEND = {".onnx": "ort", ".engine": "trt", ".plan": "trt", ".safetensors": "torch"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # -1 or a string for dynamic axes
    dtype: str


class Runner(ABC):
    """Load once, then ``infer(batch) -> logits`` many times; ``close()`` frees device memory.

    What callers may rely on, declared here rather than probed with getattr:
    ``info`` the artifact's validated description (classes, input spec, precision, …);
    ``max_batch`` the largest batch one ``infer``/``bind`` takes (an engine's profile maximum);
    ``gpu_io`` whether ``bind``/``enqueue`` hand out device pointers (the GPU pipeline needs that);
    ``capturable`` whether ``enqueue`` runs on the caller's stream, so a CUDA graph can hold it.
    """

    backend: str = ""
    gpu_io: bool = False
    capturable: bool = False

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FeredgeError(f"{self.path}: {absent(self.path, 'a model file', 'model file not found')}")
        self.info: Artifact
        self.max_batch: int = 256

    @abstractmethod
    def input_spec(self) -> TensorSpec: ...

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW batch → float32 (N, classes) logits."""

    def infer_all(self, x: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Infer any number of inputs: chunks of a fixed batch axis (zero-padded at the end), else of
        ``chunk`` capped at ``max_batch``."""
        fixed = self.input_spec().shape[0]
        step = fixed if isinstance(fixed, int) and fixed > 0 else max(1, min(chunk, self.max_batch))
        outs = []
        for start in range(0, len(x), step):
            part = x[start:start + step]
            if isinstance(fixed, int) and fixed > 0 and len(part) < fixed:
                part = np.concatenate([part, np.zeros((fixed - len(part), *part.shape[1:]), part.dtype)])
            outs.append(self.infer(part)[:min(step, len(x) - start)])
        return np.concatenate(outs)

    def warmup(self, batch: int = 1, iterations: int = 10) -> float:
        """Run ``iterations`` dummy inferences; returns the seconds spent (lazy init happens here)."""
        shape = [batch if not isinstance(d, int) or d < 0 else d for d in self.input_spec().shape]
        shape[0] = batch
        x = np.zeros(shape, np.float32)
        t0 = time.perf_counter()
        for _ in range(iterations):
            self.infer(x)
        return time.perf_counter() - t0

    def close(self) -> None:  # noqa: B027 - a hook: runners holding device memory override it
        """Release resources (default: nothing to release)."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
