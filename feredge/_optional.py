"""Lazy imports of optional, heavy dependencies with an install hint when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from feredge.errors import FeredgeError

_HINTS = {
    "torch": "pip install 'feredge[train]'",
    "torchvision": "pip install 'feredge[train]'",
    "onnx": "pip install 'feredge[export]'",
    "onnxsim": "pip install 'feredge[export]'",
    "onnxruntime": "pip install 'feredge[runtime]' (or onnxruntime-gpu)",
    "matplotlib": "pip install 'feredge[train]'",
    "safetensors": "pip install safetensors",
    "tensorrt": "install TensorRT from NVIDIA (JetPack ships it; on x86 `pip install tensorrt` from NVIDIA's index)",
    "pycuda": "pip install 'feredge[gpu]' (needs a CUDA toolkit) or use cuda-python",
    "cv2": "pip install 'feredge[runtime]'",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The install hint for an optional package a command imported without `require` (torch under the
    trainer, say); None when the missing module is not one of feredge's optional dependencies."""
    top = (exc.name or "").split(".")[0]
    if top not in _HINTS:
        return None
    return f"this needs the optional package '{top}', which is not installed; install it with: {_HINTS[top]}"


def require(module: str) -> ModuleType:
    """Import ``module`` or raise a FeredgeError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = _HINTS.get(top, f"pip install {top}")
        raise FeredgeError(f"this needs the optional package '{top}' ({exc}); install it with: {hint}") from None


def available(module: str) -> bool:
    """True when ``module`` can be imported (used to skip optional features cleanly)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
