"""feredge: facial-expression recognition from PyTorch training to TensorRT on NVIDIA GPUs.

    import feredge
    faces = feredge.Recognizer()(frame)            # BGR frame → [Face(box, label, confidence, …)]
    for item in feredge.stream("video.mp4"): ...   # frames with tracked, smoothed faces

Importing the package stays cheap: the names below load their modules on first use, and nothing heavy
(torch, tensorrt, cuda) is imported unless a model needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from feredge._version import __version__

_LAZY = {
    "Recognizer": "feredge.recognizer",
    "Face": "feredge.recognizer",
    "stream": "feredge.streaming",
    "Stream": "feredge.streaming",
    "StreamFrame": "feredge.streaming",
    "read_image": "feredge.vision.images",
    "FeredgeError": "feredge.errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from feredge.errors import FeredgeError as FeredgeError
    from feredge.recognizer import Face as Face
    from feredge.recognizer import Recognizer as Recognizer
    from feredge.streaming import Stream as Stream
    from feredge.streaming import StreamFrame as StreamFrame
    from feredge.streaming import stream as stream
    from feredge.vision.images import read_image as read_image


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'feredge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
