"""TensorRT build plans per version and engine cache keys — logic only; no TensorRT build is faked."""

from __future__ import annotations

import pytest

from feredge.artifact import Artifact, ArtifactError, InputSpec
from feredge.engine.plan import BatchProfile, build_plan, engine_key
from feredge.errors import FeredgeError


@pytest.mark.parametrize("version", ["8.5.2", "8.6.2.3"])
def test_trt8_uses_explicit_batch_and_weak_flags(version):
    fp16 = build_plan(version, "fp16")
    assert fp16.network_flags == ("EXPLICIT_BATCH",) and fp16.builder_flags == ("FP16",)
    assert fp16.onnx_kind == "fp32"  # TensorRT 8 lowers precision itself from the fp32 graph
    int8 = build_plan(version, "int8")
    assert int8.builder_flags == ("INT8", "FP16") and int8.onnx_kind == "qdq" and not int8.calibration_cache
    implicit = build_plan(version, "int8", implicit_int8=True)
    assert implicit.calibration_cache and implicit.onnx_kind == "fp32"


@pytest.mark.parametrize("version", ["10.3.0", "10.16.2.10"])
def test_trt10_is_strongly_typed_with_baked_precision(version):
    for precision, kind in (("fp32", "fp32"), ("fp16", "fp16"), ("int8", "qdq")):
        plan = build_plan(version, precision)
        assert plan.network_flags == ("STRONGLY_TYPED",) and plan.builder_flags == () and plan.onnx_kind == kind
    weak = build_plan(version, "fp16", weakly_typed=True)
    assert weak.builder_flags == ("FP16",) and weak.network_flags == () and weak.notes
    assert build_plan(version, "int8", implicit_int8=True).notes  # deprecated, but available on 10.x


def test_trt11_strongly_typed_only():
    assert build_plan("11.4.1", "int8").network_flags == ("STRONGLY_TYPED",)
    with pytest.raises(FeredgeError, match="removed implicit INT8"):
        build_plan("11.0.0", "int8", implicit_int8=True)
    with pytest.raises(FeredgeError, match="weak typing"):
        build_plan("11.0.0", "fp16", weakly_typed=True)


def test_old_or_bad_versions_and_dla():
    with pytest.raises(FeredgeError, match="not supported"):
        build_plan("8.4.1", "fp16")
    with pytest.raises(FeredgeError, match="cannot parse"):
        build_plan("ten", "fp16")
    assert "GPU_FALLBACK" in build_plan("8.5.2", "int8", dla=True).builder_flags


def test_batch_profile():
    assert BatchProfile.of(8, 32) == BatchProfile(8, 8, 8)
    assert BatchProfile.of(None, 32) == BatchProfile(1, 16, 32)
    assert BatchProfile.of(None, 1) == BatchProfile(1, 1, 1)
    with pytest.raises(FeredgeError):
        BatchProfile.of(None, 0)


def test_engine_key_changes_with_every_field_and_detects_foreign_engines():
    base = dict(onnx_sha256="a" * 64, precision="fp16", profile=BatchProfile(1, 16, 32),
                gpu_name="Orin", compute_capability="8.7", trt_version="10.3.0")
    key = engine_key(**base)
    for field, other in (("onnx_sha256", "b" * 64), ("precision", "int8"), ("profile", BatchProfile(1, 1, 1)),
                         ("gpu_name", "RTX 4090"), ("compute_capability", "8.9"), ("trt_version", "10.7.0")):
        assert engine_key(**{**base, field: other})["digest"] != key["digest"], field
    here = {"gpu_name": "NVIDIA H100", "compute_capability": "9.0", "tensorrt": "10.3.0"}
    info = Artifact("engine", "feredge-s", ("a", "b"), InputSpec(48, 1, (0.5,), (0.5,)), engine_key=key)
    with pytest.raises(ArtifactError) as err:
        info.check_engine_key(here, "m.engine")
    assert "gpu_name: engine 'Orin' vs here 'NVIDIA H100'" in str(err.value) and "compute_capability" in str(err.value)
    info.check_engine_key({"gpu_name": "Orin", "compute_capability": "8.7", "tensorrt": "10.3.0"}, "m.engine")


def test_rtx_plans_are_strongly_typed_from_the_onnx():
    for precision, kind in (("fp32", "fp32"), ("fp16", "fp16"), ("int8", "qdq")):
        plan = build_plan("1.7.1.116", precision, flavour="tensorrt-rtx")
        assert plan.network_flags == ("STRONGLY_TYPED",) and plan.onnx_kind == kind and not plan.calibration_cache
        assert plan.builder_flags == ("REQUIRE_USER_ALLOCATION",) and plan.flavour == "tensorrt-rtx"
    with pytest.raises(FeredgeError, match="1.x is TensorRT for RTX's numbering"):
        build_plan("1.7.1.116", "fp16")


@pytest.mark.parametrize("option, kwargs, why", [
    ("--implicit-int8", {"implicit_int8": True}, "no INT8 calibrators"),
    ("weak typing", {"weakly_typed": True}, "strongly typed"),
    ("--dla-core", {"dla": True}, "no DLA"),
])
def test_rtx_refuses_what_it_does_not_have_in_one_line(option, kwargs, why):
    with pytest.raises(FeredgeError) as err:
        build_plan("1.7.1.116", "int8", flavour="tensorrt-rtx", **kwargs)
    assert str(err.value).startswith(f"{option}: TensorRT for RTX 1.7.1.116") and why in str(err.value)
    assert "\n" not in str(err.value)


def test_gpu_arch_parsing_and_default_targets():
    from feredge.engine.tensorrt import parse_archs, rtx_targets

    assert parse_archs("sm86,SM_89, 8.0,sm120,sm86") == ("8.6", "8.9", "8.0", "12.0")
    for bad, fragment in (("sm90", "sm90 (H100/H200)"), ("sm87", "sm87 (Jetson Orin)"), ("sm110", "(Jetson Thor)"),
                          ("sm72", "targets only sm75, sm80"), ("ampere", "not a compute capability")):
        with pytest.raises(FeredgeError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            parse_archs(bad)
    assert rtx_targets("fp16") == (("7.5", "8.0", "8.6", "8.9", "12.0", "12.1"), {})
    archs, skipped = rtx_targets("int8")
    assert "7.5" not in archs and "FP32 GEMM" in skipped["7.5"]
    assert rtx_targets("fp32", ("7.5",)) == (("7.5",), {})  # asked for: the library decides


def test_rtx_engine_key_names_targets_not_a_gpu():
    from feredge.engine.plan import rtx_engine_key

    key = rtx_engine_key("a" * 64, "fp16", BatchProfile(1, 16, 32), ("8.6", "8.9"), "1.7.1.116")
    assert key["flavour"] == "tensorrt-rtx" and key["compute_capabilities"] == ["8.6", "8.9"] and "gpu_name" not in key
    assert rtx_engine_key("a" * 64, "fp16", BatchProfile(1, 16, 32), ("8.6",), "1.7.1.116")["digest"] != key["digest"]
