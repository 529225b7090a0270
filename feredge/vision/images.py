"""Reading a picture into the BGR uint8 frame the detector and the crops expect: one reader for every
command and the library, so every input gets the same checks."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from feredge._optional import require
from feredge.errors import FeredgeError, absent

if TYPE_CHECKING:
    from PIL import Image

#: Larger images are refused before decoding: 100 MP is already a 400 MB BGR frame.
MAX_PIXELS = 100_000_000
#: The EXIF tag saying how the stored pixels must turn to stand upright. Phones store portrait photos
#: sideways and set it; viewers and cv2.imread apply it, OpenCV's IMREAD_UNCHANGED (needed here for 16-bit
#: and alpha) does not, and sideways faces are missed or misread by the detector and the model.
EXIF_ORIENTATION = 0x0112
UPRIGHT = 1


def _orientation(img: Image.Image) -> int:
    """A Pillow image's EXIF orientation, read before it is loaded; 1 (as stored) when absent, not one of the
    eight defined, or a TIFF (OpenCV's TIFF decoder turns the picture itself). Corrupt EXIF counts as absent."""
    if img.format == "TIFF":
        return UPRIGHT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's "Corrupt EXIF data" warning: the picture stays as stored
        value = img.getexif().get(EXIF_ORIENTATION, UPRIGHT)
    return value if value in range(1, 9) else UPRIGHT


def upright(frame: np.ndarray, orientation: int) -> np.ndarray:
    """The frame turned as its EXIF orientation says (what Pillow's ImageOps.exif_transpose does)."""
    turned = {2: lambda f: f[:, ::-1], 3: lambda f: f[::-1, ::-1], 4: lambda f: f[::-1],
              5: lambda f: f.swapaxes(0, 1), 6: lambda f: np.rot90(f, -1),
              7: lambda f: f[::-1, ::-1].swapaxes(0, 1), 8: lambda f: np.rot90(f, 1)}.get(orientation)
    return frame if turned is None else np.ascontiguousarray(turned(frame))


@contextmanager
def _opened_within_limit(source: Path | io.BytesIO, where: str) -> Iterator[Image.Image]:
    """The picture opened by Pillow (its header read, no pixels yet), refused when over MAX_PIXELS: Pillow
    warns from 89 MP, and over twice that refuses by itself, unread; both said here with the size."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise FeredgeError(f"{where}: {img.width}×{img.height} pixels is more than "
                                       f"{MAX_PIXELS // 1_000_000} MP; downscale it first")
                yield img
    except Image.DecompressionBombError as exc:
        raise FeredgeError(f"{where}: more than {MAX_PIXELS // 1_000_000} MP ({exc}); downscale it first") from None


def _check_with_pillow(path: Path) -> int | None:
    """Size limit and completeness, which OpenCV does not report: it decodes half of a truncated JPEG
    without a word, so the file is fully decoded once by Pillow, which raises on a short file. Returns the
    file's EXIF orientation, None for a format Pillow does not know."""
    from PIL import UnidentifiedImageError

    try:
        with _opened_within_limit(path, str(path)) as img:
            orientation = _orientation(img)
            img.load()
            return orientation
    except UnidentifiedImageError:
        return None  # OpenCV may still read it (or say it cannot)
    except (OSError, SyntaxError, ValueError) as exc:
        raise FeredgeError(f"{path}: damaged or truncated image ({exc}); expected a complete JPEG/PNG file") from None


def _orientation_of_bytes(encoded: bytes, where: str) -> int:
    """The EXIF orientation of an encoded image, read from its header; a picture over MAX_PIXELS is refused
    before it is decoded. Other decoding problems are OpenCV's to report."""
    try:
        with _opened_within_limit(io.BytesIO(encoded), where) as img:
            return _orientation(img)
    except (OSError, SyntaxError, ValueError):
        return UPRIGHT


@contextmanager
def quiet_opencv(cv2) -> Iterator[None]:
    """OpenCV's own log lines ("[ERROR:0@…] readHeader …", "[ WARN:0@…] cap_v4l …") held back while a
    call that feredge reports on itself runs; the previous level comes back afterwards."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The PNG chunks that decide the pixels (critical ones, and tRNS: palette transparency). The others carry
#: colour profiles, text and timestamps that OpenCV ignores, and libpng prints a warning straight to stderr
#: for the common faulty ones ("iCCP: known incorrect sRGB profile"), beyond OpenCV's log level.
PNG_PIXEL_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS"}


def _png_pixels_only(data: bytes) -> bytes:
    """A PNG's bytes without the chunks that do not change its pixels; anything not laid out as PNG chunks
    is returned as it was, for the decoder to judge."""
    if not data.startswith(PNG_SIGNATURE):
        return data
    kept, at = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while at + 12 <= len(data):
        end = at + 12 + int.from_bytes(data[at:at + 4], "big")
        if data[at + 4:at + 8] in PNG_PIXEL_CHUNKS:
            kept.append(data[at:end])
        at = end
    return b"".join(kept) if at == len(data) else data


def _quiet_decode(cv2, data: bytes) -> np.ndarray | None:
    """OpenCV's decoder, silent: feredge's message says what went wrong."""
    with quiet_opencv(cv2):
        try:
            return cv2.imdecode(np.frombuffer(_png_pixels_only(data), np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            return None


def to_bgr(frame: np.ndarray, where: str) -> np.ndarray:
    """A decoded image as BGR uint8: 16-bit values scaled (not clipped), gray and alpha converted."""
    cv2 = require("cv2")
    if frame.dtype == np.uint16:
        frame = (frame // 257).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise FeredgeError(f"{where}: {frame.dtype} pixels; expected an 8- or 16-bit image")
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


@dataclass(frozen=True)
class CheckedImage:
    """An image file that passed every check, decoded only when read: a command checks all its inputs
    before it writes anything, then holds one frame at a time (a thousand phone photos are 36 GB decoded)."""

    path: Path
    orientation: int

    def read(self) -> np.ndarray:
        """The BGR uint8 frame, upright."""
        frame = _quiet_decode(require("cv2"), self.path.read_bytes())
        if frame is None:
            raise FeredgeError(f"{self.path}: cannot read image (expected a JPEG/PNG file)")
        return upright(to_bgr(frame, str(self.path)), self.orientation)


def check_image(path: Path | str) -> CheckedImage:
    """A missing, empty, damaged or truncated file, a folder or an oversized picture as a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise FeredgeError(f"{path}: {absent(path, 'a JPEG/PNG image')}")
    if path.stat().st_size == 0:
        raise FeredgeError(f"{path}: empty file (expected a JPEG/PNG image)")
    orientation = _check_with_pillow(path)
    if orientation is None:  # a format Pillow does not know: decoding it is the only check there is
        CheckedImage(path, UPRIGHT).read()
    return CheckedImage(path, orientation or UPRIGHT)


def read_image(path: Path | str) -> np.ndarray:
    """A BGR uint8 frame from an image file, upright; bad files are one-line errors (check_image)."""
    return check_image(path).read()


def decode_image(encoded: bytes, where: str = "image") -> np.ndarray:
    """A BGR uint8 frame from a file's bytes (what the `fer_frame` server model receives)."""
    cv2 = require("cv2")
    orientation = _orientation_of_bytes(encoded, where)
    frame = _quiet_decode(cv2, encoded) if encoded else None
    if frame is None:
        raise FeredgeError(f"{where}: cannot decode the bytes (expected a JPEG or PNG file's contents)")
    return upright(to_bgr(frame, where), orientation)
