"""A run's file settings are saved absolute, so `--out RUN --resume` works from any folder and never picks
up another dataset that happens to sit at the same relative path there."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from feredge.cli import cli
from feredge.train.settings import train_config

SMALL = {"widths": [8, 16, 16, 16], "depths": [1, 1, 1, 1], "stem": 8}


def test_file_settings_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = train_config({"data": Path("prep"), "out": "run"},
                       sets=["init=a/x.safetensors", "teacher=t1.safetensors, t2.safetensors"])
    assert cfg.data == str(tmp_path / "prep") and cfg.init == str(tmp_path / "a" / "x.safetensors")
    assert cfg.teacher == f"{tmp_path / 't1.safetensors'},{tmp_path / 't2.safetensors'}"


def test_resume_from_another_folder_keeps_the_runs_data(prepared_fer, tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    os.symlink(prepared_fer, tmp_path / "a" / "prep")
    monkeypatch.chdir(tmp_path / "a")
    args = ["train", "--data", "prep", "--out", "run", "--epochs", "2", "--batch-size", "16", "--device", "cpu",
            "--set", "val_fraction=0.25", "--set", "max_steps_per_epoch=2", "--set", f"model_kwargs={json.dumps(SMALL)}"]
    first = CliRunner().invoke(cli, [*args, "--stop-after", "1"])
    assert first.exit_code == 0, first.output
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "prep").mkdir()  # another folder's "prep", not a dataset: the run must not look there
    monkeypatch.chdir(tmp_path / "b")
    resumed = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "a" / "run"), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output.strip().splitlines()[-1])["epochs"] == 2
    saved = json.loads((tmp_path / "a" / "run" / "last.safetensors.json").read_text())["details"]["config"]
    assert saved["data"] == str(tmp_path / "a" / "prep")


def test_a_bad_set_value_is_refused_even_when_an_option_replaces_it():
    import pytest

    from feredge.errors import FeredgeError

    with pytest.raises(FeredgeError, match="epochs"):
        train_config({"epochs": 1}, sets=["epochs=abc"])
