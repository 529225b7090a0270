"""One output rule for every command that writes: a second run into the same explicit output refuses
(one line, earlier files unchanged byte for byte) and replaces it only with --overwrite; without an
explicit folder a fresh one is picked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from feredge.commands.cli import cli
from feredge.outputs import output_file, output_folder
from tests.support import SMALL

GROUP = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"


@pytest.fixture(scope="module")
def run(prepared_fer, tmp_path_factory) -> Path:
    """A tiny finished training run and its fp32 ONNX export."""
    out = tmp_path_factory.mktemp("outputs") / "run"
    result = CliRunner().invoke(cli, _train(prepared_fer, out))
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["export", "--model", str(out / "best.safetensors"), "--out", str(out / "exp")])
    assert result.exit_code == 0, result.output
    return out


def _train(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "16", "--device", "cpu",
            "--set", "val_fraction=0.25", "--set", "max_steps_per_epoch=2",
            "--set", f"model_kwargs={json.dumps(SMALL)}"]


# name → argv builder(run, prepared data, source tree, out): out is the folder the output lands in
CASES = {
    "predict": lambda r, d, t, o: ["predict", str(GROUP), "--model", str(r / "exp" / "best.onnx"), "--out", str(o)],
    "eval": lambda r, d, t, o: ["eval", "--model", str(r / "exp" / "best.onnx"), "--data", str(d), "--device", "cpu",
                             "--out", str(o)],
    "bench": lambda r, d, t, o: ["bench", "--model", str(r / "exp" / "best.onnx"), "--batch", "1", "--faces", "1",
                              "--device", "cpu", "--warmup-ms", "1", "--duration-s", "0.02", "--out", str(o)],
    "explain": lambda r, d, t, o: ["explain", "--model", str(r / "best.safetensors"), "--data", str(d), "--per-class",
                                   "1",
                                "--out", str(o)],
    "export": lambda r, d, t, o: ["export", "--model", str(r / "best.safetensors"), "--out", str(o)],
    "export --format triton": lambda r, d, t, o: ["export", "--model", str(r / "best.safetensors"), "--format",
                                                  "triton",
                                               "--out", str(o)],
    "soup": lambda r, d, t, o: ["soup", str(r / "best.safetensors"), str(r / "last.safetensors"), "--uniform",
                             "--out", str(o / "soup.safetensors")],
    "train": lambda r, d, t, o: _train(d, o),
    "data prepare": lambda r, d, t, o: ["data", "prepare", "fer2013", str(t), "--out", str(o)],
    "data face-boxes": lambda r, d, t, o: ["data", "face-boxes", str(o), "--split", "val"],
    "run-camera": lambda r, d, t, o: ["run-camera", "--source", str(GROUP.parent), "--model",
                                      str(r / "exp" / "best.onnx"),
                                   "--jsonl", str(o / "frames.jsonl")],
}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", CASES)
def test_second_run_refuses_without_overwrite(name, run, prepared_fer, fer_tree, tmp_path):
    out = tmp_path / "out"
    if name == "data face-boxes":
        shutil.copytree(prepared_fer, out)
    if name in ("soup", "run-camera"):
        out.mkdir()
    argv = CASES[name](run, prepared_fer, fer_tree, out)
    first = CliRunner().invoke(cli, argv)
    assert first.exit_code == 0, first.output
    before = _files(out)
    again = CliRunner().invoke(cli, argv)
    assert again.exit_code != 0 and isinstance(again.exception, SystemExit), again.output
    errors = [line for line in again.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--overwrite" in errors[0], again.output
    assert _files(out) == before, "a refused run changed earlier files"
    replaced = CliRunner().invoke(cli, [*argv, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output


def test_output_folder_picks_a_fresh_default_and_refuses_an_explicit_one(tmp_path):
    default = tmp_path / "runs" / "eval"
    assert output_folder(None, default, ["report.json"], False) == default
    default.mkdir(parents=True)
    (default / "report.json").write_text("{}")
    assert output_folder(None, default, ["report.json"], False) == tmp_path / "runs" / "eval-2"
    assert output_folder(None, default, ["report.json"], True) == default
    (default / "other.txt").write_text("")
    assert output_folder(default, default, ["*.png"], False) == default  # only markers count as earlier results
    from feredge.errors import FeredgeError

    with pytest.raises(FeredgeError, match=r"eval: holds earlier results \(report.json\); pass --overwrite or choose "
                                           r"another --workdir"):
        output_folder(default, default, ["report.json"], False, "--workdir")
    with pytest.raises(FeredgeError, match="is a folder; --out takes a file name"):
        output_file(default, True)


def test_two_images_with_one_name_give_two_files(tmp_path):
    from PIL import Image

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(GROUP, tmp_path / sub / "photo.jpg")
    Image.open(GROUP).transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "b" / "photo.jpg")
    result = CliRunner().invoke(cli, ["predict", str(tmp_path / "a" / "photo.jpg"), str(tmp_path / "b" / "photo.jpg"),
                                      "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["photo-2.annotated.jpg", "photo.annotated.jpg", "results.json"]
    again = CliRunner().invoke(cli, ["predict", str(tmp_path / "a" / "photo.jpg"), "--out", str(tmp_path / "out")])
    assert again.exit_code != 0 and "holds earlier results" in again.output


def _unprivileged(argv: list[str], readonly: Path) -> list[str]:
    """The command as a user without root's right to write anywhere (CI runs as root); skipped where
    dropping that right does not make ``readonly`` unwritable."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    drop = "-dac_override,-dac_read_search"
    prefix = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}"] if setpriv else []
    if not prefix or subprocess.run([*prefix, "test", "-w", str(readonly)]).returncode == 0:
        pytest.skip("running as root with no way to meet a folder it may not write in")
    return [*prefix, *argv]


@pytest.mark.parametrize("args, where", [
    (["predict", str(GROUP), "--out", "{ro}/p"], "--out"),
    (["run-camera", "--source", str(GROUP), "--jsonl", "{ro}/f.jsonl"], "--jsonl"),
    (["run-camera", "--source", str(GROUP), "--record", "{ro}/f.mp4"], "--record"),
    (["export", "--model", "feredge-n", "--out", "{ro}/x"], "--out"),
    (["train", "--data", str(GROUP.parent), "--out", "{ro}/t"], "--out"),
    (["data", "prepare", "fer2013", str(GROUP.parent), "--out", "{ro}/d"], "--out"),
])
def test_an_output_it_may_not_write_is_one_line_before_any_work(tmp_path, args, where):
    readonly = tmp_path / "ro"
    readonly.mkdir(mode=0o555)
    argv = [sys.executable, "-m", "feredge", *(a.replace("{ro}", str(readonly)) for a in args)]
    result = subprocess.run(_unprivileged(argv, readonly), capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [f"Error: {args[-1].replace('{ro}', str(readonly))}: no permission "
                                                  f"to write in {readonly}; choose another {where}"]
    assert not any(readonly.iterdir())


def test_an_output_below_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    result = CliRunner().invoke(cli, ["predict", str(GROUP), "--out", str(tmp_path / "afile" / "sub")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'afile'} is a file, so --out cannot go there" in result.output
