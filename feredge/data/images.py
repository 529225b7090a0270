"""Image decoding and resizing with Pillow (no OpenCV needed for preparing datasets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm"}


def decode(path: Path, size: int | None, channels: int) -> np.ndarray:
    """Decode ``path`` into uint8 (H, W, channels), optionally resized to size×size (bilinear).

    Raises ValueError with the reason when the file is not a decodable image.
    """
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode image ({exc.__class__.__name__}: {exc})") from None
    return arr.reshape(arr.shape[0], arr.shape[1], channels)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted so preparation is deterministic."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
