"""Image decoding and resizing with Pillow (no OpenCV needed for preparing datasets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".gif", ".webp"}


def decode(path: Path, size: int | None, channels: int) -> np.ndarray:
    """Decode ``path`` into uint8 (H, W, channels), optionally resized to size×size (bilinear).

    Raises ValueError with the reason when the file is not a decodable image.
    """
    if Path(path).stat().st_size == 0:
        raise ValueError("empty file (expected an image)")
    try:
        with Image.open(path) as img:
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit: scale to 8 bits (convert() would clip)
                img = Image.fromarray((np.asarray(img, dtype=np.uint32) // 257).clip(0, 255).astype(np.uint8))
            img = img.convert("L" if channels == 1 else "RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image ({exc.__class__.__name__}: {exc})") from None
    return arr.reshape(arr.shape[0], arr.shape[1], channels)


def list_images(folder: Path, problems=None) -> list[Path]:
    """Image files directly inside ``folder``, sorted so preparation is deterministic; anything else in it
    is counted in ``problems`` (a `Problems`) as ignored, never skipped silently."""
    images = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)
        elif problems is not None and not p.name.startswith("."):
            problems.ignore(p, f"not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images
