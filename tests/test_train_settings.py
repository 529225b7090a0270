"""A run's file settings are saved absolute, so `--out RUN --resume` works from any folder and never picks
up another dataset that happens to sit at the same relative path there."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from feredge.commands.cli import cli
from feredge.train.settings import train_config
from tests.support import SMALL


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
            "--set", "val_fraction=0.25", "--set", "max_steps_per_epoch=2",
            "--set", f"model_kwargs={json.dumps(SMALL)}"]
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
    from feredge.errors import FeredgeError

    with pytest.raises(FeredgeError, match="epochs"):
        train_config({"epochs": 1}, sets=["epochs=abc"])


def test_a_run_saved_with_relative_paths_still_resumes(tmp_path, monkeypatch):
    from feredge.errors import FeredgeError
    from feredge.train.run_folder import check_same_run

    monkeypatch.chdir(tmp_path)
    old = {"data": "prep", "init": "runs/a/best.safetensors", "teacher": "t/a.safetensors, t/b.safetensors", "lr": 0.1}
    new = {"data": str(tmp_path / "prep"), "init": str(tmp_path / "runs/a/best.safetensors"),
           "teacher": f"{tmp_path / 't/a.safetensors'},{tmp_path / 't/b.safetensors'}", "lr": 0.1}
    check_same_run(new, old, tmp_path)  # the same files, typed differently
    with pytest.raises(FeredgeError, match="init 'runs/a/best.safetensors' -> "):
        check_same_run({**new, "init": str(tmp_path / "other.safetensors")}, old, tmp_path)
