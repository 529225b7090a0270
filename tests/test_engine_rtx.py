"""Real TensorRT-for-RTX engines, built on this machine without a GPU through `feredge export --engine`: one per
precision with its sidecar, the plan's tensor names and sizes, and every refusal in one line. Running an
engine needs a GPU: that test skips saying why, and without one the runner says so in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from feredge import artifact
from feredge.commands.cli import cli
from feredge.errors import FeredgeError

pytestmark = pytest.mark.rtx
SUPPORTED = "sm75, sm80, sm86, sm89, sm120, sm121"


def one_line_error(result) -> str:
    """The CLI's error line: exit ≠ 0, no traceback, exactly one line starting with 'Error:'."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), f"traceback instead of a one-line error: {result.exception!r}"
    lines = [line for line in result.output.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def rtx():
    from feredge.engine.tensorrt import RTX, load

    return load(RTX)


@pytest.fixture(scope="module")
def engines(tiny_checkpoint, prepared_fer, tmp_path_factory):
    """fp32, fp16 and INT8 engines of the tiny checkpoint for every default architecture, as a user makes them."""
    out = tmp_path_factory.mktemp("rtx")
    result = CliRunner().invoke(cli, ["export", "--model", str(tiny_checkpoint), "--out", str(out), "--fp16", "--int8",
                                      "--calib-data", str(prepared_fer), "--calib-size", "64", "--max-drop", "100",
                                      "--engine"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "best.export.json").read_text())
    return {p: Path(e["path"]) for p, e in report["engines"].items()}, report, result.output


def test_one_engine_per_precision_with_its_description(engines, rtx):
    paths, report, output = engines
    assert sorted(paths) == ["fp16", "fp32", "int8"]
    onnx_of = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}
    for precision, path in paths.items():
        info = artifact.read(path)
        key = info.engine_key or {}
        assert info.kind == "engine" and info.precision == {"int8": "int8-qdq"}.get(precision, precision)
        assert key["flavour"] == info.details["tensorrt_flavour"] == "tensorrt-rtx"
        assert key["tensorrt"] == info.versions["tensorrt-rtx"] == rtx.version
        assert info.sources["onnx"] == artifact.file_sha256(report["files"][onnx_of[precision]])
        assert info.details["batch_profile"] == {"min": 1, "opt": 16, "max": 32}
        assert info.details["size_bytes"] == path.stat().st_size and info.details["build_s"] > 0
        assert f"engine {precision}" in output and "MB, built in" in output
    # Turing cannot take fp32 GEMMs (nor INT8's, whose graph keeps one): left out by default, and said so
    every = ["7.5", "8.0", "8.6", "8.9", "12.0", "12.1"]
    assert artifact.read(paths["fp16"]).engine_key["compute_capabilities"] == every
    for precision in ("fp32", "int8"):
        assert artifact.read(paths[precision]).engine_key["compute_capabilities"] == every[1:]
        assert f"{precision}: skipped sm75: Turing has no FP32 GEMM" in output


def test_plan_carries_the_models_tensor_names_and_fp16_is_smaller(engines):
    paths, report, _ = engines
    model = onnx.load(report["files"]["fp32"])
    names = {"inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output]}
    for path in paths.values():
        assert artifact.read(path).details["tensors"] == names  # as TensorRT's network named them
        blob = path.read_bytes()
        assert all(name.encode() in blob for name in names["inputs"] + names["outputs"])
    assert paths["fp16"].stat().st_size < paths["fp32"].stat().st_size


def test_onnx_tensorrt_cannot_parse_names_the_node(rtx, tmp_path):
    from onnx import TensorProto, helper

    from feredge.engine.build import build_engine
    from feredge.engine.plan import BatchProfile, build_plan

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["a"], name="fine"),
         helper.make_node("Sharpen", ["a"], ["logits"], name="head/sharpen", domain="example.custom")],
        "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 48, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 1, 48, 48])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("example.custom", 1)]), tmp_path / "x.onnx")
    with pytest.raises(FeredgeError) as err:
        build_engine(tmp_path / "x.onnx", build_plan(rtx.version, "fp32", flavour=rtx.flavour), BatchProfile(1, 1, 1),
                     (1, 48, 48), tmp_path / "x.engine", archs=("8.6",), found=rtx)
    assert "\n" not in str(err.value) and "cannot parse node 'head/sharpen' (Sharpen)" in str(err.value)
    assert not (tmp_path / "x.engine").exists()


def test_an_asked_target_the_library_refuses_is_one_line(engines, rtx, tmp_path):
    from feredge.engine.build import build_engine
    from feredge.engine.plan import BatchProfile, build_plan

    fp32 = Path(engines[1]["files"]["fp32"])
    with pytest.raises(FeredgeError) as err:
        build_engine(fp32, build_plan(rtx.version, "fp32", flavour=rtx.flavour), BatchProfile(1, 1, 1), (1, 48, 48),
                     tmp_path / "t.engine", archs=("7.5",), found=rtx)
    assert "\n" not in str(err.value) and "could not build a fp32 engine for sm75" in str(err.value)
    assert "FP32 GEMM is not supported" in str(err.value)


@pytest.mark.parametrize("arch, gpu", [("sm90", "H100/H200"), ("sm87", "Jetson Orin"), ("sm110", "Jetson Thor")])
def test_architectures_it_cannot_target_are_refused_before_any_work(tiny_checkpoint, tmp_path, arch, gpu):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", "--model", str(tiny_checkpoint), "--out", str(out), "--engine",
                                      "--gpu-arch", f"sm86,{arch}"])
    line = one_line_error(result)
    assert f"--gpu-arch {arch} ({gpu})" in line and SUPPORTED in line and "regular TensorRT" in line
    assert not out.exists()


@pytest.mark.parametrize("extra, fragment", [
    (["--int8", "--implicit-int8"], "--implicit-int8: TensorRT for RTX"),
    (["--dla-core", "0"], "--dla-core: TensorRT for RTX"),
    (["--format", "triton"], "Triton's TensorRT backend and DeepStream need an engine from the regular TensorRT"),
])
def test_options_it_cannot_honour_are_refused_before_any_work(tiny_checkpoint, prepared_fer, tmp_path, extra, fragment):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", "--model", str(tiny_checkpoint), "--out", str(out), "--engine",
                                      "--calib-data", str(prepared_fer), *extra])
    assert fragment in one_line_error(result)
    assert not out.exists()


def test_triton_and_deepstream_refuse_an_rtx_plan(engines, tmp_path):
    from feredge.export.triton import Batching, deepstream_config, write_export_repository

    path = engines[0]["fp16"]
    with pytest.raises(FeredgeError, match="cannot load"):
        write_export_repository(tmp_path / "triton", path, Batching())
    with pytest.raises(FeredgeError, match="DeepStream config: Triton's TensorRT backend and DeepStream need"):
        deepstream_config(artifact.read(path), path, engine=True)
    assert not (tmp_path / "triton").exists()


def test_a_truncated_plan_is_refused(engines, tmp_path):
    from feredge.runtime.trt import TrtRunner

    source = engines[0]["fp16"]
    cut = tmp_path / source.name
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    shutil.copyfile(artifact.sidecar_path(source), artifact.sidecar_path(cut))
    with pytest.raises(FeredgeError) as err:
        TrtRunner(cut)
    assert "\n" not in str(err.value) and "(truncated or replaced?)" in str(err.value)
    result = CliRunner().invoke(cli, ["predict", "--model", str(cut), "--out", str(tmp_path / "p")])
    assert "truncated or replaced" in one_line_error(result)


def test_without_a_gpu_an_engine_is_one_line_everywhere(engines, tmp_path):
    from feredge.cuda import cuda_api

    try:
        cuda_api()
        pytest.skip("a GPU is usable here: the engine loads (see test_engine_runs_like_onnx_runtime)")
    except Exception:
        pass
    import feredge

    path = engines[0]["fp32"]
    with pytest.raises(FeredgeError) as err:
        feredge.Recognizer(model=str(path))
    assert "\n" not in str(err.value) and "runs only on an NVIDIA GPU" in str(err.value)
    for argv in (["predict", "--model", str(path), "--out", str(tmp_path / "p")],
                 ["bench", "--model", str(path), "--duration-s", "0.1", "--out", str(tmp_path / "b")]):
        assert "runs only on an NVIDIA GPU, and none is usable here" in one_line_error(CliRunner().invoke(cli, argv))


@pytest.mark.gpu
def test_engine_runs_like_onnx_runtime(engines):
    from feredge.cuda import device_identity
    from feredge.engine.tensorrt import RTX_ARCHS
    from feredge.runtime.ort import OrtRunner
    from feredge.runtime.trt import TrtRunner

    name, cc = device_identity()
    if cc not in RTX_ARCHS:
        pytest.skip(f"TensorRT for RTX does not target {name} (sm{cc.replace('.', '')})")
    x = np.random.default_rng(0).normal(size=(5, 1, 48, 48)).astype(np.float32)
    with OrtRunner(engines[1]["files"]["fp32"]) as ort:
        expected = ort.infer(x)
    for precision, tol in (("fp32", 1e-3), ("fp16", 5e-2)):
        with TrtRunner(engines[0][precision]) as runner:
            np.testing.assert_allclose(runner.infer(x), expected, atol=tol)
        assert runner.runtime_cache_path is not None and runner.runtime_cache_path.is_file()


def test_a_shipped_model_for_chosen_architectures(tmp_path):
    out = tmp_path / "n"
    result = CliRunner().invoke(cli, ["export", "--model", "feredge-n", "--out", str(out), "--fp16", "--engine",
                                      "--gpu-arch", "sm86,sm120"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "feredge-n.export.json").read_text())
    engines = {p: Path(e["path"]) for p, e in report["engines"].items()}
    assert sorted(engines) == ["fp16", "fp32"] and "skipped" not in result.output  # asked targets are all tried
    for path in engines.values():
        assert artifact.read(path).engine_key["compute_capabilities"] == ["8.6", "12.0"]
        assert artifact.read(path).details["tensors"] == {"inputs": ["input"], "outputs": ["logits"]}
    assert engines["fp16"].stat().st_size < engines["fp32"].stat().st_size
