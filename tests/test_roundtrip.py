"""Every format this machine can make (ONNX fp32, fp16, INT8 Q/DQ) goes through the same `predict` and
`eval` paths as the checkpoint it came from and gives the same answers within stated tolerances; an
engine's sidecar, made by the builder's own function, is accepted by every reader that needs no TensorRT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from feredge import artifact
from feredge.commands.evaluate import evaluate_checkpoints, model_logits
from feredge.commands.export import ExportOptions, export
from feredge.commands.predict import predict_images
from feredge.runtime.ort import OrtRunner
from feredge.runtime.ort_session import int8_kernels_saturate, session_options
from tests.support import SMALL

GROUP = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"
#: Tolerance on softmax probabilities against the checkpoint (torch fp32), per format.
PROB_TOL = {"fp32": 1e-4, "fp16": 5e-3, "int8": 0.08}
#: Tolerance on top-1 accuracy (percentage points) on the prepared validation split.
ACC_TOL_PP = {"fp32": 0.0, "fp16": 3.0, "int8": 10.0}


@pytest.fixture(scope="module")
def exported(prepared_fer, tmp_path_factory):
    from feredge.config import config_from_dict
    from feredge.train.trainer import train

    out = tmp_path_factory.mktemp("roundtrip")
    train(config_from_dict(dict(data=str(prepared_fer), out=str(out / "run"), model_kwargs=SMALL, epochs=3,
                                batch_size=16, val_fraction=0.25, seed=3, device="cpu"), "test"))
    ckpt = out / "run" / "best.safetensors"
    # 60 calibration images: not a multiple of the calibrators' batch of 32
    report = export(ckpt, ExportOptions(out=out / "exp", fp16=True, int8=True, calib_data=prepared_fer, calib_size=60,
                                        max_drop=100.0))
    return ckpt, {f: Path(p) for f, p in report["files"].items()}, out


def test_the_int8_gate_judges_on_the_checkpoints_own_validation_carve(exported):
    _, _, out = exported
    report = json.loads((out / "exp" / "best.export.json").read_text())
    assert report["accuracy"]["split"] == "held-out 25% of train (seed 3)"  # as trained, not export's defaults
    sidecar = json.loads(Path(str(out / "exp" / "best.int8.onnx") + ".json").read_text())
    assert sidecar["details"]["calibration"]["images"] == 60


@pytest.mark.parametrize("fmt", ["fp32", "fp16", "int8"])
def test_each_format_predicts_like_the_checkpoint(exported, fmt):
    ckpt, files, out = exported
    ref = predict_images([GROUP], ckpt, out=out / "pred-ckpt")["results"]
    got = predict_images([GROUP], files[fmt], out=out / f"pred-{fmt}")["results"]
    assert len(ref[0]["faces"]) == len(got[0]["faces"]) == 3
    for a, b in zip(ref[0]["faces"], got[0]["faces"]):
        assert a["box"] == b["box"]
        pa, pb = np.array(list(a["probabilities"].values())), np.array(list(b["probabilities"].values()))
        assert np.abs(pa - pb).max() <= PROB_TOL[fmt] + 1e-4  # results.json rounds to 4 decimals
    assert json.loads((out / f"pred-{fmt}" / "results.json").read_text())["backend"] == "ort"


@pytest.mark.parametrize("fmt", ["fp32", "fp16", "int8"])
def test_each_format_evaluates_like_the_checkpoint(exported, prepared_fer, fmt):
    ckpt, files, _ = exported
    ref, _ = evaluate_checkpoints([ckpt], prepared_fer, "val", device="cpu")
    got, _ = evaluate_checkpoints([files[fmt]], prepared_fer, "val")
    assert got["n"] == ref["n"]
    assert abs(got["accuracy"] - ref["accuracy"]) * 100 <= ACC_TOL_PP[fmt]
    if fmt == "fp32":
        assert got["confusion_matrix"] == ref["confusion_matrix"]


def test_int8_runs_as_written_where_the_fused_kernels_clip(exported, tmp_path):
    """On x86 without VNNI, ONNX Runtime's fused u8·s8 kernels saturate (on this test's tiny model they moved
    validation accuracy by 12 points): there the runner runs Q/DQ as written, elsewhere the fused kernels."""
    assert int8_kernels_saturate("flags\t: fpu sse2 avx2 fma", "x86_64")
    assert not int8_kernels_saturate("flags\t: fpu avx2 avx512_vnni", "x86_64")
    assert not int8_kernels_saturate("flags\t: fpu avx2 avx_vnni", "AMD64")
    assert not int8_kernels_saturate("", "aarch64")  # Jetson's Arm cores: no such instruction
    _, files, _ = exported
    x = np.random.default_rng(0).standard_normal((16, 1, 48, 48)).astype(np.float32)
    with OrtRunner(files["int8"], exact_qdq=True) as exact, OrtRunner(files["int8"], exact_qdq=False) as fused, \
            OrtRunner(files["int8"]) as default:
        want, clipped, got = exact.infer(x), fused.infer(x), default.infer(x)
    np.testing.assert_array_equal(got, want if int8_kernels_saturate() else clipped)
    if int8_kernels_saturate():
        assert not np.array_equal(want, clipped)
    # on every CPU: the exact path keeps Q/DQ around float convolutions, the fused one has int8 convolutions
    assert "QLinearConv" not in _optimised_ops(files["int8"], True, tmp_path / "exact.onnx")
    assert "QLinearConv" in _optimised_ops(files["int8"], False, tmp_path / "fused.onnx")


def _optimised_ops(path: Path, exact_qdq: bool, out: Path) -> set[str]:
    """The operators of the graph ONNX Runtime actually runs for ``path`` (its optimised model, saved)."""
    import onnx
    import onnxruntime as ort

    options = session_options(exact_qdq)
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return {node.op_type for node in onnx.load(str(out)).graph.node}


def test_descriptions_agree_across_formats(exported):
    ckpt, files, _ = exported
    base = artifact.read(ckpt)
    for fmt, path in files.items():
        info = artifact.read(path)
        assert (info.model, info.classes, info.input_spec) == (base.model, base.classes, base.input_spec), fmt
    assert artifact.read(files["fp16"]).precision == "fp16" and artifact.read(files["int8"]).precision == "int8-qdq"
    assert artifact.read(files["calib-cache"]).kind == "calib-cache"
    assert artifact.read(files["fp32"]).sources["checkpoint"] == artifact.file_sha256(ckpt)


def test_infer_all_respects_the_runner_maximum_batch(exported, prepared_fer):
    from feredge.runtime.ort import OrtRunner

    _, files, _ = exported
    with OrtRunner(files["fp32"]) as runner:
        x = np.random.default_rng(0).normal(size=(70, 1, 48, 48)).astype(np.float32)
        whole = runner.infer_all(x)
        runner.max_batch = 32  # an engine's profile maximum: 70 inputs must go as 32 + 32 + 6
        calls = []
        infer = runner.infer
        runner.infer = lambda batch: calls.append(len(batch)) or infer(batch)
        np.testing.assert_allclose(runner.infer_all(x), whole, atol=1e-5)
        assert calls == [32, 32, 6]


def test_engine_sidecar_from_the_builders_function_is_accepted(exported, tmp_path):
    """The engine itself needs TensorRT (not installable here); its description does not. The builder
    writes `engine_artifact(...)`; every TensorRT-free reader must take it as an engine of the same model."""
    from feredge.engine.plan import BatchProfile, build_plan, engine_artifact, engine_key

    _, files, _ = exported
    source = artifact.read(files["int8"])
    sha = artifact.file_sha256(files["int8"])
    for version, implicit in (("10.3.0", False), ("8.6.1", True), ("11.0.0", False)):
        plan = build_plan(version, "int8", implicit_int8=implicit)
        key = engine_key(sha, "int8", BatchProfile.of(None, 32), "NVIDIA H100", "9.0", version)
        engine = tmp_path / f"m-{key['digest']}.engine"
        engine.write_bytes(b"serialized engine bytes (stand-in: only the sidecar is under test)")
        artifact.write(engine, engine_artifact(source, sha, key, plan))
        info = artifact.read(engine)
        assert info.kind == "engine" and info.engine_key == key
        assert (info.model, info.classes, info.input_spec) == (source.model, source.classes, source.input_spec)
        assert info.precision == ("int8-calib" if implicit else "int8-qdq")
        assert info.details["batch_profile"] == {"min": 1, "opt": 16, "max": 32}
    with pytest.raises(Exception, match="TensorRT|tensorrt"):  # the reader routes an engine to TensorRT, nowhere else
        model_logits(engine, np.zeros((1, 48, 48, 1), np.uint8))


def test_foreign_onnx_properties_are_left_alone(exported):
    """Other tools (ONNX Runtime's quantizer writes 'onnx.infer') add properties that are not JSON."""
    from feredge.artifact import from_onnx_properties, onnx_properties

    _, files, _ = exported
    props = {**onnx_properties(artifact.read(files["fp32"])), "onnx.infer": "onnxruntime.quant"}
    assert from_onnx_properties(props, "x.onnx").model == artifact.read(files["fp32"]).model
