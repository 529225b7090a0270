"""Choosing and opening a runner for a model: kept apart from the Runner interface so the interface imports
none of the backends that implement it. The one place a device is resolved and a backend chosen."""

from __future__ import annotations

from pathlib import Path

from feredge.config import DEVICES, PRECISION, THREADS, check_ranges
from feredge.errors import FeredgeError, absent
from feredge.runtime.base import BACKENDS, SUFFIX_TO_BACKEND, Runner


def backend_for(path: Path) -> str | None:
    """The backend a file's type implies (.onnx → ort, .engine/.plan → trt, .safetensors → torch)."""
    return SUFFIX_TO_BACKEND.get(Path(path).suffix)


def resolve_device(device: str | None, backend: str) -> str:
    """``auto``/None/"" → cuda where the backend can run there (TensorRT always; ONNX Runtime with its CUDA
    provider; torch with a CUDA build and a GPU), else cpu. Every command and the API resolve it here."""
    from feredge._optional import require

    if device not in (None, "", "auto"):
        if device not in DEVICES and not str(device).startswith("cuda:"):
            raise FeredgeError(f"device {device!r}: expected one of {', '.join(DEVICES)} or cuda:N")
        return str(device)
    if backend == "trt":
        return "cuda"
    if backend == "ort":
        return "cuda" if "CUDAExecutionProvider" in require("onnxruntime").get_available_providers() else "cpu"
    if backend == "torch":
        return "cuda" if require("torch").cuda.is_available() else "cpu"
    return "cpu"


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


def pick_precision(name: str, device: str = "cpu") -> str:
    """What auto means for shipped model ``name`` on ``device``, among the files it ships: on a GPU fp16, else
    fp32; on a CPU its INT8 file where that is its CPU default (`feredge.weights.CPU_INT8_DEFAULT`: within
    0.1 points of fp32) and ONNX Runtime's integer kernels run it exactly here (7-bit weights, or a CPU with
    VNNI), else fp32, else fp16 (a model shipped as fp16 only)."""
    from feredge import artifact
    from feredge.runtime.ort_session import int8_kernels_saturate, narrow_weights
    from feredge.weights import CPU_INT8_DEFAULT, ONNX_SUFFIX, WEIGHTS_DIR, shipped_precisions

    have = shipped_precisions(name)
    if device.startswith("cuda"):
        order = ["fp16", "fp32"]
    else:
        int8 = WEIGHTS_DIR / f"{name}{ONNX_SUFFIX['int8']}"
        exact = name in CPU_INT8_DEFAULT and int8.is_file() and (
            narrow_weights(artifact.read(int8)) or not int8_kernels_saturate())
        order = (["int8"] if exact else []) + ["fp32", "fp16"]
    return next((p for p in order if p in have), "fp32")


def model_path(model: str | Path | None, backend: str | None = None, precision: str = PRECISION,
               device: str | None = None) -> Path:
    """The file a --model value names: a file as given; a shipped name's ONNX at ``precision`` (auto:
    `pick_precision` for where it runs), or its checkpoint for the torch backend."""
    from feredge.config import DEFAULT_MODEL
    from feredge.weights import resolve, shipped, shipped_names

    if model is not None and (Path(model).exists() or Path(model).suffix):
        path = Path(model)
        if precision != "auto" and path.is_file():
            _check_file_precision(path, precision)
        return path
    if backend == "torch":
        return resolve(model, "checkpoint", "fp32" if precision == "auto" else precision)
    if precision == "auto":
        name = DEFAULT_MODEL if model is None else str(model)
        if name not in shipped_names():
            shipped(name)  # an unknown name is reported as such, not as a missing precision
        precision = pick_precision(name, resolve_device(device, backend or "ort"))
    return resolve(model, "onnx", precision)


def _check_file_precision(path: Path, precision: str) -> None:
    """A file keeps its own precision: asking it for another is refused, never silently ignored."""
    from feredge import artifact

    try:
        made = artifact.read(path).precision
    except FeredgeError:
        return  # the runner reports what is wrong with the file itself
    if made.split("-")[0] != precision:
        raise FeredgeError(f"{path}: holds a model in {made}, and precision {precision} was asked; a file is used "
                           "as it is (pass the file of that precision, or precision auto)")


def open_runner(model: str | Path | None = None, *, backend: str | None = None, device: str | None = None,
                precision: str = PRECISION, threads: int = THREADS, server: str | None = None,
                exact_qdq: bool | None = None) -> Runner:
    """The runner for a --model value (a shipped name, a file, or None: the default model), as every command
    and the API open one (`model_path` picks the file); ``server`` sends the inputs to `feredge serve` (the
    local file then only describes the model)."""
    check_ranges(threads=threads)
    path = model_path(model, backend, precision, device)
    if server is not None:
        from feredge.runtime.remote import RemoteRunner

        return RemoteRunner(path, server)
    kind = backend or backend_for(path) or ""
    kwargs: dict = {"device": resolve_device(device, kind)}
    if kind == "ort":
        kwargs.update(threads=threads, exact_qdq=exact_qdq)
    return load_runner(path, backend, **kwargs)
