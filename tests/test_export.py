"""Export: ONNX validity and parity, FP16, Q/DQ placement, calibration cache, gate, engine refusal."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from feredge import artifact
from feredge.artifact import from_onnx_properties
from feredge.calibration.cpu_int8 import activation_zero_point_types, quantize_cpu
from feredge.calibration.dataset import balanced_indices, calibration_set
from feredge.calibration.quantize import unquantized_inputs
from feredge.calibration.trt_cache import hex_to_scale, read_cache, scale_to_hex, trt_version_code
from feredge.commands.cli import cli
from feredge.commands.export import ExportOptions, export
from feredge.errors import FeredgeError
from feredge.runtime.ort import OrtRunner


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.fixture(scope="module")
def exported(checkpoint, prepared_fer, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    opts = ExportOptions(out=out, fp16=True, int8=True, calib_data=prepared_fer, calib_size=64, max_drop=100.0,
                         val_fraction=0.25)
    return export(checkpoint, opts), out


def test_onnx_graph_and_metadata(exported):
    report, out = exported
    model = onnx.load(report["files"]["fp32"])
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis
    meta = from_onnx_properties({p.key: p.value for p in model.metadata_props}, "fp32")
    assert meta.classes[3] == "happy" and meta.input_spec.size == 48 and meta.precision == "fp32"
    assert len(meta.sources["checkpoint"]) == 64
    assert report["parity"]["max_abs_diff"] < 1e-3 and report["parity"]["top1_agreement"] == 1.0


def test_dynamic_batch_runs(exported):
    with OrtRunner(exported[0]["files"]["fp32"]) as runner:
        for n in (1, 5):
            assert runner.infer(np.zeros((n, 1, 48, 48), np.float32)).shape == (n, 7)


def test_fp16_has_fp32_io_and_half_weights(exported):
    model = onnx.load(exported[0]["files"]["fp16"])
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    acc = exported[0]["accuracy"]
    assert abs(acc["fp16"]["accuracy"] - acc["fp32"]["accuracy"]) <= 0.05


def test_qdq_placement_symmetric_int8(exported):
    model = onnx.load(exported[0]["files"]["int8"])
    assert unquantized_inputs(model) == []
    assert unquantized_inputs(onnx.load(exported[0]["files"]["fp32"]))  # the checker does detect float inputs
    zero_points = [t for t in model.graph.initializer if "zero_point" in t.name]
    assert zero_points
    for t in zero_points:
        arr = onnx.numpy_helper.to_array(t)
        assert arr.dtype == np.int8 and not arr.any()  # symmetric, signed
    conv_w_scales = [t for t in model.graph.initializer
                     if t.name.endswith("_scale") and len(t.dims) == 1 and t.dims[0] > 1]
    assert conv_w_scales  # per-channel weight scales


def test_cpu_int8_file_sidecar_and_uint8_activations(exported):
    report, out = exported
    path = out / "best.int8-cpu.onnx"
    assert report["files"]["int8-cpu"] == str(path) and artifact.sidecar_path(path).is_file()
    info = artifact.read(path)
    assert info.precision == "int8-cpu" and info.details["target"] == "cpu" and info.details["reduce_range"] is False
    assert info.details["calibration"] == report["calibration"]  # the same class-balanced set as the Q/DQ file
    model = onnx.load(str(path))
    assert from_onnx_properties({p.key: p.value for p in model.metadata_props}, str(path)) == info
    assert activation_zero_point_types(model) == {onnx.TensorProto.UINT8}  # u8 activations, unlike the Q/DQ file
    assert activation_zero_point_types(onnx.load(report["files"]["int8"])) == {onnx.TensorProto.INT8}
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and any(w.ndim == 4 for w in weights)  # conv weights stored as int8
    with OrtRunner(path) as runner:
        assert runner.infer(np.zeros((3, 1, 48, 48), np.float32)).shape == (3, 7)


def test_cpu_int8_passes_the_gate(exported):
    report = exported[0]
    acc = report["accuracy"]
    assert {"int8-cpu", "int8_cpu_exact_qdq"} <= set(acc) and "int8_refused" not in report
    assert acc["int8_cpu_drop_pp"] <= ExportOptions().max_drop  # the default gate, not the fixture's lax one
    assert acc["int8-cpu"]["size_bytes"] < acc["fp32"]["size_bytes"]


def test_cpu_int8_reduce_range_keeps_weights_in_7_bits(exported, tmp_path):
    """2·255·64 < 2¹⁵: the pair sums of x86's u8·s8 instruction cannot clip (CPUs without VNNI)."""
    x = np.random.default_rng(0).normal(size=(8, 1, 48, 48)).astype(np.float32)
    path = quantize_cpu(exported[0]["files"]["fp32"], x, tmp_path / "rr.onnx", "minmax", reduce_range=True)
    model = onnx.load(str(path))
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64
    assert activation_zero_point_types(model) == {onnx.TensorProto.UINT8}


def test_calibration_cache_file(exported):
    header, scales = read_cache(exported[0]["files"]["calib-cache"])
    assert header == "TRT-8601-MinMaxCalibration"  # percentile ranges (the default) replay as a MinMax cache
    assert "input" in scales and all(s > 0 for s in scales.values())


def test_accuracy_gate_numbers_and_refusal(exported, checkpoint, prepared_fer, tmp_path, monkeypatch):
    import feredge.commands.export as exporter

    real_check = exporter.check_options  # a gate no INT8 model passes (gain 100 pp), which the options refuse
    monkeypatch.setattr(exporter, "check_options", lambda o: real_check(dataclasses.replace(o, max_drop=0.0)))
    acc = exported[0]["accuracy"]
    assert {"fp32", "fp16", "int8", "int8_ort_cpu_kernels"} <= set(acc) and acc["n"] > 0
    assert acc["int8"]["size_bytes"] < acc["fp32"]["size_bytes"]
    opts = ExportOptions(out=tmp_path, int8=True, calib_data=prepared_fer, calib_size=8, max_drop=-100.0,
                         val_fraction=0.25)
    with pytest.raises(FeredgeError, match=r"INT8 refused: .* drop of .* pp > --max-drop -100"):
        export(checkpoint, opts)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["best.export.json", "best.onnx", "best.onnx.json"], left  # nothing refused looks usable
    assert "INT8 refused" in json.loads((tmp_path / "best.export.json").read_text())["int8_refused"]


def test_no_silent_overwrite(exported, checkpoint):
    with pytest.raises(FeredgeError, match="exists; pass --overwrite"):
        export(checkpoint, ExportOptions(out=exported[1]))


def test_calibration_set_is_balanced_reproducible_and_from_train(prepared_fer, tmp_path):
    a = calibration_set(prepared_fer, 28, seed=3, val_fraction=0.25, cache_dir=tmp_path)
    b = calibration_set(prepared_fer, 28, seed=3, val_fraction=0.25, cache_dir=tmp_path)  # from the cache
    c = calibration_set(prepared_fer, 28, seed=4, val_fraction=0.25, cache_dir=None)
    assert a.digest == b.digest and np.array_equal(a.indices, b.indices) and a.digest != c.digest
    labels = np.load(prepared_fer / "train" / "labels.npy")
    assert np.bincount(labels[a.indices], minlength=7).tolist() == [4] * 7
    from feredge.calibration.dataset import holdout_split

    _, hold = holdout_split(prepared_fer, 0.25, 3)
    assert not set(a.indices) & set(hold)  # never the held-out validation images


def test_balanced_indices_with_rare_class():
    labels = np.array([0] * 50 + [1] * 2 + [2] * 50)
    idx = balanced_indices(labels, 30, 0)
    assert len(idx) == 30 and np.bincount(labels[idx]).tolist() == [14, 2, 14]


def test_trt_cache_encoding():
    assert trt_version_code("8.6.1") == 8601 and trt_version_code("10.7.0") == 100700
    assert abs(hex_to_scale(scale_to_hex(0.0123)) - 0.0123) < 1e-9
    assert scale_to_hex(1.0) == "3f800000"


def test_engine_without_tensorrt_keeps_onnx(checkpoint, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    for name in ("tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings"):  # hidden: as where neither is installed
        monkeypatch.setitem(sys.modules, name, None)
    r = CliRunner().invoke(cli, ["export", "--model", str(checkpoint), "--out", str(tmp_path), "--engine"])
    assert r.exit_code != 0 and "tensorrt" in r.output.lower()
    assert (tmp_path / "best.onnx").is_file()
    report = json.loads((tmp_path / "best.export.json").read_text())
    assert report["files"]["fp32"].endswith("best.onnx")


def test_cli_export_static_batch(checkpoint, tmp_path):
    r = CliRunner().invoke(cli, ["export", "--model", str(checkpoint), "--out", str(tmp_path), "--batch", "4"])
    assert r.exit_code == 0, r.output
    dim = onnx.load(str(tmp_path / "best.onnx")).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_value == 4
    bad = CliRunner().invoke(cli, ["export", "--model", str(checkpoint), "--out", str(tmp_path), "--batch", "4",
                                   "--dynamic"])
    assert bad.exit_code != 0 and "choose one" in bad.output


def test_int8_calibrated_on_a_folder_of_face_pictures_says_the_gate_did_not_run(checkpoint, tmp_path):
    """No prepared dataset: faces found in plain pictures calibrate both INT8 files; nothing gates them, and
    the export says so instead of passing them as checked."""
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    group = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"
    for i in range(2):
        shutil.copy(group, photos / f"p{i}.jpg")
    out = tmp_path / "exp"
    result = CliRunner().invoke(cli, ["export", "--model", str(checkpoint), "--int8", "--data", str(photos),
                                      "--calib-size", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "accuracy gate not run" in result.output and "folder of unlabelled pictures" in result.output
    report = json.loads((out / f"{Path(checkpoint).stem}.export.json").read_text())
    assert report["calibration"]["images"] == 5 and report["calibration"]["pictures"] == 2
    for fmt in ("int8", "int8-cpu"):
        assert Path(report["files"][fmt]).is_file()


def test_int8_calibration_folder_without_faces_is_one_line(checkpoint, tmp_path):
    blank = tmp_path / "blank"
    blank.mkdir()
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(blank / "wall.png")
    result = CliRunner().invoke(cli, ["export", "--model", str(checkpoint), "--int8", "--data", str(blank),
                                      "--out", str(tmp_path / "exp")])
    assert result.exit_code != 0 and "no face found in its 1 pictures; calibration needs faces" in result.output


def test_a_crop_model_keeps_its_crop_through_export(checkpoint, tmp_path):
    """A model trained on crops (eval_crop) is classified on the centre crop; its exported ONNX must say so, or
    it answers differently from its checkpoint, and the parity check must look at that path."""
    import shutil

    from feredge.runtime.classifier import Classifier

    ck = tmp_path / "crop.safetensors"
    shutil.copy(checkpoint, ck)
    side = json.loads(Path(str(checkpoint) + ".json").read_text())
    side["details"]["eval_crop"] = 40
    Path(str(ck) + ".json").write_text(json.dumps(side))
    result = CliRunner().invoke(cli, ["export", "--model", str(ck), "--out", str(tmp_path / "exp")])
    assert result.exit_code == 0, result.output
    onnx_path = tmp_path / "exp" / "crop.onnx"
    assert artifact.read(onnx_path).details["eval_crop"] == 40
    faces = np.random.default_rng(1).integers(0, 256, (8, 48, 48, 1), np.uint8)
    with Classifier(ck, backend="torch", device="cpu") as a, Classifier(onnx_path, device="cpu") as b:
        np.testing.assert_allclose(a.logits(faces), b.logits(faces), atol=1e-4)


def test_an_onnx_of_another_precision_is_not_exported_again(tmp_path):
    from feredge.weights import WEIGHTS_DIR

    result = CliRunner().invoke(cli, ["export", "--model", str(WEIGHTS_DIR / "feredge-n.int8-cpu.onnx"), "--fp16",
                                      "--out", str(tmp_path / "exp")])
    assert result.exit_code != 0 and "is a int8-cpu ONNX; export converts an fp32 ONNX" in result.output
    assert not (tmp_path / "exp").exists()
