"""`feredge predict`: image files → faces → expressions, written as annotated copies and results.json.
The frame path itself is the Recognizer's; this module only reads, draws and writes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feredge._optional import require
from feredge.artifact import atomic_write_bytes, atomic_write_text
from feredge.config import PRECISION, TTA
from feredge.errors import FeredgeError
from feredge.recognizer import Recognizer
from feredge.vision.images import check_image

DEFAULT_OUT = Path("runs/predict")
#: The file whose presence says a folder holds earlier results.
RESULTS = "results.json"


def output_folder(out: Path | None, overwrite: bool) -> Path:
    """Never replace earlier results silently: the default folder gets a free -2, -3 … suffix, an explicit
    one needs ``overwrite``."""
    from feredge.outputs import output_folder as choose

    return choose(out, DEFAULT_OUT, [RESULTS], overwrite)


def expand_folders(inputs: list[Path], log: Callable[[str], None] = print) -> tuple[list[Path], set[Path]]:
    """Each folder among ``inputs`` as its pictures (name order; separate photos, as run-camera reads a folder),
    and which of them came from a folder; the files found there that are not pictures are named in one line,
    never silently passed over."""
    from feredge.vision.source import folder_pictures

    images: list[Path] = []
    from_folders: set[Path] = set()
    skipped: list[str] = []
    for path in map(Path, inputs):
        if path.is_dir():
            found, others = folder_pictures(path)
            images += found
            from_folders |= set(found)
            skipped += [str(path / name) for name in others]
        else:
            images.append(path)
    if skipped:
        log(f"skipped, not pictures ({len(skipped)}): {'; '.join(skipped[:5])}{'; …' * (len(skipped) > 5)}")
    return images, from_folders


def check_images(images: list[Path], from_folders: set[Path], log: Callable[[str], None] = print) -> list:
    """Every picture checked before any output is written: a named file that cannot be read stops the command;
    one found in a folder is named with its reason and passed over, as run-camera passes over it."""
    checked, unreadable = [], []
    for path in images:
        try:
            checked.append((path, check_image(path)))
        except FeredgeError as exc:
            if path not in from_folders:
                raise
            unreadable.append(str(exc))
    if unreadable:
        log(f"unreadable pictures ({len(unreadable)}), passed over: {'; '.join(unreadable[:5])}"
            + "; …" * (len(unreadable) > 5))
    if not checked:
        raise FeredgeError("no readable picture among the inputs: nothing to predict")
    return checked


def output_names(images: list[Path]) -> list[str]:
    """One annotated-file name per input, all different: same-named images from different folders get the
    first free -2, -3 … (an input may itself be called ``group-2.jpg``)."""
    names: list[str] = []
    taken: set[str] = set()
    for path in images:
        stem, n = Path(path).stem, 1
        name = f"{stem}.annotated.jpg"
        while name in taken:
            n += 1
            name = f"{stem}-{n}.annotated.jpg"
        taken.add(name)
        names.append(name)
    return names


def predict_images(images: list[Path], model: Path | str | None = None, backend: str | None = None,
                   out: Path = DEFAULT_OUT, tta: str = TTA, device: str | None = None,
                   precision: str = PRECISION, from_folders: set[Path] | frozenset[Path] = frozenset(),
                   log: Callable[[str], None] = print, **finding: Any) -> dict:
    """Detect faces in each image, classify their expression, write annotated copies and results.json;
    returns that document (model, backend, the settings faces were found and read with, and one result per
    image), which `predict --json` prints. Its paths (model, image, annotated) are all absolute, so the file
    means the same read from anywhere. ``finding`` holds the Recognizer's face-finding keywords (detector,
    detect_max_side, max_faces, align, threads), as the CLI passes them."""
    cv2 = require("cv2")
    from feredge.vision.overlay import draw

    pairs = check_images(images, set(from_folders), log)  # every input checked before any output is written
    images, checked = [p for p, _ in pairs], [c for _, c in pairs]
    out = Path(out)
    earlier = _earlier_outputs(out)
    results = []
    with Recognizer(model, backend=backend, device=device, precision=precision, tta=tta, **finding) as rec:
        for path, image, name in zip(images, checked, output_names(images)):
            frame = image.read()
            t0 = time.perf_counter()
            boxes, scores, landmarks = rec.detect(frame)
            t1 = time.perf_counter()
            faces = rec.faces(frame, boxes, scores, landmarks)
            t2 = time.perf_counter()
            annotated = draw(frame, boxes, [f.label for f in faces], [f.confidence for f in faces])
            ok, jpeg = cv2.imencode(".jpg", annotated)
            target = atomic_write_bytes(out / name, jpeg.tobytes())
            results.append({"image": str(Path(path).absolute()), "annotated": str(target.absolute()),
                            "faces": [f.to_dict() for f in faces],
                            "ms": {"detect": round(1e3 * (t1 - t0), 3), "classify": round(1e3 * (t2 - t1), 3)}})
        settings = {"precision": rec.info.precision, "tta": rec.tta, "detector": rec.detector_name,
                    "detect_max_side": rec.detect_max_side, "max_faces": rec.max_faces, "align": rec.align,
                    "margin": rec.margin}
        document = {"model": str(Path(rec.path).absolute()), "backend": rec.backend, "settings": settings,
                    "results": results}
        atomic_write_text(out / RESULTS, json.dumps(document, indent=2))
    for stale in earlier - {Path(r["annotated"]).resolve() for r in results}:
        stale.unlink(missing_ok=True)  # replaced runs leave no picture that results.json no longer lists
    return document


def _earlier_outputs(out: Path) -> set[Path]:
    """The annotated files an earlier run listed in ``out`` (only what feredge wrote there is removed)."""
    try:
        listed = json.loads((out / RESULTS).read_text())["results"]
        return {(out / Path(r["annotated"]).name).resolve() for r in listed}
    except (OSError, ValueError, KeyError, TypeError):
        return set()
