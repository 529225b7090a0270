"""Saving checkpoints for training: safetensors weights plus their JSON sidecar, each written atomically.

Reading them back (`load_checkpoint`, `read_meta`, …) lives in `feredge.models.checkpoint`, beside the
models, so nothing that only loads weights depends on the training code.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from feredge._optional import require
from feredge.artifact import Artifact, atomic_write_bytes
from feredge.artifact import write as write_sidecar


def save_checkpoint(model, path: Path, info: Artifact) -> str:
    """Write ``path`` (.safetensors) and its sidecar, each atomically; returns the weights' sha256.

    The sidecar's ``weights_storage`` is set here from the tensors written, so a file made from a shipped
    (fp16-stored) one — a soup, a removed prior correction — never inherits a note that is no longer true.
    """
    import torch

    st = require("safetensors.torch")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    floats = [v.dtype for v in state.values() if v.dtype.is_floating_point]
    details = {k: v for k, v in info.details.items() if k != "weights_storage"}
    if floats and all(d == torch.float16 for d in floats):
        details["weights_storage"] = "float16 (loaded as float32)"
    data = st.save(state)
    atomic_write_bytes(Path(path), data)
    write_sidecar(path, dataclasses.replace(info, details=details))
    return hashlib.sha256(data).hexdigest()
