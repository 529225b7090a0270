"""The shipped models: trained weights, their descriptions and model cards live here, by model name."""

from __future__ import annotations

from pathlib import Path

from feredge.config import DEFAULT_MODEL
from feredge.errors import FeredgeError

WEIGHTS_DIR = Path(__file__).resolve().parent
_SUFFIX = {"onnx": ".onnx", "checkpoint": ".safetensors"}


def shipped_names() -> list[str]:
    """Models whose trained files ship with this install."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def shipped(name: str, kind: str = "onnx") -> Path:
    """The shipped ONNX (runtime) or checkpoint (torch) of model ``name``."""
    path = WEIGHTS_DIR / f"{name}{_SUFFIX[kind]}"
    if not path.is_file():
        have = ", ".join(shipped_names()) or "none"
        raise FeredgeError(f"{name}: no shipped {kind} of that name (shipped models: {have}); pass a file path instead")
    return path


def resolve(model: str | Path | None, kind: str = "onnx") -> Path:
    """A --model value: an existing file as given, a shipped model's name, or (None) the default model."""
    if model is None:
        return shipped(DEFAULT_MODEL, kind)
    path = Path(model)
    if path.exists() or path.suffix:
        return path
    return shipped(str(model), kind)


def default_checkpoint() -> Path:
    """Path of the shipped default checkpoint (used when no model is named)."""
    return shipped(DEFAULT_MODEL, "checkpoint")


def shipped_rows() -> list[dict]:
    """`feredge models` rows of the shipped models from their descriptions and cards: no torch needed."""
    import json

    from feredge.artifact import read

    rows = []
    for name in shipped_names():
        info = read(shipped(name, "onnx"))
        card = json.loads((WEIGHTS_DIR / f"{name}.card.json").read_text())
        s = info.input_spec
        rows.append({"name": name, "input": f"{s.channels}x{s.size}x{s.size}", "params": int(card["params"]),
                     "gflops": float(card["gflops_macs"]), "heads": {"emotion": len(info.classes)},
                     "description": "shipped, trained",
                     "shipped": True})
    return rows
