"""The shipped models: load, fit the budget, and reproduce their model cards on PublicTest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from feredge.commands.package import card_paths
from feredge.weights import WEIGHTS_DIR, default_checkpoint, shipped, shipped_names

SHIPPED = shipped_names()
#: Shipped with their checkpoint (the FER2013 comparison model ships as its fp16 ONNX only).
TRAINED = [name for name in SHIPPED if (WEIGHTS_DIR / f"{name}.safetensors").is_file()]


def test_budget_and_default_is_shipped():
    sizes = {p.name: p.stat().st_size for p in WEIGHTS_DIR.iterdir() if p.is_file()}
    int8_cpu = sum(size for name, size in sizes.items() if ".int8-cpu.onnx" in name)
    fer2013 = sum(size for name, size in sizes.items() if name.startswith("feredge-s-fer2013."))
    assert sum(sizes.values()) - int8_cpu - fer2013 <= 20e6  # weights, fp32 ONNX, cards, detector
    assert int8_cpu <= 5e6  # the CPU INT8 files on top: about a quarter of each model's fp32 weights
    assert fer2013 <= 8e6  # and the FER2013 comparison model: one fp16 ONNX
    assert default_checkpoint().stem in SHIPPED and "feredge-s" in SHIPPED


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_files_fit_and_agree(name):
    from feredge.models.checkpoint import load_checkpoint
    from feredge.models.profile import count_params
    from feredge.runtime.ort import OrtRunner

    model, meta = load_checkpoint(shipped(name, "checkpoint"))
    assert count_params(model) <= 5_000_000 and meta.model == name
    x = np.random.default_rng(0).normal(size=(4, 1, 48, 48)).astype(np.float32)
    import torch

    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with OrtRunner(shipped(name)) as runner:
        np.testing.assert_allclose(runner.infer(x), ref, atol=5e-3)  # fused conv weights are re-rounded to fp16
        assert runner.info.classes == meta.classes and runner.info.input_spec == meta.input_spec


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_reproduces_model_card_on_publictest(real_fer_prepared, name):
    from feredge.commands.evaluate import evaluate_checkpoints
    from feredge.commands.package import evaluate_shipped

    card = json.loads(card_paths(name)["json"].read_text())
    runtime = evaluate_shipped(name, real_fer_prepared, "val")  # ONNX Runtime, NumPy pre-processing
    assert abs(runtime["accuracy"] - card["publictest_single_pass_accuracy"]) <= 0.001
    if name not in TRAINED:
        return
    report, _ = evaluate_checkpoints([shipped(name, "checkpoint")], real_fer_prepared, "val", device="cpu")  # torch
    assert abs(report["accuracy"] - card["publictest_single_pass_accuracy"]) <= 0.001


@pytest.mark.data
@pytest.mark.slow
def test_int8_drop_on_fer2013_publictest(real_fer_prepared, tmp_path):
    """INT8 Q/DQ of the shipped model, calibrated on Training, loses ≤ 1 pp on PublicTest (ONNX Runtime)."""
    from feredge.commands.export import ExportOptions, export, onnx_accuracy
    from feredge.data.store import load_split

    report = export(default_checkpoint(), ExportOptions(out=tmp_path, int8=True, calib_data=real_fer_prepared,
                                                   calib_size=512, max_drop=1.0))
    assert report["accuracy"]["int8_drop_pp"] <= 1.0  # the gate's own check, on held-out Training images
    split = load_split(real_fer_prepared, "val")
    x, labels = np.asarray(split.images), np.asarray(split.labels)
    fp32 = onnx_accuracy(report["files"]["fp32"], x, labels, report["classes"])
    int8 = onnx_accuracy(report["files"]["int8"], x, labels, report["classes"], exact_qdq=True)  # exact Q/DQ
    assert 100 * (fp32["accuracy"] - int8["accuracy"]) <= 1.0


def test_the_fer2013_model_runs_from_its_fp16_file_alone():
    """A model shipped as one fp16 ONNX: found by name, described, run on the CPU; no checkpoint needed."""
    from feredge.runtime.classifier import Classifier

    with Classifier("feredge-s-fer2013", device="cpu") as classifier:
        assert classifier.path.name == "feredge-s-fer2013.fp16.onnx" and classifier.info.precision == "fp16"
        probs = classifier.classify(np.full((48, 48), 128, np.uint8))
    assert probs.shape == (1, 7) and abs(float(probs.sum()) - 1) < 1e-5
