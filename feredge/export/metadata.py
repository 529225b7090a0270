"""Artifacts describe themselves: ONNX metadata properties plus a sidecar JSON next to each file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

SIDECAR_SUFFIX = ".json"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def write_sidecar(artifact: Path, meta: dict[str, Any]) -> Path:
    """``model.onnx`` → ``model.onnx.json`` (trtexec can still read the artifact itself)."""
    path = Path(str(artifact) + SIDECAR_SUFFIX)
    path.write_text(json.dumps(meta, indent=2))
    return path


def read_sidecar(artifact: Path) -> dict[str, Any] | None:
    path = Path(str(artifact) + SIDECAR_SUFFIX)
    return json.loads(path.read_text()) if path.is_file() else None


def set_onnx_metadata(model, meta: dict[str, Any]) -> None:
    """Store each field as an ONNX metadata property (JSON-encoded values)."""
    del model.metadata_props[:]
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key = key
        prop.value = value if isinstance(value, str) else json.dumps(value)


def get_onnx_metadata(model) -> dict[str, Any]:
    out = {}
    for prop in model.metadata_props:
        try:
            out[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            out[prop.key] = prop.value
    return out
