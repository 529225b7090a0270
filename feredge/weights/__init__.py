"""The shipped default model: trained weights, their sidecar JSON and model card live here."""

from __future__ import annotations

from pathlib import Path

from feredge.errors import FeredgeError

DEFAULT_WEIGHTS = Path(__file__).with_name("feredge-s.safetensors")
DEFAULT_ONNX = Path(__file__).with_name("feredge-s.onnx")


def default_checkpoint() -> Path:
    """Path of the shipped default checkpoint (used when no model is named)."""
    if not DEFAULT_WEIGHTS.is_file():
        raise FeredgeError(f"{DEFAULT_WEIGHTS}: the default model is not installed; name a checkpoint explicitly")
    return DEFAULT_WEIGHTS
