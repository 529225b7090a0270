"""Calibration from a folder of face pictures, for whoever has no prepared dataset: each picture's faces are
found and cropped exactly as the runtime crops them (the detector, the margin, the model's input), so the
ranges are measured on what the model will see. Such pictures carry no labels: the accuracy gate needs a
prepared dataset, and the export says that it did not run."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from feredge.artifact import InputSpec
from feredge.config import DETECT_MAX_SIDE, DETECTOR, FACE_MARGIN
from feredge.errors import FeredgeError


def is_prepared(path: Path) -> bool:
    """A prepared dataset (`feredge data prepare`) rather than a folder of pictures."""
    return (Path(path) / "meta.json").is_file()


def folder_inputs(folder: Path, spec: InputSpec, size: int, seed: int,
                  log: Callable[[str], None] = print) -> tuple[np.ndarray, dict]:
    """Up to ``size`` faces from the pictures in ``folder`` (taken in a seeded order) as the model's float
    input, and the calibration record (source, count, digest of the pictures and boxes used)."""
    from feredge.vision.detector import make_detector
    from feredge.vision.images import read_image
    from feredge.vision.preprocess import preprocess_frame_cv2
    from feredge.vision.source import folder_pictures

    pictures, _ = folder_pictures(Path(folder))
    order = np.random.default_rng(seed).permutation(len(pictures))
    detector = make_detector(DETECTOR, DETECT_MAX_SIDE)
    crops, digest, used, unreadable = [], hashlib.sha256(), 0, 0
    for k in order:
        if sum(len(c) for c in crops) >= size:
            break
        try:
            frame = read_image(pictures[k])
        except FeredgeError:
            unreadable += 1
            continue
        boxes, _ = detector.detect(frame)
        if not len(boxes):
            continue
        boxes = boxes[:size - sum(len(c) for c in crops)]
        crops.append(preprocess_frame_cv2(frame, boxes, spec.size, spec.channels, spec.mean, spec.std, FACE_MARGIN))
        digest.update(pictures[k].name.encode() + np.asarray(boxes, np.float32).tobytes())
        used += 1
    if not crops:
        raise FeredgeError(f"{folder}: no face found in its {len(pictures)} pictures; calibration needs faces "
                           "(or pass a prepared dataset: `feredge data prepare`)")
    x = np.concatenate(crops)
    if unreadable:
        log(f"calibration: {unreadable} of the pictures in {folder} could not be read and were passed over")
    return x, {"images": len(x), "pictures": used, "seed": seed, "digest": digest.hexdigest(),
               "source": str(folder), "kind": "faces detected in a folder of pictures (unlabelled)"}
