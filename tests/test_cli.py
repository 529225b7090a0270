"""CLI surface: version, command list, models table."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from feredge import __version__
from feredge.commands.cli import cli


def test_version_and_commands():
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = CliRunner().invoke(cli, ["--help"])
    for command in ("data", "train", "eval", "export", "models", "predict"):
        assert command in r.output


def test_models_json():
    r = CliRunner().invoke(cli, ["models", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert rows["vgg-a"]["params"] == 29_890_759 and rows["vgg-a"]["input"] == "1x40x40"
    assert rows["feredge-s"]["params"] <= 5_000_000 and rows["feredge-s"]["gflops"] <= 0.3
    assert rows["mmnet"]["heads"] == {"emotion": 7, "age": 5, "race": 3, "gender": 3}


def test_train_without_data_is_a_clear_error():
    r = CliRunner().invoke(cli, ["train", "--epochs", "1"])
    assert r.exit_code != 0 and "no training data" in r.output
    r = CliRunner().invoke(cli, ["train", "--recipe", "nope"])
    assert r.exit_code != 0 and "unknown recipe 'nope'" in r.output
    r = CliRunner().invoke(cli, ["train", "--set", "epochs"])
    assert r.exit_code != 0 and "expected key=value" in r.output


def test_models_without_torch_lists_the_shipped_models_and_the_install_hint():
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\nfrom click.testing import CliRunner\n"
            "from feredge.commands.cli import cli\n"
            "r = CliRunner().invoke(cli, ['models'])\nprint(r.exit_code, repr(r.output))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    code, output = proc.stdout.split(" ", 1)
    assert code == "0" and "pip install 'feredge[train]'" in output and "Traceback" not in output
    assert "feredge-s" in output and "3,830,471" in output and "mmnet" not in output


def test_train_help_says_which_source_wins_and_the_summary_is_short():
    r = CliRunner().invoke(cli, ["train", "--help"])
    assert "each source overriding the ones before it" in r.output
    for name in ("--epochs", "--lr", "--batch-size", "--seed"):
        line = next(li for li in r.output.splitlines() if li.strip().startswith(name))
        assert len(line.split(None, 2)) == 3, line  # every option has help text
    top = CliRunner().invoke(cli, ["--help"]).output
    assert "Train a registered model on a prepared dataset." in top


def test_every_option_has_help_and_device_defaults_to_auto():
    import click

    from feredge.config import DEVICE

    def commands(group, prefix=()):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, (*prefix, name))
            else:
                yield (*prefix, name), command

    for path, command in commands(cli):
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"
            if param.name == "device":
                assert param.default == DEVICE, path
    assert "--jsonl" in CliRunner().invoke(cli, ["run-camera", "--help"]).output


def test_model_is_an_option_everywhere():
    for command in ("eval", "export", "bench", "predict", "run-camera", "serve", "explain"):
        out = CliRunner().invoke(cli, [command, "--help"]).output
        assert "--model" in out, command
    assert "CHECKPOINTS" not in CliRunner().invoke(cli, ["eval", "--help"]).output


def test_predict_overwrite_leaves_no_stale_pictures(tmp_path):
    import shutil

    from feredge.commands.cli import cli as app

    group = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"
    shutil.copy(group, tmp_path / "first.jpg")
    shutil.copy(group, tmp_path / "second.jpg")
    out = tmp_path / "out"
    assert CliRunner().invoke(app, ["predict", str(tmp_path / "first.jpg"), "--out", str(out)]).exit_code == 0
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "second.jpg"), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "second.annotated.jpg"]
    assert f"results: {(out / 'results.json').absolute()}" in result.output


def test_missing_optional_packages_are_one_line_for_every_command(tmp_path):
    """Commands that need torch say which extra to install instead of a traceback."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "from feredge.commands.cli import main\n"
            "sys.argv = ['feredge', 'train', '--recipe', 'feredge-s', '--data', sys.argv[1], '--out', sys.argv[2]]\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "run")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "needs the optional package 'torch'" in result.stderr and "feredge[train]" in result.stderr


def test_face_finding_options_are_one_set_on_predict_and_run_camera(tmp_path, monkeypatch):
    """predict finds faces with the options run-camera has, spelt, explained and checked alike; each reaches
    the Recognizer and is recorded in results.json."""
    import re

    def options(command: str) -> dict[str, str]:
        text = CliRunner().invoke(cli, [command, "--help"], terminal_width=200).output
        return {m[0]: " ".join(m[1].split()) for m in re.findall(r"(--detector|--detect-max-side|--max-faces|"
                                                                    r"--align)\b[^\n]*?\s{2,}(\S[^\n]*)", text)}

    assert options("predict") == options("run-camera") and len(options("predict")) == 4
    group = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"
    every = CliRunner().invoke(cli, ["predict", str(group), "--out", str(tmp_path / "all"), "--json"])
    largest = CliRunner().invoke(cli, ["predict", str(group), "--out", str(tmp_path / "one"), "--json",
                                       "--max-faces", "1"])
    assert every.exit_code == 0 and largest.exit_code == 0, every.output + largest.output
    faces = json.loads(every.output)["results"][0]["faces"]
    kept = json.loads(largest.output)["results"][0]["faces"]
    area = lambda f: f["box"][2] * f["box"][3]  # noqa: E731
    assert len(faces) > 1 and len(kept) == 1 and area(kept[0]) == max(map(area, faces))
    assert json.loads(largest.output)["settings"]["max_faces"] == 1
    small = CliRunner().invoke(cli, ["predict", str(group), "--out", str(tmp_path / "x"), "--detect-max-side", "10"])
    assert small.exit_code != 0 and "--detect-max-side 10: expected" in small.output
    assert not (tmp_path / "x").exists()
    monkeypatch.chdir(tmp_path)  # a relative --out is reported as the absolute path it became
    aligned = CliRunner().invoke(cli, ["predict", str(group), "--out", "aligned", "--align"])
    assert aligned.exit_code == 0 and f"results: {tmp_path / 'aligned' / 'results.json'}" in aligned.output
    turned = json.loads((tmp_path / "aligned" / "results.json").read_text())
    assert turned["settings"]["align"] is True
    assert [f["probabilities"] for f in turned["results"][0]["faces"]] != [f["probabilities"] for f in faces]
    haar = CliRunner().invoke(cli, ["predict", str(group), "--out", "haar", "--detector", "haar", "--align"])
    assert haar.exit_code != 0 and "the haar detector gives none" in haar.output


def test_models_counts_on_the_meta_device_match_a_real_model():
    """`feredge models` counts architectures built without weights; a built model gives the same counts."""
    from feredge.models import create_model, model_info
    from feredge.models.nano import fuse_for_deploy
    from feredge.models.profile import count_macs, count_params, registry_rows

    rows = {r["name"]: r for r in registry_rows()}
    for name in ("feredge-n", "feredge-s", "vgg-a"):
        model, s = fuse_for_deploy(create_model(name)), model_info(name).input_spec
        assert rows[name]["params"] == count_params(model) > 0
        assert rows[name]["gflops"] == count_macs(model, (s.channels, s.size, s.size)) / 1e9 > 0
