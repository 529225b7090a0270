"""CLI surface: version, command list, models table."""

from __future__ import annotations

import json

from click.testing import CliRunner

from feredge import __version__
from feredge.cli import cli


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
