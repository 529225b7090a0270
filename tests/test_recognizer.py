"""feredge.Recognizer: the one frame path — equal to `feredge predict`, safe on empty frames, strict about
the crops it classifies, torch-free, and cheap to import."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import feredge
from feredge.errors import FeredgeError

cv2 = pytest.importorskip("cv2")
ROOT = Path(__file__).resolve().parents[1]
GROUP = ROOT / "feredge" / "media" / "group.jpg"


@pytest.fixture(scope="module")
def rec():
    with feredge.Recognizer() as r:
        yield r


@pytest.mark.parametrize("model", [None, "feredge-n"])
def test_recognizer_gives_the_faces_predict_writes(tmp_path, model):
    from feredge.commands.cli import cli

    args = ["predict", str(GROUP), "--json", "--out", str(tmp_path / "p")] + (["--model", model] if model else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    cli_faces = json.loads(result.output[result.output.index("{"):])["results"][0]["faces"]
    with feredge.Recognizer(model) as r:
        faces = r(cv2.imread(str(GROUP)))
    assert len(faces) == 3
    assert [f.to_dict() for f in faces] == cli_faces


def test_a_frame_without_faces_gives_an_empty_list(rec):
    assert rec(np.zeros((480, 640, 3), np.uint8)) == []
    assert rec(np.full((480, 640, 3), 255, np.uint8), np.zeros((0, 4))) == []
    assert rec.classify([]).shape == (0, len(rec.classes))


def test_face_fields_and_given_boxes(rec):
    frame = cv2.imread(str(GROUP))
    faces = rec(frame)
    face = faces[0]
    assert face.label in rec.classes and face.confidence == pytest.approx(max(face.probabilities.values()))
    assert face.landmarks.shape == (5, 2) and 0 < face.score <= 1
    again = rec(frame, np.array([f.box for f in faces]))  # known boxes: no detection, no score
    assert [f.label for f in again] == [f.label for f in faces] and again[0].score is None
    np.testing.assert_allclose(again[0].probs, face.probs, atol=1e-6)


def test_classify_accepts_the_documented_layouts_and_agrees_with_eval(rec, prepared_fer):
    from feredge.data.store import load_split
    from feredge.metrics import softmax
    from feredge.vision.preprocess import preprocess_faces

    faces = np.asarray(load_split(prepared_fer, "val").images)[:6]  # (6, 48, 48, 1) gray, as training stores them
    expected = softmax(rec.classifier.runner.infer(preprocess_faces(faces, rec.info.input_spec)))
    for layout in (faces, faces[..., 0], list(faces[..., 0])):
        np.testing.assert_allclose(rec.classify(layout), expected, atol=1e-5)
    np.testing.assert_allclose(rec.classify(faces[0, ..., 0]), expected[:1], atol=1e-5)  # one (H, W) face
    bgr = cv2.cvtColor(cv2.imread(str(GROUP))[300:600, 400:620], cv2.COLOR_BGR2BGRA)[..., :3]
    np.testing.assert_allclose(rec.classify(bgr), rec.classify(bgr[..., ::-1].copy(), color="rgb"), atol=1e-6)
    mixed = rec.classify([bgr, faces[1, ..., 0], cv2.resize(bgr, (60, 90))])  # sizes differ: each resized
    assert mixed.shape == (3, 7) and np.allclose(mixed.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("crops, message", [
    (np.zeros((2, 48, 48), np.float32), "face 0: float32 pixels; expected uint8"),
    (np.zeros((2, 48, 48, 2), np.uint8), "faces have shape [2, 48, 48, 2]: 2 channels; expected gray (H, W)"),
    (np.zeros((232, 214, 4), np.uint8), "faces have shape [232, 214, 4]: 4 channels; expected gray (H, W)"),
    (np.zeros((232, 214, 2), np.uint8), "faces have shape [232, 214, 2]: 2 channels; expected gray (H, W)"),
    (np.zeros((3, 48, 48, 4), np.uint8), "cv2.COLOR_BGRA2BGR"),
    ([np.zeros((48, 48, 4), np.uint8)], "face 0 has shape [48, 48, 4]; expected (H, W), (H, W, 1) or (H, W, 3)"),
    (np.zeros((1, 1, 48, 48, 1), np.uint8), "faces have shape [1, 1, 48, 48, 1]; expected"),
    ("face.jpg", "faces is a str; expected a uint8 array"),
])
def test_classify_rejects_other_layouts_in_one_line(rec, crops, message):
    with pytest.raises(FeredgeError) as err:
        rec.classify(crops)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("frame, boxes, message", [
    (np.zeros((48, 48, 2), np.uint8), None, "expected a uint8 array (H, W, 3) BGR as cv2.imread gives"),
    (np.zeros((48, 48, 3), np.float32), None, "expected a uint8 array (H, W, 3) BGR as cv2.imread gives"),
    (np.zeros((48, 48, 3), np.uint8), np.array([[0, 0, 0, 10]]), "positive width and height"),
    (np.zeros((48, 48, 3), np.uint8), np.zeros((2, 3)), "boxes have shape [2, 3]; expected (N, 4)"),
    (np.zeros((48, 48, 3), np.uint8), np.array([[5000, 5000, 50, 50]]), "lies wholly outside the 48×48 frame"),
])
def test_bad_frames_and_boxes_are_one_line(rec, frame, boxes, message):
    with pytest.raises(FeredgeError) as err:
        rec(frame, boxes)
    assert message in str(err.value)


def test_a_closed_recognizer_says_so():
    rec = feredge.Recognizer("feredge-n")
    rec.close()
    with pytest.raises(FeredgeError, match="is closed; create a new one"):
        rec.classify(np.zeros((1, 48, 48), np.uint8))
    rec.close()  # twice is harmless


def test_options_are_checked_without_cli_flags():
    with pytest.raises(FeredgeError, match="detector 'foo': expected one of yunet, haar"):
        feredge.Recognizer(detector="foo")
    with pytest.raises(FeredgeError, match="detect_max_side 0: expected at least 48 pixels"):
        feredge.Recognizer(detect_max_side=0)
    with pytest.raises(FeredgeError, match="device 'tpu'"):
        feredge.Recognizer(device="tpu")
    with pytest.raises(FeredgeError, match="margin -1: expected 0 ≤ margin ≤ 1"):
        feredge.Recognizer(margin=-1)
    with pytest.raises(FeredgeError, match="threads 10000: expected 0 .ONNX Runtime chooses. up to"):
        feredge.Recognizer(threads=10000)  # it started 10,000 threads and stalled the machine
    with pytest.raises(FeredgeError, match="server 'grpc://h:1': expected host:port"):
        feredge.Recognizer(server="grpc://h:1")


def test_a_shipped_name_with_the_torch_backend_is_its_checkpoint():
    pytest.importorskip("torch")
    with feredge.Recognizer("feredge-n", backend="torch") as rec:
        assert rec.path.name == "feredge-n.safetensors" and rec.backend == "torch"


def test_stream_tracks_faces_of_a_video(tmp_path, rec):
    path = tmp_path / "clip.avi"
    frame = cv2.resize(cv2.imread(str(GROUP)), (640, 426))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 426))
    for _ in range(5):
        writer.write(frame)
    writer.release()
    with feredge.stream(path, recognizer=rec, detect_every=2, smooth=1.0) as frames:
        items = [(item.index, item.detected, [(f.track_id, f.label, f.smoothed_label) for f in item.faces])
                 for item in frames]
    assert [i[0] for i in items] == list(range(5)) and [i[1] for i in items] == [True, False, True, False, True]
    assert all(sorted(t for t, _, _ in faces) == [1, 2, 3] for _, _, faces in items)
    assert all(label == smoothed for _, _, faces in items for _, label, smoothed in faces)  # smooth=1: none
    with pytest.raises(FeredgeError, match="max_frames -1"):
        feredge.stream(path, recognizer=rec, max_frames=-1)

    for _ in feredge.stream(path, recognizer=rec):  # left without close() or `with`
        break
    gc.collect()
    deadline = time.monotonic() + 10
    while any(t.name == "feredge-capture" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "feredge-capture" for t in threading.enumerate())  # its reader thread ended with it


def test_import_is_lazy_and_the_api_runs_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import feredge\n"
            "assert not any(m in sys.modules for m in ('cv2', 'onnxruntime', 'feredge.recognizer')), sys.modules\n"
            "import cv2\n"
            f"faces = feredge.Recognizer()(cv2.imread({str(GROUP)!r}))\n"
            "assert len(faces) == 3 and 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
            "print(faces[0].label)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_frames_in_rgb_and_gray_give_the_bgr_answer(rec):
    import cv2

    frame = cv2.imread(str(GROUP))
    want = rec(frame)
    assert want, "the bundled photo has faces"
    for other, color in ((np.ascontiguousarray(frame[..., ::-1]), "rgb"), (frame, "bgr")):
        got = rec(other, color=color)
        assert [f.box for f in got] == [f.box for f in want]
        np.testing.assert_allclose([f.probs for f in got], [f.probs for f in want], atol=1e-6)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    faces = rec(gray)  # a gray model sees the same pixels, the detector a three-channel copy
    assert len(faces) == len(rec(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)))


def test_faces_come_left_to_right(rec):
    import cv2

    boxes = [f.box[0] for f in rec(cv2.imread(str(GROUP)))]
    assert boxes == sorted(boxes) and len(boxes) >= 2


@pytest.mark.parametrize("frame, message", [
    ("photo.jpg", "frame is a path ('photo.jpg'); read the picture first: feredge.read_image(path)"),
    (np.zeros((60, 80, 4), np.uint8), "cv2.COLOR_BGRA2BGR"),
    (np.zeros((60, 80, 3), np.float32), "frame is a float32 array of shape (60, 80, 3); expected a uint8 array"),
])
def test_frames_that_cannot_be_read_are_refused_in_one_line(rec, frame, message):
    with pytest.raises(FeredgeError) as err:
        rec(frame)
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FeredgeError, match="color 'hsv': expected one of bgr, rgb"):
        rec(np.zeros((60, 80, 3), np.uint8), color="hsv")


def test_a_box_mostly_outside_the_frame_is_refused(rec):
    frame = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(FeredgeError, match=r"lies 94 % outside the 100×100 frame"):
        rec(frame, np.array([[-47, 0, 50, 50]]))  # 3×50 of its 50×50 inside
    assert len(rec(frame, np.array([[-10, -10, 50, 50]]))) == 1  # a face at the edge, mostly inside


def test_one_recognizer_shared_by_threads_answers_as_alone(rec):
    """Calls take turns: every thread gets exactly the single-threaded answer."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    frames = [cv2.imread(str(GROUP)), cv2.resize(cv2.imread(str(GROUP)), None, fx=0.6, fy=0.6)]
    want = [[f.to_dict() for f in rec(frame)] for frame in frames]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: [f.to_dict() for f in rec(frames[i % 2])], range(24)))
    assert got == [want[i % 2] for i in range(24)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(threads=1.5), "threads 1.5: expected an integer"),
    (dict(max_faces=2.5), "max_faces 2.5: expected an integer"),
    (dict(model=str(ROOT / "feredge" / "weights" / "feredge-n.int8-cpu.onnx"), precision="fp32"),
     "holds a model in int8-cpu, and precision fp32 was asked"),
    (dict(model="feredge-s-fer2013", precision="fp32"), "it ships without its checkpoint"),
])
def test_options_a_model_cannot_take_are_refused_in_one_line(kwargs, message):
    with pytest.raises(FeredgeError) as err:
        feredge.Recognizer(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_device_is_spelt_as_in_the_api_on_every_command(tmp_path):
    """cuda:N passes the command line (and is then judged where the model runs); a device nobody knows does not."""
    from feredge.commands.cli import cli

    for command in (["predict"], ["eval", "--data", str(tmp_path)], ["run-camera"], ["bench"], ["serve"],
                    ["explain"]):
        result = CliRunner().invoke(cli, [*command, "--device", "tpu"])
        assert result.exit_code == 2 and "expected one of auto, cpu, cuda" in result.output, command
    result = CliRunner().invoke(cli, ["predict", "--device", "cuda:3", "--out", str(tmp_path / "p")])
    assert "Invalid value for '--device'" not in result.output
