"""Checkpoints: safetensors weights plus a small JSON sidecar; nothing is unpickled.

The sidecar names the model, its kwargs, classes, input spec and metrics, so a checkpoint can be
rebuilt and checked without the training code that produced it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from feredge import __version__
from feredge._optional import require
from feredge.errors import CheckpointError, read_format_json

FORMAT = "feredge-checkpoint-v1"


def sidecar_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_checkpoint(model, path: Path, meta: dict[str, Any]) -> Path:
    """Write ``path`` (.safetensors) and its .json sidecar; returns the weights path."""
    st = require("safetensors.torch")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    st.save_file(state, str(path))
    sidecar_path(path).write_text(json.dumps({"format": FORMAT, "feredge_version": __version__, **meta}, indent=2))
    return path


def read_meta(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    meta = read_format_json(side, FORMAT, CheckpointError,
                            f"{side}: missing sidecar JSON next to the weights (model name, input spec)")
    for key in ("model", "classes", "input_spec"):
        if key not in meta:
            raise CheckpointError(f"{side}: missing field '{key}'")
    return meta


def read_state_dict(path: Path) -> dict:
    """Tensors from a .safetensors file, or from a torch file loaded with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    if path.suffix == ".safetensors":
        return require("safetensors.torch").load_file(str(path))
    torch = require("torch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad or unsafe file
        raise CheckpointError(f"{path}: cannot be read as a weights-only state dict ({exc.__class__.__name__})") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_into(model, state: dict, where: str) -> None:
    """Load ``state`` strictly, listing missing/unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]})")
        raise CheckpointError(f"{where}: weights do not match the model: {'; '.join(parts)}")
    model.load_state_dict(state)


def load_checkpoint(path: Path, expect_model: str | None = None):
    """Rebuild the model named in the sidecar and load its weights; returns (model, meta)."""
    from feredge.models import create_model

    meta = read_meta(path)
    if expect_model is not None and meta["model"] != expect_model:
        raise CheckpointError(f"{path}: holds model {meta['model']!r}, expected {expect_model!r}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("model_kwargs", {}).items()}
    model = create_model(meta["model"], num_classes=len(meta["classes"]), **kwargs)
    load_into(model, read_state_dict(path), str(path))
    model.eval()
    return model, meta
