"""CPU reference pre-processing (NumPy) with exactly the semantics of the CUDA kernel.

Frame → faces: for each box (x, y, w, h) take the square of side max(w, h)·(1 + margin) centred on
the box, sample it bilinearly at pixel centres (src = x0 + (j + 0.5)·side/S − 0.5), treat pixels
outside the frame as 0, convert BGR → gray (0.299 R + 0.587 G + 0.114 B) or RGB, divide by 255,
normalise with (v − mean)/std, and optionally append mirrored copies (for flip TTA) after the N faces.
"""

from __future__ import annotations

import numpy as np

GRAY_WEIGHTS_BGR = np.array([0.114, 0.587, 0.299], np.float32)


def _bilinear_zero(frame: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Sample frame (H, W, C) at float coords (S, S); neighbours outside the frame count as 0."""
    h, w = frame.shape[:2]
    y0 = np.floor(sy).astype(np.int64)
    x0 = np.floor(sx).astype(np.int64)
    fy = (sy - y0)[..., None].astype(np.float32)
    fx = (sx - x0)[..., None].astype(np.float32)
    out = np.zeros(sy.shape + (frame.shape[2],), np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            inside = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[..., None]
            px = frame[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)].astype(np.float32)
            out += np.where(inside, px, 0.0) * (wy * wx)
    return out


def crop_square(box: np.ndarray, margin: float) -> tuple[float, float, float]:
    """(x0, y0, side) of the square crop around box (x, y, w, h)."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1.0 + margin)
    return x + w / 2 - side / 2, y + h / 2 - side / 2, side


def preprocess_frame(frame: np.ndarray, boxes: np.ndarray, size: int, channels: int,
                     mean: tuple[float, ...], std: tuple[float, ...], margin: float = 0.0,
                     mirror: bool = False) -> np.ndarray:
    """BGR uint8 frame (H, W, 3) + boxes (N, 4) → float32 (N or 2N, channels, size, size)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    out = np.zeros((len(boxes), channels, size, size), np.float32)
    grid = np.arange(size, dtype=np.float32) + 0.5
    mean_a = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    std_a = np.asarray(std, np.float32).reshape(-1, 1, 1)
    for n, box in enumerate(boxes):
        x0, y0, side = crop_square(box, margin)
        scale = side / size
        sy, sx = np.meshgrid(y0 + grid * scale - 0.5, x0 + grid * scale - 0.5, indexing="ij")
        bgr = _bilinear_zero(frame, sy, sx)
        pix = (bgr @ GRAY_WEIGHTS_BGR)[None] if channels == 1 else bgr[..., ::-1].transpose(2, 0, 1)
        out[n] = (pix / 255.0 - mean_a) / std_a
    if mirror:
        out = np.concatenate([out, out[..., ::-1]], 0)
    return np.ascontiguousarray(out)


def _resize_clamp(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize with edge clamping, as torch's interpolate(align_corners=False)."""
    h, w = img.shape[:2]
    sy = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, None)
    sx = np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, None)
    y0 = np.minimum(np.floor(sy).astype(int), h - 1)
    x0 = np.minimum(np.floor(sx).astype(int), w - 1)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (sy - y0)[:, None, None], (sx - x0)[None, :, None]
    img = img.astype(np.float32)
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bot = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


def preprocess_faces(images: np.ndarray, spec) -> np.ndarray:
    """Already-cropped uint8 faces (N, H, W, C) → the model's float32 NCHW input (as in training)."""
    images = np.asarray(images)
    out = np.empty((len(images), spec.channels, spec.size, spec.size), np.float32)
    mean = np.asarray(spec.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(-1, 1, 1)
    for i, img in enumerate(images):
        x = img.astype(np.float32) / 255.0
        if x.shape[-1] != spec.channels:
            x = x @ np.array([0.299, 0.587, 0.114], np.float32)[:, None] if spec.channels == 1 else np.repeat(x, 3, -1)
        if x.shape[0] != spec.size or x.shape[1] != spec.size:
            x = _resize_clamp(x, spec.size)
        out[i] = (x.transpose(2, 0, 1) - mean) / std
    return out


def preprocess_frame_cv2(frame: np.ndarray, boxes: np.ndarray, size: int, channels: int,
                         mean: tuple[float, ...], std: tuple[float, ...], margin: float = 0.0,
                         mirror: bool = False, angles: np.ndarray | None = None) -> np.ndarray:
    """The same semantics with OpenCV's warpAffine (the fast CPU path; agrees with the reference ±1/255).

    ``angles`` (radians, one per box) rotate each square crop about its centre — face alignment: with the
    angle of the eye line, the eyes come out level."""
    import cv2

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    angles = np.zeros(len(boxes)) if angles is None else np.asarray(angles, np.float64).reshape(-1)
    out = np.zeros((len(boxes), channels, size, size), np.float32)
    mean_a = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    std_a = np.asarray(std, np.float32).reshape(-1, 1, 1)
    for n, box in enumerate(boxes):
        x0, y0, side = crop_square(box, margin)
        s = side / size
        # dst (j, i) samples src c + R(θ)·(s·(j + ½) − side/2, s·(i + ½) − side/2) − ½ about the crop centre c:
        # with θ = 0, (s·j + x0 + s/2 − 1/2, s·i + y0 + s/2 − 1/2), pixel-centre aligned.
        cos, sin = np.cos(angles[n]), np.sin(angles[n])
        cx, cy, d = x0 + side / 2, y0 + side / 2, s / 2 - side / 2
        m = np.array([[s * cos, -s * sin, cx + (cos - sin) * d - 0.5],
                      [s * sin, s * cos, cy + (sin + cos) * d - 0.5]], np.float64)
        crop = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        crop = crop.astype(np.float32)
        pix = (crop @ GRAY_WEIGHTS_BGR)[None] if channels == 1 else crop[..., ::-1].transpose(2, 0, 1)
        out[n] = (pix / 255.0 - mean_a) / std_a
    if mirror:
        out = np.concatenate([out, out[..., ::-1]], 0)
    return np.ascontiguousarray(out)
