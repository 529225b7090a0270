"""Saving checkpoints for training: safetensors weights plus their JSON sidecar, each written atomically.

Reading them back (`load_checkpoint`, `read_meta`, …) lives in `feredge.models.checkpoint`, beside the
models, so nothing that only loads weights depends on the training code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from feredge import artifact
from feredge._optional import require
from feredge.artifact import Artifact


def save_checkpoint(model, path: Path, info: Artifact) -> str:
    """Write ``path`` (.safetensors) and its sidecar, each atomically; returns the weights' sha256."""
    st = require("safetensors.torch")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = st.save(state)
    artifact.atomic_write_bytes(Path(path), data)
    artifact.write(path, info)
    return hashlib.sha256(data).hexdigest()
