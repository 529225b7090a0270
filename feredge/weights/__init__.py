"""The shipped models: trained weights, their descriptions and model cards live here, by model name."""

from __future__ import annotations

from pathlib import Path

from feredge.config import DEFAULT_MODEL
from feredge.errors import FeredgeError

WEIGHTS_DIR = Path(__file__).resolve().parent
_SUFFIX = {"onnx": ".onnx", "checkpoint": ".safetensors"}
#: What `resolve` takes for ``precision``: one of a shipped model's files, or auto (see `pick_precision`).
PRECISION_CHOICES = ("auto", "fp32", "fp16", "int8")
#: A shipped model's ONNX file per precision, named as `feredge export` names them (FORMATS in
#: feredge/export/exporter.py); int8 is the CPU flavour: the TensorRT Q/DQ file is built per GPU, not shipped.
ONNX_SUFFIX = {"fp32": ".onnx", "fp16": ".fp16.onnx", "int8": ".int8-cpu.onnx"}
#: Shipped models whose CPU INT8 file is their CPU default: it lost at most 0.1 points against fp32 on FER2013
#: PublicTest and on the real photos' tune half (top-1 and mean-class; README, "Export and INT8", 2026-12-07).
#: feredge-s is not: 0.24 points of mean-class lost on the tune half.
CPU_INT8_DEFAULT: frozenset[str] = frozenset({"feredge-n"})


def shipped_names() -> list[str]:
    """Models whose trained files ship with this install."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def shipped(name: str, kind: str = "onnx", precision: str = "fp32") -> Path:
    """The shipped ONNX (runtime, at ``precision``) or checkpoint (torch) of model ``name``."""
    suffix = ONNX_SUFFIX[precision] if kind == "onnx" else _SUFFIX[kind]
    path = WEIGHTS_DIR / f"{name}{suffix}"
    if not path.is_file():
        have = ", ".join(shipped_names()) or "none"
        if precision != "fp32" and (WEIGHTS_DIR / f"{name}{_SUFFIX[kind]}").is_file():
            have = ", ".join(p for p in ONNX_SUFFIX if (WEIGHTS_DIR / f"{name}{ONNX_SUFFIX[p]}").is_file())
            raise FeredgeError(f"{name}: no shipped {precision} file (shipped precisions: {have}); export one with "
                               "`feredge export` and pass its path")
        raise FeredgeError(f"{name}: no shipped {kind} of that name (shipped models: {have}); pass a file path instead")
    return path


def pick_precision(name: str, device: str = "cpu") -> str:
    """What auto means for shipped model ``name`` on ``device``: on a CPU its INT8 file where that is its CPU
    default and ONNX Runtime's integer kernels run it exactly here (7-bit weights, or a CPU with VNNI),
    else fp32; on a GPU fp16 where shipped, else fp32 (TensorRT engines are built from the checkpoint)."""
    if device.startswith("cuda"):
        return "fp16" if (WEIGHTS_DIR / f"{name}{ONNX_SUFFIX['fp16']}").is_file() else "fp32"
    int8 = WEIGHTS_DIR / f"{name}{ONNX_SUFFIX['int8']}"
    if name not in CPU_INT8_DEFAULT or not int8.is_file():
        return "fp32"
    from feredge import artifact
    from feredge.ort_session import int8_kernels_saturate, narrow_weights

    return "int8" if narrow_weights(artifact.read(int8)) or not int8_kernels_saturate() else "fp32"


def resolve(model: str | Path | None, kind: str = "onnx", precision: str = "fp32", device: str = "cpu") -> Path:
    """A --model value: an existing file as given, a shipped model's name, or (None) the default model.

    ``precision`` picks among a shipped model's ONNX files (PRECISION_CHOICES; auto: `pick_precision` for
    ``device``, "cpu" or "cuda…"). A file path is used as given, since its description names its precision:
    asking a path for fp16 or int8 is refused rather than silently ignored."""
    if precision not in PRECISION_CHOICES:
        raise FeredgeError(f"precision {precision!r}: expected one of {', '.join(PRECISION_CHOICES)}")
    if kind != "onnx" and precision not in ("auto", "fp32"):
        raise FeredgeError(f"precision {precision}: only ONNX files come in precisions; a {kind} is fp32")
    if model is not None:
        path = Path(model)
        if path.exists() or path.suffix:
            if precision not in ("auto", "fp32"):
                raise FeredgeError(f"{path}: precision {precision} picks among a shipped model's files; a file is "
                                   f"used as given (pass the {precision} file itself, e.g. <name>"
                                   f"{ONNX_SUFFIX[precision]})")
            return path
    name = DEFAULT_MODEL if model is None else str(model)
    if kind == "onnx" and precision == "auto":
        shipped(name, kind)  # an unknown name is reported as such, not as a missing precision
        precision = pick_precision(name, device)
    return shipped(name, kind, "fp32" if precision == "auto" else precision)


def default_checkpoint() -> Path:
    """Path of the shipped default checkpoint (used when no model is named)."""
    return shipped(DEFAULT_MODEL, "checkpoint")
