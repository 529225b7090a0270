"""The answers stay the same: `feredge predict --json` on the bundled photo and `run-camera --jsonl` on a
short clip made from it, with feredge-s, against records written before the classifier was brought into one
object (same faces, labels and probabilities to 1e-5). Regenerate a record only for a deliberate change."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from feredge.commands.cli import cli

RECORDS = Path(__file__).resolve().parent / "regression"
PHOTO = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"


def make_clip(path: Path, frames: int = 6) -> Path:
    """A 640-pixel-wide MJPG clip panning across the bundled photo, a few pixels a frame."""
    cv2 = pytest.importorskip("cv2")
    image = cv2.imread(str(PHOTO))
    scale = 640 / image.shape[1]
    image = cv2.resize(image, (640, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w - 24, h - 24))
    for i in range(frames):
        writer.write(np.ascontiguousarray(image[2 * i:2 * i + h - 24, 4 * i:4 * i + w - 24]))
    writer.release()
    return path


def same(got, want, where: str = "") -> None:
    """Equal structure, strings and integers; numbers within 1e-5."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for key in want:
            same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-5), where
    else:
        assert got == want, where


def faces_only(record: dict) -> list:
    """What must not change: each picture's faces (paths and timings differ between runs)."""
    return [image["faces"] for image in record["results"]]


def left_to_right(frames: list[list[dict]]) -> list[list[dict]]:
    """Faces are listed left to right (the records kept the detector's order), and track ids renumbered by
    first appearance: the same faces and tracks, whatever order they were found in."""
    ids: dict[int, int] = {}
    out = []
    for faces in frames:
        faces = sorted(faces, key=lambda f: f["box"][0])
        for face in faces:
            if "track_id" in face:
                face = face | {"track_id": ids.setdefault(face["track_id"], len(ids))}
            out.append(face)
    return out


def test_predict_answers_unchanged(tmp_path):
    result = CliRunner().invoke(cli, ["predict", "--model", "feredge-s", "--json", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    want = json.loads((RECORDS / "predict.json").read_text())
    same(left_to_right(faces_only(json.loads(result.output))), left_to_right(want))


def test_run_camera_answers_unchanged(tmp_path):
    clip = make_clip(tmp_path / "clip.avi")
    jsonl = tmp_path / "frames.jsonl"
    # the record was made detecting every frame at 640 px: pinned, whatever the defaults become
    result = CliRunner().invoke(cli, ["run-camera", "--model", "feredge-s", "--source", str(clip),
                                      "--detect-every", "1", "--detect-max-side", "640", "--jsonl", str(jsonl)])
    assert result.exit_code == 0, result.output
    got = [json.loads(line)["faces"] for line in jsonl.read_text().splitlines()]
    want = json.loads((RECORDS / "run-camera.json").read_text())
    same(left_to_right(got), left_to_right(want))
