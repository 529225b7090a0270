"""Bad input, command by command: each case gives a one-line error naming the file/field (exit ≠ 0, no
traceback) or is handled without losing anything. One table; each row builds its own broken input."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from feredge.cli import cli
from tests.conftest import make_fer_images

SMALL = {"widths": [8, 16, 16, 16], "depths": [1, 1, 1, 1], "stem": 8}


@pytest.fixture(scope="module")
def run(prepared_fer, tmp_path_factory) -> Path:
    """A finished one-epoch training run and its fp32 ONNX export."""
    out = tmp_path_factory.mktemp("bad") / "run"
    result = CliRunner().invoke(cli, ["train", "--data", str(prepared_fer), "--out", str(out), "--epochs", "1",
                                      "--batch-size", "16", "--device", "cpu", "--set", "val_fraction=0.25",
                                      "--set", f"model_kwargs={json.dumps(SMALL)}"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["export", "--model", str(out / "best.safetensors"), "--out", str(out / "exp")])
    assert result.exit_code == 0, result.output
    return out


def _copy_ckpt(run: Path, dst: Path, mangle) -> Path:
    """best.safetensors + its sidecar copied to ``dst``, the weights passed through ``mangle``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(mangle((run / "best.safetensors").read_bytes()))
    shutil.copy(run / "best.safetensors.json", str(dst) + ".json")
    return dst


def _onnx_with_meta(run: Path, dst: Path, edit) -> Path:
    """The exported ONNX with its feredge metadata changed by ``edit(dict)``."""
    import onnx

    proto = onnx.load(str(run / "exp" / "best.onnx"))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    edit(meta)
    del proto.metadata_props[:]
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, json.dumps(v)
    onnx.save(proto, str(dst))
    return dst


def _huge_png(path: Path, side: int = 20000) -> Path:
    """A PNG whose header says side×side (decoders read the size before any pixel)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (side + 1)))
                     + chunk(b"IEND", b""))
    return path


def _prepared_copy(prepared: Path, dst: Path, edit) -> Path:
    shutil.copytree(prepared, dst)
    edit(dst)
    return dst


def _toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# (id, builder(run, prepared, tmp) -> argv, expected fragment of the one-line error)
CASES = [
    ("eval truncated safetensors",
     lambda r, d, t: ["eval", "--model", str(_copy_ckpt(r, t / "c.safetensors", lambda b: b[:100])), "--data", str(d)],
     "not a readable .safetensors file"),
    ("eval garbage safetensors",
     lambda r, d, t: ["eval", "--model", str(_copy_ckpt(r, t / "c.safetensors", lambda b: b"\xff" * 64)), "--data", str(d)],
     "not a readable .safetensors file"),
    ("export truncated safetensors",
     lambda r, d, t: ["export", "--model", str(_copy_ckpt(r, t / "c.safetensors", lambda b: b[:-50])), "--out", str(t / "e")],
     "not a readable .safetensors file"),
    ("predict truncated safetensors",
     lambda r, d, t: ["predict", "--model", str(_copy_ckpt(r, t / "c.safetensors", lambda b: b[:100])),
                      "--out", str(t / "p")],
     "not a readable .safetensors file"),
    ("train init= truncated safetensors",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(t / "o"), "--device", "cpu", "--set",
                      f"model_kwargs={json.dumps(SMALL)}", "--set", "val_fraction=0.25", "--set",
                      f"init={_copy_ckpt(r, t / 'c.safetensors', lambda b: b[:100])}"],
     "not a readable .safetensors file"),
    ("eval checkpoint without sidecar",
     lambda r, d, t: ["eval", "--model", str(shutil.copy(r / "best.safetensors", t / "lone.safetensors")), "--data", str(d)],
     "lone.safetensors.json: missing"),
    ("eval intact copy (control row)",
     lambda r, d, t: ["eval", "--model", str(_copy_ckpt(r, t / "c.safetensors", lambda b: b)), "--data", str(d), "--device", "cpu",
                      "--out", str(t / "ev")],
     None),
    ("eval sidecar without classes",
     lambda r, d, t: ["eval", "--model", str(_edit_sidecar(_copy_ckpt(r, t / "c.safetensors", lambda b: b), lambda m: m.pop("classes"))),
                      "--data", str(d)],
     "c.safetensors.json: missing field 'classes'"),
    ("eval missing file", lambda r, d, t: ["eval", "--model", str(t / "nope.onnx"), "--data", str(d)], "nope.onnx: model file not found"),
    ("resume from truncated last_state.pt",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(_truncated_state(r, t)), "--device", "cpu", "--resume",
                      "--epochs", "1", "--batch-size", "16", "--set", "val_fraction=0.25",
                      "--set", f"model_kwargs={json.dumps(SMALL)}"],
     "last_state.pt: cannot be read"),
    ("resume with another lr",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(shutil.copytree(r, t / "r")), "--device", "cpu",
                      "--resume", "--epochs", "1", "--batch-size", "16", "--lr", "0.5", "--set", "val_fraction=0.25",
                      "--set", f"model_kwargs={json.dumps(SMALL)}"],
     "lr 0.1 -> 0.5"),
    ("train soft_labels on data without FER+ votes",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(t / "o"), "--device", "cpu", "--set", "soft_labels=true"],
     "soft_labels=true but its training split has no soft labels"),
    ("train select_metric=ferplus_accuracy without FER+ votes",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(t / "o"), "--device", "cpu", "--set",
                      "select_metric=ferplus_accuracy"],
     "select_metric=ferplus_accuracy but the validation split has no FER+"),
    ("train soft_label_share without soft_labels",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(t / "o"), "--device", "cpu", "--set", "soft_label_share=0.5"],
     "soft_label_share=0.5 mixes soft labels into the target, but soft_labels=false"),
    ("train soft_label_share outside [0, 1]",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(t / "o"), "--device", "cpu", "--set", "soft_label_share=1.5"],
     "field 'soft_label_share' is 1.5, expected a share in [0, 1]"),
    ("train into a finished run",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(r), "--device", "cpu"],
     "already holds a training run"),
    ("meta.json is a JSON list",
     lambda r, d, t: ["data", "info", str(_prepared_copy(d, t / "m", lambda p: (p / "meta.json").write_text("[1, 2]")))],
     "expected an object"),
    ("meta.json not UTF-8",
     lambda r, d, t: ["data", "info", str(_prepared_copy(d, t / "m", lambda p: (p / "meta.json").write_bytes(b"\xff\xfe{")))],
     "not UTF-8"),
    ("truncated images.npy",
     lambda r, d, t: ["eval", "--model", str(r / "best.safetensors"), "--device", "cpu", "--data", str(_prepared_copy(
         d, t / "m", lambda p: (p / "val" / "images.npy").write_bytes((p / "val" / "images.npy").read_bytes()[:200])))],
     "not a readable .npy array"),
    ("images.npy of float32",
     lambda r, d, t: ["eval", "--model", str(r / "best.safetensors"), "--device", "cpu", "--data", str(_prepared_copy(
         d, t / "m", lambda p: np.save(p / "val" / "images.npy", np.load(p / "val" / "images.npy").astype(np.float32))))],
     "expected uint8 [N, 48, 48, 1]"),
    ("images.npy of another shape",
     lambda r, d, t: ["eval", "--model", str(r / "best.safetensors"), "--device", "cpu", "--data", str(_prepared_copy(
         d, t / "m", lambda p: np.save(p / "val" / "images.npy", np.load(p / "val" / "images.npy")[:, :40])))],
     "expected uint8 [N, 48, 48, 1]"),
    ("CSV with a non-UTF-8 byte",
     lambda r, d, t: ["data", "prepare", "fer2013", str(_bad_bytes_csv(t)), "--out", str(t / "o")],
     "row 3: byte 0xff is not UTF-8"),
    ("predict a 20000x20000 PNG",
     lambda r, d, t: ["predict", str(_huge_png(t / "huge.png")), "--out", str(t / "p")],
     "more than 100 MP"),
    ("predict garbage ONNX",
     lambda r, d, t: ["predict", "--model", str(_write(t / "g.onnx", b"not a model")), "--out", str(t / "p")],
     "cannot load this file as an ONNX model"),
    ("predict ONNX whose input is not its input_spec",
     lambda r, d, t: ["predict", "--model", str(_onnx_with_meta(r, t / "m.onnx", lambda m: m["input_spec"].update(size=64))),
                      "--out", str(t / "p")],
     "but its input_spec says [N, 1, 64, 64]"),
    ("ONNX with 7 outputs and 5 class names",
     lambda r, d, t: ["predict", "--model", str(_onnx_with_meta(r, t / "m.onnx", lambda m: m.update(classes=m["classes"][:5]))),
                      "--out", str(t / "p")],
     "outputs 7 scores but field 'classes' names 5"),
    ("ONNX without feredge metadata",
     lambda r, d, t: ["eval", "--model", str(_onnx_with_meta(r, t / "m.onnx", lambda m: m.clear())), "--data", str(d)],
     "no feredge metadata"),
    ("export --calib-size 0",
     lambda r, d, t: ["export", "--model", str(r / "best.safetensors"), "--out", str(t / "e"), "--int8", "--calib-data", str(d),
                      "--calib-size", "0"],
     "--calib-size 0: expected a positive number"),
    ("export --batch -1", lambda r, d, t: ["export", "--model", str(r / "best.safetensors"), "--out", str(t / "e"), "--batch", "-1"],
     "--batch -1: expected a positive batch size"),
    ("export --batch 0", lambda r, d, t: ["export", "--model", str(r / "best.safetensors"), "--out", str(t / "e"), "--batch", "0"],
     "--batch 0: expected a positive batch size"),
    ("export --implicit-int8 without --engine",
     lambda r, d, t: ["export", "--model", str(r / "best.safetensors"), "--out", str(t / "e"), "--implicit-int8"],
     "--implicit-int8 builds the engine from the calibration cache"),
    ("export --out is a file",
     lambda r, d, t: ["export", "--model", str(r / "best.safetensors"), "--out", str(_write(t / "f", b""))], "--out is a file"),
    ("predict --out is a file", lambda r, d, t: ["predict", "--out", str(_write(t / "f", b""))], "--out is a file"),
    ("train --out is a file",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(_write(t / "f", b"")), "--device", "cpu"], "--out is a file"),
    ("prepare --out is a file",
     lambda r, d, t: ["data", "prepare", "fer2013", str(t), "--out", str(_write(t / "f", b""))], "--out is a file"),
    ("eval --out is a file",
     lambda r, d, t: ["eval", "--model", str(r / "best.safetensors"), "--data", str(d), "--out", str(_write(t / "f", b""))],
     "--out is a file"),
    ("explain --out is a file",
     lambda r, d, t: ["explain", "--data", str(d), "--model", str(r / "best.safetensors"), "--out", str(_write(t / "f", b""))],
     "--out is a file"),
    ("bench --out is a file", lambda r, d, t: ["bench", "--out", str(_write(t / "f", b""))], "--out is a file"),
    ("run-camera --jsonl is a folder",
     lambda r, d, t: ["run-camera", "--source", str(t), "--jsonl", str(t), "--overwrite"], "--jsonl takes a file name"),
    ("bench --compare a report without rows",
     lambda r, d, t: ["bench", "--compare", str(_bench_report(t / "a.json", [])), str(_bench_report(t / "b.json"))],
     "a.json: field 'rows' holds no measurements"),
    ("bench --compare a row with zero latency",
     lambda r, d, t: ["bench", "--compare", str(_bench_report(t / "a.json")), str(_bench_report(t / "b.json", p50=0.0))],
     "b.json: rows[0] field 'p50_ms' is 0.0, expected a latency > 0 ms"),
    ("train --device gpu0",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(t / "o"), "--device", "gpu0"],
     "expected auto, cpu, cuda or cuda:N"),
    ("train val_fraction=1",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(t / "o"), "--set", "val_fraction=1"],
     "field 'val_fraction' is 1.0, expected a fraction in (0, 1)"),
    ("train epochs=1.5",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(t / "o"), "--set", "epochs=1.5"],
     "field 'epochs' is 1.5, expected int"),
    ("train batch_size=0",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(t / "o"), "--batch-size", "0"],
     "field 'batch_size' is 0, expected a positive integer"),
    ("TOML whose train is not a table",
     lambda r, d, t: ["train", "--config", str(_toml(t / "c.toml", "train = 3\n")), "--data", str(d)],
     "'train' is int, expected a table"),
    ("TOML with a misspelt table",
     lambda r, d, t: ["train", "--config", str(_toml(t / "c.toml", "[trian]\nepochs = 3\n")), "--data", str(d)],
     "table [trian] is not known"),
    ("soup of one checkpoint",
     lambda r, d, t: ["soup", str(r / "best.safetensors"), "--out", str(t / "s.safetensors")],
     "a soup needs at least two checkpoints"),
    ("soup of one checkpoint named twice",
     lambda r, d, t: ["soup", str(r / "best.safetensors"), str(r / "best.safetensors"), "--out", str(t / "s.safetensors")],
     "the same checkpoint is named twice"),
    ("soup --out exists",
     lambda r, d, t: ["soup", str(r / "best.safetensors"), str(r / "last.safetensors"), "--out",
                      str(_write(t / "s.safetensors", b"keep"))],
     "s.safetensors: already exists; pass --overwrite"),
    ("soup --out not safetensors",
     lambda r, d, t: ["soup", str(r / "best.safetensors"), str(r / "last.safetensors"), "--out", str(t / "s.pt")],
     "--out must name a .safetensors file"),
    ("soup --holdout not a fraction",
     lambda r, d, t: ["soup", str(r / "best.safetensors"), str(r / "last.safetensors"), "--out", str(t / "s.safetensors"),
                      "--holdout", "1.5"],
     "holdout: expected a fraction of the validation carve, 0 ≤ h < 1, got 1.5"),
    ("prepare --skip-bad a folder whose images are all bad",
     lambda r, d, t: ["data", "prepare", "fer2013", str(_tree_of(t, {"train/happy/a.png": b"not a png",
                                                                      "train/sad/b.jpg": b"\xff\xd8 cut"})),
                      "--out", str(t / "o"), "--skip-bad"],
     "src/train: no usable images, all 2 were bad"),
    ("prepare a fer2013 tree with a contempt folder",
     lambda r, d, t: ["data", "prepare", "fer2013", str(_tree_of(t, {"train/happy/a.png": _png(),
                                                                      "train/contempt/b.png": _png()})),
                      "--out", str(t / "o")],
     "src/train/contempt: 'contempt' is not a FER2013 class (known: angry, disgust, fear, happy, sad, surprise, neutral)"),
    ("data info on a prepared folder whose meta.json lists no splits",
     lambda r, d, t: ["data", "info", str(_prepared_copy(d, t / "m", lambda p: _edit_json(p / "meta.json",
                                                                                          lambda m: m.pop("splits"))))],
     "meta.json: no splits"),
    ("data info on a prepared folder without its split folders",
     lambda r, d, t: ["data", "info", str(_prepared_copy(d, t / "m", lambda p: [shutil.rmtree(p / s) for s in ("train", "val")]))],
     "train/images.npy: missing (meta.json lists split 'train')"),
    ("soup ingredient whose sidecar lacks its config",
     lambda r, d, t: ["soup", str(_edit_sidecar(_copy_ckpt(r, t / "c.safetensors", lambda b: b),
                                                lambda m: m["details"].pop("config"))),
                      str(r / "last.safetensors"), "--out", str(t / "s.safetensors")],
     "c.safetensors.json: missing field 'details.config'"),
    ("predict on a missing image",
     lambda r, d, t: ["predict", str(t / "missing.jpg"), "--out", str(t / "o")], "missing.jpg: file not found"),
    ("predict on an empty file",
     lambda r, d, t: ["predict", str(_write(t / "empty.jpg", b"")), "--out", str(t / "o")], "empty.jpg: empty file"),
    ("run-camera on a text file named .jpg",
     lambda r, d, t: ["run-camera", "--source", str(_write(t / "notes.jpg", b"not a picture\n"))],
     "notes.jpg: cannot read image"),
    ("run-camera --display with a headless OpenCV",
     lambda r, d, t: ["run-camera", "--source", str(_blank_jpeg(t)), "--display"], "this OpenCV has no GUI"),
    ("bench --precision fp16 of an ONNX file",
     lambda r, d, t: ["bench", "--model", str(r / "exp" / "best.onnx"), "--precision", "fp16", "--out", str(t / "b")],
     "applies to checkpoints"),
    ("predict on a truncated JPEG",
     lambda r, d, t: ["predict", str(_truncated_jpeg(t)), "--out", str(t / "o")],
     "half.jpg: damaged or truncated image"),
    ("explain an image without faces",
     lambda r, d, t: ["explain", str(_blank_jpeg(t)), "--model", str(r / "best.safetensors"), "--out", str(t / "o")],
     "no faces found in"),
    ("explain --data with the classes in another order",
     lambda r, d, t: ["explain", "--data", str(_reordered_classes(d, t)), "--model", str(r / "best.safetensors"),
                      "--out", str(t / "o")],
     "a grid of mistakes would be mislabelled"),
    ("run-camera --detect-max-side 10",
     lambda r, d, t: ["run-camera", "--source", str(t), "--detect-max-side", "10"], "--detect-max-side 10: expected at least 48 pixels"),
    ("run-camera --max-frames -1",
     lambda r, d, t: ["run-camera", "--source", str(t), "--max-frames", "-1"], "--max-frames -1: expected 0"),
    ("prepare twice Training and train",
     lambda r, d, t: ["data", "prepare", "fer2013", str(_two_train_folders(t)), "--out", str(t / "o")],
     "both hold split 'train'"),
]


def _bench_report(path: Path, rows: list | None = None, p50: float = 1.0) -> Path:
    """A bench report.json as `feredge bench` writes it, with ``rows`` (default: one row of latency ``p50``)."""
    row = {"artifact": "m.onnx", "model": "m", "precision": "fp32", "measure": "model", "batch": 1, "p50_ms": p50}
    report = {"format": "feredge-bench-v1", "environment": {"cpu": "x"}, "rows": [row] if rows is None else rows}
    path.write_text(json.dumps(report))
    return path


def _edit_sidecar(ckpt: Path, edit) -> Path:
    side = Path(str(ckpt) + ".json")
    meta = json.loads(side.read_text())
    edit(meta)
    side.write_text(json.dumps(meta))
    return ckpt


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_state(run: Path, tmp: Path) -> Path:
    dst = shutil.copytree(run, tmp / "r")
    state = dst / "last_state.pt"
    state.write_bytes(state.read_bytes()[:64])
    return dst


def _bad_bytes_csv(tmp: Path) -> Path:
    images, labels = make_fer_images(1)
    pixels = " ".join(map(str, images[0].reshape(-1)))
    return _write(tmp / "fer.csv", f"emotion,pixels,Usage\n0,{pixels},Training\n".encode() + b"\xff,1,Training\n")


def _truncated_jpeg(tmp: Path) -> Path:
    src = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"
    data = src.read_bytes()
    return _write(tmp / "half.jpg", data[:len(data) // 2])


def _blank_jpeg(tmp: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (320, 240), (128, 128, 128)).save(tmp / "blank.jpg")
    return tmp / "blank.jpg"


def _reordered_classes(data: Path, tmp: Path) -> Path:
    dst = shutil.copytree(data, tmp / "reordered")
    meta = json.loads((dst / "meta.json").read_text())
    meta["classes"] = meta["classes"][::-1]
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


def _two_train_folders(tmp: Path) -> Path:
    from PIL import Image

    for split in ("train", "Training"):
        (tmp / "src" / split / "happy").mkdir(parents=True)
        Image.new("L", (48, 48)).save(tmp / "src" / split / "happy" / "a.png")
    return tmp / "src"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(case, run, prepared_fer, tmp_path):
    _, build, fragment = case
    argv = build(run, prepared_fer, tmp_path)
    result = CliRunner().invoke(cli, argv)
    if fragment is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), f"traceback instead of a one-line error: {result.exception!r}"
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and fragment in lines[0], result.output


def test_a_bug_keeps_its_traceback_under_a_line_that_says_so(monkeypatch):
    import feredge.models.profile as profile

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(profile, "count_params", broken)
    result = CliRunner().invoke(cli, ["models"])
    assert isinstance(result.exception, ZeroDivisionError)
    assert "internal error — a bug in feredge, not in your input" in result.output


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (48, 48), 100).save(buf, "PNG")
    return buf.getvalue()


def _tree_of(tmp: Path, files: dict[str, bytes]) -> Path:
    """``tmp/src`` holding ``files`` (relative path → bytes)."""
    for rel, data in files.items():
        (tmp / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "src" / rel).write_bytes(data)
    return tmp / "src"


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))

