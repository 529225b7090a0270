"""campaign.sh carry / restore: an unfinished run survives the loss of its folder (a new machine) through
the copy kept in git, and resumes where it stopped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from feredge.config import config_from_dict
from feredge.train.trainer import Trainer

SCRIPT = Path(__file__).parents[1] / "campaign" / "campaign.sh"
STAGE = "s-long-kd"  # a stage of the queue; the tests' empty FEREDGE_LOGS says it has not finished


def _campaign(command: str, runs: Path, carry: Path) -> str:
    env = {**os.environ, "FEREDGE_RUNS": str(runs), "FEREDGE_CARRY": str(carry), "FEREDGE_LOGS": str(runs / "logs")}
    done = subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_carried_run_is_restored_and_resumes_where_it_stopped(prepared_fer, tmp_path):
    runs, carry = tmp_path / "runs", tmp_path / "carry"
    out = runs / STAGE
    cfg = config_from_dict(dict(data=str(prepared_fer), out=str(out), model="feredge-n", epochs=3, batch_size=16,
                                lr=0.05, val_fraction=0.25, device="cpu",
                                model_kwargs={"widths": [8, 16, 16], "strides": [2, 2, 1]}), "test")
    Trainer(cfg).fit(stop_after=2)

    said = _campaign("carry", runs, carry)
    assert f"{STAGE}: carried at epoch 2" in said
    carried = {p.name for p in (carry / STAGE).iterdir()}
    assert {"last.safetensors", "last.safetensors.json", "last_state.pt", "log.json"} <= carried
    assert ("best.safetensors" in carried) != ("best-is-last" in carried)  # best travels once, or is the last
    assert not any(name.startswith(".") for name in os.listdir(carry))  # no half-made copy left behind

    best_before = (out / "best.safetensors").read_bytes()
    shutil.rmtree(out)  # the machine is lost
    _campaign("restore", runs, carry)
    assert (out / "best.safetensors").read_bytes() == best_before
    assert not (out / "best-is-last").exists()

    resumed = Trainer(cfg)
    resumed.resume()
    assert resumed.start_epoch == 2
    resumed.fit()
    assert [row["epoch"] for row in json.loads((out / "log.json").read_text())] == [1, 2, 3]

    assert "resumed" not in _campaign("restore", runs, carry)  # a folder with its own state is left alone
