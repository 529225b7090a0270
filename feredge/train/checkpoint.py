"""Saving checkpoints for training: safetensors weights plus their JSON sidecar, each written atomically.

Reading them back (`load_checkpoint`, `read_meta`, …) lives in `feredge.models.checkpoint`, beside the
models, so nothing that only loads weights depends on the training code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from feredge._optional import require
from feredge.artifact import Artifact, atomic_write_bytes
from feredge.artifact import write as write_sidecar


def save_checkpoint(model, path: Path, info: Artifact) -> str:
    """Write ``path`` (.safetensors) and its sidecar, each atomically; returns the weights' sha256."""
    st = require("safetensors.torch")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = st.save(state)
    atomic_write_bytes(Path(path), data)
    write_sidecar(path, info)
    return hashlib.sha256(data).hexdigest()
