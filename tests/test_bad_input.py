"""Bad input, command by command: each case gives a one-line error naming the file/field (exit ≠ 0, no
traceback) or is handled without losing anything. One table; each row builds its own broken input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from feredge.commands.cli import cli
from tests.broken_inputs import (
    bad_bytes_csv,
    bench_report,
    blank_jpeg,
    copy_ckpt,
    edit_json,
    edit_sidecar,
    huge_png,
    onnx_with_meta,
    png_bytes,
    prepared_copy,
    reordered_classes,
    toml_file,
    tree_of,
    truncated_jpeg,
    truncated_state,
    two_train_folders,
    without,
    write_file,
)
from tests.support import SMALL


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


# (id, builder(run, prepared, tmp) -> argv, expected fragment of the one-line error)
CASES = [
    ("eval truncated safetensors",
     lambda r, d, t: ["eval", "--model", str(copy_ckpt(r, t / "c.safetensors", lambda b: b[:100])), "--data", str(d)],
     "not a readable .safetensors file"),
    ("eval garbage safetensors",
     lambda r, d, t: ["eval", "--model", str(copy_ckpt(r, t / "c.safetensors", lambda b: b"\xff" * 64)), "--data", str(d)],
     "not a readable .safetensors file"),
    ("export truncated safetensors",
     lambda r, d, t: ["export", "--model", str(copy_ckpt(r, t / "c.safetensors", lambda b: b[:-50])), "--out", str(t / "e")],
     "not a readable .safetensors file"),
    ("predict truncated safetensors",
     lambda r, d, t: ["predict", "--model", str(copy_ckpt(r, t / "c.safetensors", lambda b: b[:100])),
                      "--out", str(t / "p")],
     "not a readable .safetensors file"),
    ("train init= truncated safetensors",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(t / "o"), "--device", "cpu", "--set",
                      f"model_kwargs={json.dumps(SMALL)}", "--set", "val_fraction=0.25", "--set",
                      f"init={copy_ckpt(r, t / 'c.safetensors', lambda b: b[:100])}"],
     "not a readable .safetensors file"),
    ("eval checkpoint without sidecar",
     lambda r, d, t: ["eval", "--model", str(shutil.copy(r / "best.safetensors", t / "lone.safetensors")), "--data", str(d)],
     "lone.safetensors.json: missing"),
    ("eval intact copy (control row)",
     lambda r, d, t: ["eval", "--model", str(copy_ckpt(r, t / "c.safetensors", lambda b: b)), "--data", str(d), "--device", "cpu",
                      "--out", str(t / "ev")],
     None),
    ("eval sidecar without classes",
     lambda r, d, t: ["eval", "--model", str(edit_sidecar(copy_ckpt(r, t / "c.safetensors", lambda b: b), lambda m: m.pop("classes"))),
                      "--data", str(d)],
     "c.safetensors.json: missing field 'classes'"),
    ("eval missing file", lambda r, d, t: ["eval", "--model", str(t / "nope.onnx"), "--data", str(d)], "nope.onnx: model file not found"),
    ("resume from truncated last_state.pt",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(truncated_state(r, t)), "--device", "cpu", "--resume",
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
     lambda r, d, t: ["data", "info", str(prepared_copy(d, t / "m", lambda p: (p / "meta.json").write_text("[1, 2]")))],
     "expected an object"),
    ("meta.json not UTF-8",
     lambda r, d, t: ["data", "info", str(prepared_copy(d, t / "m", lambda p: (p / "meta.json").write_bytes(b"\xff\xfe{")))],
     "not UTF-8"),
    ("truncated images.npy",
     lambda r, d, t: ["eval", "--model", str(r / "best.safetensors"), "--device", "cpu", "--data", str(prepared_copy(
         d, t / "m", lambda p: (p / "val" / "images.npy").write_bytes((p / "val" / "images.npy").read_bytes()[:200])))],
     "not a readable .npy array"),
    ("images.npy of float32",
     lambda r, d, t: ["eval", "--model", str(r / "best.safetensors"), "--device", "cpu", "--data", str(prepared_copy(
         d, t / "m", lambda p: np.save(p / "val" / "images.npy", np.load(p / "val" / "images.npy").astype(np.float32))))],
     "expected uint8 [N, 48, 48, 1]"),
    ("images.npy of another shape",
     lambda r, d, t: ["eval", "--model", str(r / "best.safetensors"), "--device", "cpu", "--data", str(prepared_copy(
         d, t / "m", lambda p: np.save(p / "val" / "images.npy", np.load(p / "val" / "images.npy")[:, :40])))],
     "expected uint8 [N, 48, 48, 1]"),
    ("CSV with a non-UTF-8 byte",
     lambda r, d, t: ["data", "prepare", "fer2013", str(bad_bytes_csv(t)), "--out", str(t / "o")],
     "row 3: byte 0xff is not UTF-8"),
    ("predict a 20000x20000 PNG",
     lambda r, d, t: ["predict", str(huge_png(t / "huge.png")), "--out", str(t / "p")],
     "more than 100 MP"),
    ("predict garbage ONNX",
     lambda r, d, t: ["predict", "--model", str(write_file(t / "g.onnx", b"not a model")), "--out", str(t / "p")],
     "cannot load this file as an ONNX model"),
    ("predict ONNX whose input is not its input_spec",
     lambda r, d, t: ["predict", "--model", str(onnx_with_meta(r, t / "m.onnx", lambda m: m["input_spec"].update(size=64))),
                      "--out", str(t / "p")],
     "but its input_spec says [N, 1, 64, 64]"),
    ("ONNX with 7 outputs and 5 class names",
     lambda r, d, t: ["predict", "--model", str(onnx_with_meta(r, t / "m.onnx", lambda m: m.update(classes=m["classes"][:5]))),
                      "--out", str(t / "p")],
     "outputs 7 scores but field 'classes' names 5"),
    ("ONNX without feredge metadata",
     lambda r, d, t: ["eval", "--model", str(onnx_with_meta(r, t / "m.onnx", lambda m: m.clear())), "--data", str(d)],
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
     lambda r, d, t: ["export", "--model", str(r / "best.safetensors"), "--out", str(write_file(t / "f", b""))], "--out is a file"),
    ("predict --out is a file", lambda r, d, t: ["predict", "--out", str(write_file(t / "f", b""))], "--out is a file"),
    ("train --out is a file",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(write_file(t / "f", b"")), "--device", "cpu"], "--out is a file"),
    ("prepare --out is a file",
     lambda r, d, t: ["data", "prepare", "fer2013", str(t), "--out", str(write_file(t / "f", b""))], "--out is a file"),
    ("eval --out is a file",
     lambda r, d, t: ["eval", "--model", str(r / "best.safetensors"), "--data", str(d), "--out", str(write_file(t / "f", b""))],
     "--out is a file"),
    ("explain --out is a file",
     lambda r, d, t: ["explain", "--data", str(d), "--model", str(r / "best.safetensors"), "--out", str(write_file(t / "f", b""))],
     "--out is a file"),
    ("bench --out is a file", lambda r, d, t: ["bench", "--out", str(write_file(t / "f", b""))], "--out is a file"),
    ("run-camera --jsonl is a folder",
     lambda r, d, t: ["run-camera", "--source", str(t), "--jsonl", str(t), "--overwrite"], "--jsonl takes a file name"),
    ("bench --compare a report without rows",
     lambda r, d, t: ["bench", "--compare", str(bench_report(t / "a.json", [])), str(bench_report(t / "b.json"))],
     "a.json: field 'rows' holds no measurements"),
    ("bench --compare a row with zero latency",
     lambda r, d, t: ["bench", "--compare", str(bench_report(t / "a.json")), str(bench_report(t / "b.json", p50=0.0))],
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
     lambda r, d, t: ["train", "--config", str(toml_file(t / "c.toml", "train = 3\n")), "--data", str(d)],
     "'train' is int, expected a table"),
    ("TOML with a misspelt table",
     lambda r, d, t: ["train", "--config", str(toml_file(t / "c.toml", "[trian]\nepochs = 3\n")), "--data", str(d)],
     "table [trian] is not known"),
    ("soup of one checkpoint",
     lambda r, d, t: ["soup", str(r / "best.safetensors"), "--out", str(t / "s.safetensors")],
     "a soup needs at least two checkpoints"),
    ("soup of one checkpoint named twice",
     lambda r, d, t: ["soup", str(r / "best.safetensors"), str(r / "best.safetensors"), "--out", str(t / "s.safetensors")],
     "the same checkpoint is named twice"),
    ("soup --out exists",
     lambda r, d, t: ["soup", str(r / "best.safetensors"), str(r / "last.safetensors"), "--out",
                      str(write_file(t / "s.safetensors", b"keep"))],
     "s.safetensors: already exists; pass --overwrite"),
    ("soup --out not safetensors",
     lambda r, d, t: ["soup", str(r / "best.safetensors"), str(r / "last.safetensors"), "--out", str(t / "s.pt")],
     "--out must name a .safetensors file"),
    ("soup --holdout not a fraction",
     lambda r, d, t: ["soup", str(r / "best.safetensors"), str(r / "last.safetensors"), "--out", str(t / "s.safetensors"),
                      "--holdout", "1.5"],
     "holdout: expected a fraction of the validation carve, 0 ≤ h < 1, got 1.5"),
    ("prepare --skip-bad a folder whose images are all bad",
     lambda r, d, t: ["data", "prepare", "fer2013", str(tree_of(t, {"train/happy/a.png": b"not a png",
                                                                      "train/sad/b.jpg": b"\xff\xd8 cut"})),
                      "--out", str(t / "o"), "--skip-bad"],
     "src/train: no usable images, all 2 were bad"),
    ("prepare an empty CSV",
     lambda r, d, t: ["data", "prepare", "fer2013", str(write_file(t / "fer2013.csv", b"")), "--out", str(t / "o")],
     "fer2013.csv: empty file, expected a CSV with the header emotion,pixels,Usage"),
    ("prepare a folder with an empty picture",
     lambda r, d, t: ["data", "prepare", "fer2013", str(tree_of(t, {"train/happy/a.png": png_bytes(),
                                                                      "train/sad/b.jpg": b""})), "--out", str(t / "o")],
     "b.jpg: empty file (expected an image)"),
    ("prepare a fer2013 tree with a contempt folder",
     lambda r, d, t: ["data", "prepare", "fer2013", str(tree_of(t, {"train/happy/a.png": png_bytes(),
                                                                      "train/contempt/b.png": png_bytes()})),
                      "--out", str(t / "o")],
     "src/train/contempt: 'contempt' is not a FER2013 class (known: angry, disgust, fear, happy, sad, surprise, neutral)"),
    ("data info on a prepared folder whose meta.json lists no splits",
     lambda r, d, t: ["data", "info", str(prepared_copy(d, t / "m", lambda p: edit_json(p / "meta.json",
                                                                                          lambda m: m.pop("splits"))))],
     "meta.json: no splits"),
    ("data info on a prepared folder without its split folders",
     lambda r, d, t: ["data", "info", str(prepared_copy(d, t / "m", lambda p: without(p, "train", "val")))],
     "train/images.npy: missing (meta.json lists split 'train')"),
    ("soup ingredient whose sidecar lacks its config",
     lambda r, d, t: ["soup", str(edit_sidecar(copy_ckpt(r, t / "c.safetensors", lambda b: b),
                                                lambda m: m["details"].pop("config"))),
                      str(r / "last.safetensors"), "--out", str(t / "s.safetensors")],
     "c.safetensors.json: missing field 'details.config'"),
    ("predict on a missing image",
     lambda r, d, t: ["predict", str(t / "missing.jpg"), "--out", str(t / "o")], "missing.jpg: file not found"),
    ("predict on an empty file",
     lambda r, d, t: ["predict", str(write_file(t / "empty.jpg", b"")), "--out", str(t / "o")], "empty.jpg: empty file"),
    ("run-camera on a text file named .jpg",
     lambda r, d, t: ["run-camera", "--source", str(write_file(t / "notes.jpg", b"not a picture\n"))],
     "notes.jpg: cannot read image"),
    ("run-camera --display with a headless OpenCV",
     lambda r, d, t: ["run-camera", "--source", str(blank_jpeg(t)), "--display"], "this OpenCV has no GUI"),
    ("bench --precision fp16 of an ONNX file",
     lambda r, d, t: ["bench", "--model", str(r / "exp" / "best.onnx"), "--precision", "fp16", "--out", str(t / "b")],
     "applies to checkpoints"),
    ("predict on a truncated JPEG",
     lambda r, d, t: ["predict", str(truncated_jpeg(t)), "--out", str(t / "o")],
     "half.jpg: damaged or truncated image"),
    ("explain an image without faces",
     lambda r, d, t: ["explain", str(blank_jpeg(t)), "--model", str(r / "best.safetensors"), "--out", str(t / "o")],
     "no faces found in"),
    ("explain --data with the classes in another order",
     lambda r, d, t: ["explain", "--data", str(reordered_classes(d, t)), "--model", str(r / "best.safetensors"),
                      "--out", str(t / "o")],
     "a grid of mistakes would be mislabelled"),
    ("run-camera --detect-max-side 10",
     lambda r, d, t: ["run-camera", "--source", str(t), "--detect-max-side", "10"], "--detect-max-side 10: expected at least 48 pixels"),
    ("run-camera --max-frames -1",
     lambda r, d, t: ["run-camera", "--source", str(t), "--max-frames", "-1"], "--max-frames -1: expected 0"),
    ("bench with every size above the runner's maximum batch",
     lambda r, d, t: ["bench", "--model", str(r / "exp" / "best.onnx"), "--batch", "100000", "--faces", "1000",
                      "--duration-s", "0.1", "--out", str(t / "b")],
     "nothing measured: every --batch and --faces is above the runners' maximum batch"),
    ("serve --load-timeout 0",
     lambda r, d, t: ["serve", "--model", str(r / "exp" / "best.onnx"), "--load-timeout", "0", "--workdir", str(t / "w")],
     "--load-timeout 0.0: expected a positive number of seconds"),
    ("train --device cuda:99",
     lambda r, d, t: ["train", "--data", str(d), "--out", str(t / "o"), "--epochs", "1", "--device", "cuda:99"],
     "device 'cuda:99': torch sees"),
    ("prepare twice Training and train",
     lambda r, d, t: ["data", "prepare", "fer2013", str(two_train_folders(t)), "--out", str(t / "o")],
     "both hold split 'train'"),
]


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
