"""Where a torch model runs: one rule for training, evaluation and the torch runner, so that asking for a
GPU this machine lacks is a one-line error naming it, not torch's driver traceback minutes later."""

from __future__ import annotations

from typing import TYPE_CHECKING

from feredge._optional import require
from feredge.errors import FeredgeError

if TYPE_CHECKING:
    import torch


def torch_device(requested: str | None) -> torch.device:
    """``None``/""/"auto" → cuda when torch sees a GPU, else cpu; "cuda" / "cuda:N" only where it does."""
    torch = require("torch")
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise FeredgeError(f"device {requested!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise FeredgeError(f"device {requested!r}: torch sees no CUDA GPU here (a CPU-only torch build, or no "
                               "driver); use --device cpu")
        if device.index is not None and device.index >= count:
            raise FeredgeError(f"device {requested!r}: torch sees {count} GPU(s), cuda:0 … cuda:{count - 1}")
    return device
