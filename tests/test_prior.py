"""Prior correction (feredge.train.prior): the bias shift, the sweep, and the training carve's prior."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from feredge.config import config_from_dict
from feredge.data.splits import train_val_splits
from feredge.errors import FeredgeError
from feredge.models import create_model
from feredge.models.checkpoint import load_checkpoint, read_meta, read_state_dict
from feredge.train.checkpoint import save_checkpoint
from feredge.train.prior import (
    carve_prior,
    carve_prior_and_validation,
    class_prior,
    classifier,
    correct_for_prior,
    correction_record,
    sweep,
)
from feredge.train.trainer import train

NANO = {"widths": [8, 16, 16], "strides": [2, 2, 1]}


def test_class_prior_counts_each_class_and_refuses_an_absent_one():
    np.testing.assert_allclose(class_prior(np.array([0, 0, 1, 2, 2, 2]), 3), [2 / 6, 1 / 6, 3 / 6])
    with pytest.raises(FeredgeError, match=r"lack class\(es\) \[1\]"):
        class_prior(np.array([0, 2, 2]), 3)


def test_correction_shifts_every_logit_by_minus_tau_log_prior():
    torch.manual_seed(0)
    model = create_model("feredge-n", num_classes=7, **NANO).eval()
    x = torch.randn(4, 1, 48, 48)
    prior = np.array([0.14, 0.015, 0.14, 0.25, 0.17, 0.11, 0.175])
    before = model(x).detach()
    correct_for_prior(model, prior, 0.8)
    after = model(x).detach()
    torch.testing.assert_close(after - before, torch.tensor(-0.8 * np.log(prior), dtype=torch.float32).expand(4, 7),
                               atol=1e-5, rtol=0)


def test_a_network_without_a_linear_classifier_is_refused():
    with pytest.raises(FeredgeError, match="no linear classifier with 7 outputs"):
        classifier(torch.nn.Sequential(torch.nn.Conv2d(1, 7, 3)), 7)


def test_sweep_trades_top1_of_the_common_class_for_recall_of_the_rare_one():
    # A network that learnt the prior: class 1 (10 % of the data) is scored 1.5 lower than it should be.
    rng = np.random.default_rng(0)
    labels = np.array([0] * 900 + [1] * 100)
    logits = np.where(np.arange(2) == labels[:, None], 1.0, 0.0) + rng.normal(0, 0.8, (1000, 2))
    logits[:, 1] -= 1.5
    prior = np.array([0.9, 0.1])
    rows = sweep(logits, labels, prior, ["common", "rare"], (0.0, 1.0))
    assert rows[0]["tau"] == 0.0 and rows[1]["mean_class_accuracy"] > rows[0]["mean_class_accuracy"] + 0.05
    recall_rare = [((logits - t * np.log(prior)).argmax(1)[labels == 1] == 1).mean() for t in (0.0, 1.0)]
    assert recall_rare[1] > recall_rare[0]


def _train_nano(prepared_fer, tmp_path):
    """One epoch of a tiny feredge-n: a real checkpoint with the sidecar and carve the commands read."""
    cfg = config_from_dict(dict(data=str(prepared_fer), out=str(tmp_path / "run"), model="feredge-n",
                                model_kwargs=NANO, epochs=1, batch_size=16, lr=0.05, val_fraction=0.25,
                                device="cpu"), "test")
    train(cfg)
    return cfg, tmp_path / "run" / "best.safetensors"


def test_prior_of_the_checkpoints_own_carve_and_the_sweep_command(prepared_fer, tmp_path):
    cfg, ckpt = _train_nano(prepared_fer, tmp_path)
    prior, images, labels = carve_prior_and_validation(ckpt, prepared_fer)
    carved_train, carved_val, meta = train_val_splits(cfg)
    np.testing.assert_allclose(prior, class_prior(np.asarray(carved_train.labels), len(meta["classes"])))
    np.testing.assert_array_equal(labels, np.asarray(carved_val.labels))
    assert len(images) == len(labels)
    out = subprocess.run([sys.executable, "-m", "feredge.train.prior", str(ckpt), "--data", str(prepared_fer),
                          "--tau", "0", "1"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].split() == ["tau", "validation", "mean-class"] and [r.split()[0] for r in out[1:]] == ["0.00", "1.00"]


def test_the_record_moves_the_uncorrected_metrics_under_it_and_refuses_a_second_correction():
    details = correction_record(np.array([0.75, 0.25]), 0.5, {"metrics": {"val_accuracy": 0.7}, "epoch": 3})
    assert "metrics" not in details and details["epoch"] == 3
    assert details["prior_correction"] == {"tau": 0.5, "prior": [0.75, 0.25], "of": "the training carve's classes",
                                           "metrics_before": {"val_accuracy": 0.7}}
    with pytest.raises(FeredgeError, match="already prior-corrected"):
        correction_record(np.array([0.75, 0.25]), 0.5, details)


def _prior_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "feredge.train.prior", *args], capture_output=True, text=True)


def test_undo_gives_back_the_weights_as_trained_and_the_sweep_refuses_a_corrected_file(prepared_fer, tmp_path):
    _, trained = _train_nano(prepared_fer, tmp_path)
    model, info = load_checkpoint(trained)
    prior = carve_prior(trained, prepared_fer)
    correct_for_prior(model, prior, 0.75)
    corrected = tmp_path / "corrected.safetensors"
    save_checkpoint(model, corrected, info.derive("checkpoint", **correction_record(prior, 0.75, info.details)))

    refused = _prior_command(str(corrected), "--data", str(prepared_fer))
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        f"error: {corrected}: already prior-corrected (tau 0.75); sweep the checkpoint it was made from "
        "(--undo writes it)"]

    raw = tmp_path / "raw.safetensors"
    assert _prior_command(str(corrected), "--undo", str(raw)).returncode == 0
    original, undone = read_state_dict(trained), read_state_dict(raw)
    assert original.keys() == undone.keys()
    for key in original:
        torch.testing.assert_close(undone[key], original[key], atol=1e-6, rtol=0)
    assert read_meta(raw).details["metrics"] == read_meta(trained).details["metrics"]
    assert "prior_correction" not in read_meta(raw).details

    again = _prior_command(str(corrected), "--undo", str(raw))
    assert again.returncode == 1 and "already exists" in again.stderr
    uncorrected = _prior_command(str(trained), "--undo", str(tmp_path / "x.safetensors"))
    assert uncorrected.returncode == 1 and "records no prior correction" in uncorrected.stderr
