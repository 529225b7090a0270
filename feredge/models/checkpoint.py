"""Reading checkpoints: safetensors weights plus a small JSON sidecar; nothing is unpickled.

The sidecar (an `feredge.artifact.Artifact` of kind "checkpoint") names the model, its kwargs, classes,
input spec, and in ``details`` the training config and metrics, so a checkpoint can be rebuilt and
checked without the training code that produced it. Loading sits beside the models (as timm keeps its
helpers), so architectures such as resmasking can read weights without importing the trainer.
"""

from __future__ import annotations

from pathlib import Path

from feredge._optional import require
from feredge.artifact import Artifact, sidecar_path
from feredge.artifact import read as read_artifact
from feredge.errors import CheckpointError, ModelKwargsError, absent
from feredge.models._registry import create_model


def read_meta(path: Path) -> Artifact:
    """The checkpoint's description; refuses anything but a checkpoint."""
    info = read_artifact(path)
    if info.kind != "checkpoint":
        raise CheckpointError(f"{path}: is a {info.kind} file, expected a training checkpoint (.safetensors)")
    return info


def read_state_dict(path: Path) -> dict:
    """Tensors from a .safetensors file, or from a torch file loaded with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {absent(path, 'a .safetensors checkpoint')}")
    if path.suffix == ".safetensors":
        try:
            return require("safetensors.torch").load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
            raise CheckpointError(f"{path}: not a readable .safetensors file ({exc})") from None
    torch = require("torch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad or unsafe file
        raise CheckpointError(f"{path}: cannot be read as a weights-only state dict "
                              f"({exc.__class__.__name__})") from None
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
    info = read_meta(path)
    if expect_model is not None and info.model != expect_model:
        raise CheckpointError(f"{path}: holds model {info.model!r}, expected {expect_model!r}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in info.model_kwargs.items()}
    try:
        model = create_model(info.model, num_classes=len(info.classes), **kwargs)
    except ModelKwargsError as exc:
        raise CheckpointError(f"{sidecar_path(path)}: field {exc}") from None
    load_into(model, read_state_dict(path), str(path))
    model.eval()
    return model, info
