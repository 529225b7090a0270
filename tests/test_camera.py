"""run-camera: a real video file and an image folder through OpenCV, the detector, the tracker and the
model; JSONL and the recorded video checked frame by frame; tracking, smoothing and alignment units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from feredge.commands.cli import cli
from feredge.vision.tracker import Tracker, iou

cv2 = pytest.importorskip("cv2")
GROUP = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"
FRAMES = 12


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 640-wide MJPG clip of the bundled group photo (3 faces) panning slowly to the right."""
    path = tmp_path_factory.mktemp("video") / "group.avi"
    base = cv2.imread(str(GROUP))
    h, w = base.shape[:2]
    small = cv2.resize(base, (720, round(h * 720 / w)))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, small.shape[0]))
    for i in range(FRAMES):
        writer.write(np.ascontiguousarray(small[:, 4 * i:4 * i + 640]))
    writer.release()
    return path


def _run(args: list[str]):
    result = CliRunner().invoke(cli, ["run-camera", *args])
    return result


def test_video_file_end_to_end(video, tmp_path):
    out_json, out_video = tmp_path / "faces.jsonl", tmp_path / "annotated.avi"
    result = _run(["--source", str(video), "--jsonl", str(out_json), "--record", str(out_video)])
    assert result.exit_code == 0, result.output
    assert f"{FRAMES} frames" in result.output and "end of file" in result.output and "dropped 0" in result.output
    lines = [json.loads(line) for line in out_json.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(FRAMES))  # a file never drops a frame
    assert all(len(line["faces"]) >= 3 for line in lines)  # a 4th, half-cut face enters at the left edge later
    assert all({1, 2, 3} <= {f["track_id"] for f in line["faces"]} for line in lines)  # stable ids while panning
    face = lines[-1]["faces"][0]
    assert set(face) == {"box", "detector_score", "track_id", "label", "confidence", "probabilities",
                         "smoothed_label", "smoothed_confidence", "smoothed_probabilities"}
    smoothed, raw = face["smoothed_probabilities"], face["probabilities"]
    assert abs(sum(smoothed.values()) - 1) < 1e-3 and face["smoothed_label"] == max(smoothed, key=smoothed.get)
    assert face["label"] == max(raw, key=raw.get) and face["confidence"] == max(raw.values())  # this frame's own
    assert lines[1]["timestamp"] == pytest.approx(0.1, abs=1e-3)
    cap = cv2.VideoCapture(str(out_video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    cap.release()
    again = _run(["--source", str(video), "--jsonl", str(out_json)])
    assert again.exit_code != 0 and "exists; pass --overwrite" in again.output


def test_detect_every_third_frame_tracks_between(video, tmp_path):
    out = tmp_path / "f.jsonl"
    result = _run(["--source", str(video), "--jsonl", str(out), "--detect-every", "3", "--max-frames", "7",
                   "--detector", "yunet", "--smooth", "1"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["detected"] for line in lines] == [True, False, False, True, False, False, True]
    assert all(len(line["faces"]) >= 3 for line in lines)
    assert all(f["probabilities"] == f["smoothed_probabilities"] for line in lines for f in line["faces"])  # --smooth 1


def test_a_video_is_detected_every_default_nth_frame(video, tmp_path):
    from feredge.config import DETECT_EVERY

    out = tmp_path / "f.jsonl"
    result = _run(["--source", str(video), "--jsonl", str(out), "--max-frames", "7"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["detected"] for line in lines] == [k % DETECT_EVERY == 0 for k in range(7)]
    assert all(len(line["faces"]) >= 3 for line in lines)


def test_image_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    base = cv2.resize(cv2.imread(str(GROUP)), (960, 640))
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), base)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "f.jsonl"
    result = _run(["--source", str(folder), "--jsonl", str(out), "--align"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 and all(len(line["faces"]) == 3 for line in lines)


def test_haar_fallback_or_a_clear_reason(tmp_path):
    """OpenCV 5 dropped the Haar cascades from its wheels; with 4.x the fallback runs."""
    out = tmp_path / "f.jsonl"
    result = _run(["--source", str(GROUP.parent), "--jsonl", str(out), "--detector", "haar"])
    if hasattr(cv2, "CascadeClassifier"):
        assert result.exit_code == 0, result.output
        assert len(json.loads(out.read_text().splitlines()[0])["faces"]) >= 1
    else:
        assert result.exit_code != 0 and "has no Haar cascades" in result.output


@pytest.mark.parametrize("args, message", [
    (["--source", "no/such/video.mp4"], "file not found"),
    (["--source", "rtsp://127.0.0.1:1/none"], "cannot open this stream source through OpenCV; expected a reachable"),
    (["--source", str(Path(__file__))], "cannot open this file source through OpenCV; expected a video this OpenCV"),
    (["--detect-every", "0"], "--detect-every 0: expected a positive integer"),
    (["--smooth", "0"], "--smooth 0.0: expected 0 < smooth ≤ 1"),
    (["--detect-max-side", "10"], "--detect-max-side 10: expected at least 48 pixels"),
    (["--max-frames", "-1"], "--max-frames -1: expected 0 (until the source ends) or a positive count"),
])
def test_bad_sources_and_options_are_one_line(args, message):
    result = _run(args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert message in result.output


def test_tracker_ids_expiry_and_smoothing():
    tracker = Tracker(iou_threshold=0.3, max_unseen=2, alpha=0.5)
    a, b = np.array([0, 0, 100, 100.]), np.array([300, 0, 100, 100.])
    assert tracker.update(np.stack([a, b])) == [1, 2]
    assert tracker.update(np.stack([b + [10, 0, 0, 0], a + [5, 5, 0, 0]])) == [2, 1]  # order-free matching
    for _ in range(3):
        tracker.update(np.stack([a]))  # b unseen three times > max_unseen
    assert list(tracker.tracks) == [1]
    assert tracker.update(np.stack([a, b])) == [1, 3]  # b returns with a new id
    p1, p2 = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    tracker.smooth([3], p1)
    np.testing.assert_allclose(tracker.smooth([3], p2), [[0.5, 0.5]])
    np.testing.assert_allclose(iou(a[None], np.array([[50, 0, 100, 100.]])), [[50 * 100 / (2 * 10000 - 5000)]])


def test_tracker_moves_boxes_on_between_detections():
    tracker = Tracker(iou_threshold=0.3)
    a = np.array([100, 100, 80, 80.])
    assert tracker.update(a[None]) == [1]
    np.testing.assert_allclose(tracker.predict([1], 2), [a])  # a new track stays where it was found
    assert tracker.update((a + [6, -3, 3, 3])[None], frames=3) == [1]  # moved 2, -1, 1, 1 per frame
    np.testing.assert_allclose(tracker.predict([1], 2), [a + [10, -5, 5, 5]])
    # a box that would leave the frame by more than half stays where it was last found
    np.testing.assert_allclose(tracker.predict([1], 60, size=(200, 200)), [a + [6, -3, 3, 3]])


def test_alignment_levels_a_tilted_eye_line():
    from feredge.vision.detector import eye_angles
    from feredge.vision.preprocess import preprocess_frame_cv2

    theta = np.deg2rad(25)
    frame = np.zeros((200, 200, 3), np.uint8)
    c = np.array([100, 100])
    d = 60 * np.array([np.cos(theta), np.sin(theta)])
    cv2.line(frame, tuple((c - d).astype(int)), tuple((c + d).astype(int)), (255, 255, 255), 5)
    landmarks = np.array([[c - d / 2, c + d / 2, c, c, c]])
    angle = eye_angles(landmarks)
    assert angle[0] == pytest.approx(theta, abs=1e-6)
    box = np.array([[40, 40, 120, 120]], np.float32)
    aligned = preprocess_frame_cv2(frame, box, 48, 1, (0.0,), (1.0,), 0.0, False, angle)[0, 0]
    plain = preprocess_frame_cv2(frame, box, 48, 1, (0.0,), (1.0,), 0.0, False)[0, 0]
    assert aligned[24, 8:40].min() > 0.5  # the line now runs along the middle row
    assert plain[24, 8:40].min() < 0.1


def test_a_truncated_video_counts_every_frame_it_lost(video, tmp_path):
    """The header announces FRAMES frames; the cut file holds fewer: every missing one is counted as corrupt."""
    from feredge.vision.source import FrameSource

    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:int(len(data) * 0.6)])
    source = FrameSource(str(cut))
    read = sum(1 for _ in source)
    assert 0 < read < FRAMES and source.stats.read + source.stats.corrupt == FRAMES
    assert "damaged or truncated" in source.stats.ended


def test_a_missing_image_says_so_without_opencv_noise(tmp_path, capfd):
    from feredge.errors import FeredgeError
    from feredge.vision.images import read_image

    with pytest.raises(FeredgeError, match="missing.jpg: file not found"):
        read_image(tmp_path / "missing.jpg")
    assert capfd.readouterr().err == ""


def test_a_folder_names_what_it_could_not_read_and_each_line_its_picture(tmp_path):
    from PIL import Image

    folder, out = tmp_path / "imgs", tmp_path / "f.jsonl"
    folder.mkdir()
    data = GROUP.read_bytes()
    (folder / "a.jpg").write_bytes(data)
    (folder / "b.jpg").write_bytes(data[:len(data) // 2])  # truncated: counted corrupt, named, not half a frame
    Image.open(GROUP).save(folder / "c.gif")
    (folder / "notes.txt").write_text("not a picture")
    result = _run(["--source", str(folder), "--jsonl", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 frames" in result.output and "corrupt 1" in result.output
    assert f"unreadable pictures (1): {folder / 'b.jpg'}: damaged or truncated image" in result.output
    assert "skipped, not pictures (1): notes.txt" in result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["frame"], line["image"]) for line in lines] == [(0, str(folder / "a.jpg")),
                                                                  (2, str(folder / "c.gif"))]
    assert all(len(line["faces"]) == 3 for line in lines)

    (folder / "a.jpg").unlink()
    (folder / "c.gif").unlink()
    nothing = _run(["--source", str(folder)])
    assert nothing.exit_code == 1
    want = f"{folder}: no frame could be read (end of folder); expected a folder with readable pictures"
    assert want in nothing.output


def test_a_jpeg_damaged_inside_is_refused_though_it_ends_complete(tmp_path):
    """Bytes changed in the middle of the scan, the end-of-image marker intact: OpenCV decodes such a file
    without a word, so an end-marker check would pass it; the full decode refuses it."""
    import random

    from feredge.errors import FeredgeError
    from feredge.vision.images import read_image

    data, rng = bytearray(GROUP.read_bytes()), random.Random(0)
    for _ in range(50):
        data[rng.randrange(2000, len(data) - 100)] = rng.randrange(256)
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(bytes(data))
    assert data.endswith(b"\xff\xd9") and cv2.imdecode(np.frombuffer(bytes(data), np.uint8),
                                                       cv2.IMREAD_COLOR) is not None
    with pytest.raises(FeredgeError, match="damaged.jpg: damaged or truncated image"):
        read_image(damaged)
