"""Bad or surprising input to the frame API and the commands around it, each with its exact input: a folder of
photos of different sizes (photos, not video: nothing carried from one picture to the next, every picture
recorded), `predict DIR`, a stream's unknown keyword and repeated iteration, `Face.smoothed_confidence`,
`models` without torch, `bench` of a shipped name in fp16, the quiet run-camera's progress line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import feredge
from feredge.commands.cli import cli
from feredge.errors import FeredgeError

cv2 = pytest.importorskip("cv2")
GROUP = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"


@pytest.fixture(scope="module")
def rec():
    with feredge.Recognizer("feredge-n", device="cpu") as r:
        yield r


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three different photos of three sizes: b is a (darker, contrast-changed) retake of a, whose faces sit
    where a's do — a tracker would take them for the same people; c is a smaller square; notes.txt is no picture."""
    folder = tmp_path_factory.mktemp("photos") / "photos"
    folder.mkdir()
    base = cv2.resize(cv2.imread(str(GROUP)), (960, 640))
    cv2.imwrite(str(folder / "a.jpg"), base)
    retake = np.clip(base.astype(np.float32) * 0.6 + 10, 0, 255).astype(np.uint8)
    cv2.imwrite(str(folder / "b.jpg"), cv2.resize(retake, (1020, 680)))
    cv2.imwrite(str(folder / "c.png"), cv2.resize(base[:, 160:800], (400, 400)))
    (folder / "notes.txt").write_text("not a picture")
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 12-frame MJPG clip of the group photo panning to the right."""
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    small = cv2.resize(cv2.imread(str(GROUP)), (720, 480))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
    for i in range(12):
        writer.write(np.ascontiguousarray(small[:, 4 * i:4 * i + 640]))
    writer.release()
    return path


def test_a_photo_folder_records_every_picture_letterboxed(photos, tmp_path):
    """`run-camera --source DIR --record`: 3 photos of 3 sizes → 3 recorded frames (OpenCV's writer dropped the
    two whose size differed from the first, without a word)."""
    video, lines = tmp_path / "r.avi", tmp_path / "f.jsonl"
    result = CliRunner().invoke(cli, ["run-camera", "--source", str(photos), "--record", str(video),
                                      "--jsonl", str(lines)])
    assert result.exit_code == 0, result.output
    assert "3 frames" in result.output and "(3 frames)" in result.output and "notes.txt" in result.output
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 3 and all(f.shape == (640, 960, 3) for f in frames)
    assert frames[2][300:, :150].max() < 40 and frames[2][:, 400:560].mean() > 40  # c (square) fits: black bars
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [Path(r["image"]).name for r in records] == ["a.jpg", "b.jpg", "c.png"]


def test_photos_share_no_track_or_smoothing(photos, rec):
    """b's faces sit where a's are: as video frames they got a's track ids and a's probabilities mixed into
    theirs (another person's expression shown). As photos each picture stands alone."""
    with feredge.stream(photos, recognizer=rec, smooth=0.4) as frames:
        items = list(frames)
    assert [Path(i.path).name for i in items] == ["a.jpg", "b.jpg", "c.png"] and all(i.detected for i in items)
    for item in items:
        assert sorted(f.track_id for f in item.faces) == list(range(1, len(item.faces) + 1))
        for face in item.faces:
            np.testing.assert_array_equal(face.smoothed, face.probs)
    with feredge.stream(photos, recognizer=rec, smooth=0.4, sequence=True) as frames:  # said to be one scene
        second = list(frames)[1]
    assert any(not np.array_equal(f.smoothed, f.probs) for f in second.faces)


@pytest.mark.parametrize("call, message", [
    (lambda p, c, r: feredge.stream(p, recognizer=r, detect_every=3),
     "a folder of separate photos, each detected on its own: pass sequence=True"),
    (lambda p, c, r: feredge.stream(c, recognizer=r, sequence=True), "this source is a file, expected a folder"),
    (lambda p, c, r: feredge.stream(c, detectevery=3), "unknown option 'detectevery' (did you mean 'detect_every'?)"),
    (lambda p, c, r: feredge.stream(c, recognizer=r, treads=2), "unknown option 'treads'"),
], ids=["detect_every 3 on photos", "sequence on a video", "detectevery=3", "treads=2 beside a recognizer"])
def test_stream_options_that_cannot_apply_are_one_line(photos, clip, rec, call, message):
    with pytest.raises(FeredgeError) as caught:
        call(photos, clip, rec)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_stream_keyword_names_the_known_ones(clip):
    with pytest.raises(FeredgeError) as caught:
        feredge.stream(clip, detectevery=3)
    assert all(k in str(caught.value) for k in ("detect_every", "max_frames", "sequence", "backend", "tta"))


def test_max_frames_gives_the_same_frames_on_every_iteration(clip, photos, rec):
    """A stream made with max_frames=5 yielded frames 0–4, then 5, then 6 on each new iteration."""
    with feredge.stream(clip, recognizer=rec, max_frames=5, smooth=1.0) as frames:
        runs = [[(i.index, [f.label for f in i.faces]) for i in frames] for _ in range(3)]
    assert [[index for index, _ in run] for run in runs] == [[0, 1, 2, 3, 4]] * 3
    assert runs[0] == runs[1] == runs[2]
    with feredge.stream(photos, recognizer=rec, max_frames=2) as frames:
        assert [[Path(i.path).name for i in frames] for _ in range(2)] == [["a.jpg", "b.jpg"]] * 2
    frames.close()
    with pytest.raises(FeredgeError, match="is closed"):
        next(iter(frames))


def test_face_smoothed_confidence_is_what_to_dict_writes(clip, rec):
    with feredge.stream(clip, recognizer=rec, max_frames=3) as frames:
        faces = [f for item in frames for f in item.faces]
    assert faces and all(f.to_dict()["smoothed_confidence"] == round(f.smoothed_confidence, 4) for f in faces)
    assert faces[0].smoothed_confidence == pytest.approx(float(faces[0].smoothed.max()))
    lone = rec(cv2.imread(str(GROUP)))[0]
    assert lone.smoothed_confidence is None and "smoothed_confidence" not in lone.to_dict()


def test_predict_takes_a_folder_of_photos(photos, tmp_path):
    """`feredge predict DIR` refused a folder that run-camera accepts."""
    result = CliRunner().invoke(cli, ["predict", str(photos), "--out", str(tmp_path / "p"), "--json"])
    assert result.exit_code == 0, result.output
    assert "skipped, not pictures (1)" in result.output and "notes.txt" in result.output
    document = json.loads((tmp_path / "p" / "results.json").read_text())
    assert [Path(r["image"]).name for r in document["results"]] == ["a.jpg", "b.jpg", "c.png"]
    assert all(len(r["faces"]) == 3 for r in document["results"])
    paths = [document["model"]] + [r[k] for r in document["results"] for k in ("image", "annotated")]
    assert all(Path(p).is_absolute() for p in paths)  # one rule: every path absolute
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["predict", str(empty), "--out", str(tmp_path / "q")])
    assert result.exit_code != 0 and "empty: no images in the folder" in result.output


def test_models_lists_the_shipped_models_without_torch():
    code = ("import sys; sys.modules['torch'] = None\nfrom feredge.commands.cli import main\n"
            "sys.argv = ['feredge', 'models', '--json']\nmain()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["name"] for r in rows] == ["feredge-n", "feredge-s", "feredge-s-fer2013"]
    assert rows[1]["params"] == 3830471 and rows[2]["precisions"] == ["fp16"] and rows[0]["for"]
    assert "listing only the shipped models" in done.stderr


def test_bench_converts_a_shipped_name_to_fp16(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "--model", "feredge-n", "--precision", "fp16", "--batch", "1",
                                      "--faces", "1", "--duration-s", "0.05", "--warmup-ms", "5", "--device", "cpu",
                                      "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b" / "report.json").read_text())["rows"]
    assert {r["precision"] for r in rows} == {"fp16"} and (tmp_path / "b" / "exports" / "feredge-n.fp16.onnx").is_file()


def test_a_quiet_run_camera_says_how_far_it_is(photos, monkeypatch):
    """With no window, JSONL or recording, run-camera printed nothing until the end."""
    import feredge.commands.camera.app as app

    monkeypatch.setattr(app, "PROGRESS_S", 0.0)
    result = CliRunner().invoke(cli, ["run-camera", "--source", str(photos)])
    assert result.exit_code == 0, result.output
    assert "1 frames" in result.output and "FPS, 3 faces so far" in result.output


@pytest.mark.parametrize("height", [480, 2160])
def test_the_overlay_timing_is_readable_on_white_and_sized_with_the_frame(height):
    """White text with a thin outline vanished on light backgrounds, and stayed 0.5-scale text on a 4K frame."""
    from feredge.vision.overlay import draw_hud

    frame = np.full((height, height * 16 // 9, 3), 255, np.uint8)
    draw_hud(frame, 29.7, {"capture": 1.2, "detect": 30.1, "classify": 4.0, "draw": 2.2})
    dark = frame.mean(2) < 80
    rows, cols = np.flatnonzero(dark.any(1)), np.flatnonzero(dark.any(0))
    box = frame[rows.min():rows.max() + 1, cols.min():cols.max() + 1].mean(2)
    assert (box < 80).mean() > 0.6 and (box > 200).mean() > 0.05  # a dark box with light text on it
    assert 0.15 < (rows.max() - rows.min()) / height < 0.3  # the same share of the frame at 480p and 4K


def test_a_second_loop_over_a_busy_stream_is_refused_not_left_waiting(clip, rec):
    """A second loop restarted the file under the first one, which then waited forever on a closed source."""
    with feredge.stream(clip, recognizer=rec, max_frames=4) as frames:
        first = iter(frames)
        assert next(first).index == 0
        with pytest.raises(FeredgeError, match="already being read by another loop"):
            next(iter(frames))
        assert [i.index for i in first] == [1, 2, 3]
        for _ in frames:  # a loop left with break ends, so the next one starts afresh
            break
        assert [i.index for i in frames] == [0, 1, 2, 3]


def test_a_folders_subfolders_and_dead_links_are_named_not_passed_over(photos, tmp_path):
    """A sub-folder and a .jpg symbolic link loop were left out of a folder source without a word."""
    folder = Path(shutil.copytree(photos, tmp_path / "photos"))
    (folder / "more").mkdir()
    (folder / "loop.jpg").symlink_to("loop.jpg")
    result = CliRunner().invoke(cli, ["run-camera", "--source", str(folder)])
    assert result.exit_code == 0, result.output
    assert "skipped, not pictures (2): more/; notes.txt" in result.output
    assert "unreadable pictures (1)" in result.output and "loop.jpg: symbolic link loop" in result.output
    assert "3 frames" in result.output


def _without_torch(args: list[str]) -> subprocess.CompletedProcess:
    code = ("import sys; sys.modules['torch'] = None\nfrom feredge.commands.cli import main\n"
            f"sys.argv = {['feredge', *args]!r}\nmain()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_fp16_export_of_a_shipped_model_needs_no_torch(tmp_path):
    """`export --model feredge-n --fp16` needed the train extra (5.9 GB of CUDA torch) though its ONNX ships."""
    from feredge import artifact

    done = _without_torch(["export", "--model", "feredge-n", "--fp16", "--out", str(tmp_path / "e")])
    assert done.returncode == 0, done.stderr
    assert "parity vs the fp32 ONNX" in done.stdout and "top-1 agreement 1.0000" in done.stdout
    assert artifact.read(tmp_path / "e" / "feredge-n.fp16.onnx").precision == "fp16"
    refused = _without_torch(["export", "--model", "feredge-n", "--int8", "--calib-data", str(tmp_path),
                              "--out", str(tmp_path / "f")])
    assert refused.returncode != 0
    assert "--int8, --engine and --batch rebuild the model from its checkpoint" in refused.stderr


def test_predict_on_a_folder_passes_over_a_damaged_picture_and_names_it(tmp_path):
    """As run-camera does: a folder's unreadable picture is named with its reason and passed over; a damaged
    file named on the command line still stops the command."""
    import shutil

    from click.testing import CliRunner

    from feredge.commands.cli import cli

    group = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(group, photos / "a.jpg")
    (photos / "broken.jpg").write_bytes(group.read_bytes()[:1000])
    result = CliRunner().invoke(cli, ["predict", str(photos), "--json", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "unreadable pictures (1), passed over:" in result.output
    assert "broken.jpg: damaged or truncated" in result.output
    assert [Path(r["image"]).name for r in json.loads(result.output[result.output.index("{"):])["results"]] == ["a.jpg"]
    named = CliRunner().invoke(cli, ["predict", str(photos / "broken.jpg"), "--out", str(tmp_path / "o2")])
    assert named.exit_code != 0 and "broken.jpg: damaged or truncated" in named.output
