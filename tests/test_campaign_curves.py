"""campaign/curves.py: the campaign's learning curves from its committed stage logs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "campaign" / "curves.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_each_stage_gets_a_row_with_its_best_epoch_and_the_curve_a_png(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    rows = [{"epoch": e, "val_accuracy": a, "val_mean_class_accuracy": 0.5} for e, a in [(1, 0.6), (2, 0.65),
                                                                                         (3, 0.64)]]
    (logs / "stage-a.json").write_text(json.dumps(rows))
    (logs / "stage-b.json").write_text(json.dumps(rows[:1]))
    (logs / "scratch.json").write_text(json.dumps([{**rows[0], "val_accuracy": 0.25}, *rows[1:]]))
    done = run("--logs", str(logs), "--out", str(tmp_path / "curves.png"))
    assert done.returncode == 0, done.stderr
    assert "| stage-a | restart | 3 | 65.00% (2) | 50.00% | 60.00 65.00 64.00 |" in done.stdout
    assert "| stage-b | restart | 1 | 60.00% (1) |" in done.stdout
    assert "| scratch | scratch | 3 | 65.00% (2) |" in done.stdout
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content", ['{"epochs": 3}', "[]", '[{"epoch": 1}]'])
def test_a_file_that_is_not_a_training_log_is_named(tmp_path, content):
    (tmp_path / "odd.json").write_text(content)
    done = run("--logs", str(tmp_path), "--out", str(tmp_path / "c.png"))
    assert done.returncode != 0 and "odd.json: expected a training log" in done.stderr
    assert not (tmp_path / "c.png").exists()


def test_an_existing_picture_is_replaced_only_with_overwrite(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "s.json").write_text(json.dumps([{"epoch": 1, "val_accuracy": 0.6,
                                                           "val_mean_class_accuracy": 0.5}]))
    out = tmp_path / "curves.png"
    out.write_bytes(b"earlier")
    refused = run("--logs", str(tmp_path / "logs"), "--out", str(out))
    assert refused.returncode != 0 and "already exists" in refused.stderr and out.read_bytes() == b"earlier"
    assert run("--logs", str(tmp_path / "logs"), "--out", str(out), "--overwrite").returncode == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
