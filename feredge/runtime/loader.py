"""Choosing and opening a runner for a model file: kept apart from the Runner interface so the interface
imports none of the backends that implement it."""

from __future__ import annotations

from pathlib import Path

from feredge.errors import FeredgeError, absent
from feredge.runtime.base import BACKENDS, SUFFIX_TO_BACKEND, Runner


def backend_for(path: Path) -> str | None:
    """The backend a file's type implies (.onnx → ort, .engine/.plan → trt, .safetensors → torch)."""
    return SUFFIX_TO_BACKEND.get(Path(path).suffix)


def load_runner(path: Path, backend: str | None = None, **kwargs) -> Runner:
    """Pick a runner by ``backend`` or by the file type (.onnx → ONNX Runtime, .engine → TensorRT)."""
    path = Path(path)
    backend = backend or backend_for(path)
    if backend is None and (path.is_dir() or path.is_symlink() and not path.exists()):  # whatever its suffix
        raise FeredgeError(f"{path}: {absent(path, 'a model file (.onnx, .engine, .safetensors)')}")
    if backend is None:
        raise FeredgeError(f"{path}: cannot tell the backend from the suffix '{path.suffix}'; expected a model "
                           "file ending in " + ", ".join(sorted(SUFFIX_TO_BACKEND)))
    if backend == "ort":
        from feredge.runtime.ort import OrtRunner

        return OrtRunner(path, **kwargs)
    if backend == "trt":
        from feredge.runtime.trt import TrtRunner

        return TrtRunner(path, **kwargs)
    if backend == "torch":
        from feredge.runtime.torch_runner import TorchRunner

        return TorchRunner(path, **kwargs)
    raise FeredgeError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
