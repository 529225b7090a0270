"""The shipped CPU INT8 files, how `resolve` picks a precision, and when the runner trusts fused int8 kernels."""

from __future__ import annotations

import dataclasses

import pytest

import feredge.runtime.ort_session as ort_session
import feredge.weights as weights
from feredge import artifact
from feredge.errors import FeredgeError
from feredge.runtime.loader import model_path
from feredge.weights import WEIGHTS_DIR, resolve, shipped_names


@pytest.mark.parametrize("name", [n for n in shipped_names() if (WEIGHTS_DIR / f"{n}.safetensors").is_file()])
def test_resolver_finds_the_shipped_int8_cpu_file(name):
    path = resolve(name, precision="int8")
    assert path == WEIGHTS_DIR / f"{name}.int8-cpu.onnx" and path.is_file()
    info = artifact.read(path)
    assert info.precision == "int8-cpu" and info.details["target"] == "cpu" and info.model == name
    # made from the shipped weights
    assert info.sources["checkpoint"] == artifact.file_sha256(resolve(name, "checkpoint"))
    assert resolve(name) == resolve(name, precision="fp32") == WEIGHTS_DIR / f"{name}.onnx"


def test_auto_takes_int8_only_where_it_is_the_default_and_exact(monkeypatch):
    monkeypatch.setattr(weights, "CPU_INT8_DEFAULT", frozenset({"feredge-s"}))
    monkeypatch.setattr(ort_session, "int8_kernels_saturate", lambda *a, **k: False)
    assert model_path("feredge-s", precision="auto", device="cpu").name == "feredge-s.int8-cpu.onnx"
    assert model_path("feredge-s", precision="auto", device="cuda").name == "feredge-s.onnx"
    assert model_path("feredge-n", precision="auto", device="cpu").name == "feredge-n.onnx"  # not its CPU default
    monkeypatch.setattr(ort_session, "int8_kernels_saturate", lambda *a, **k: True)  # x86 without VNNI
    narrow = ort_session.narrow_weights(artifact.read(WEIGHTS_DIR / "feredge-s.int8-cpu.onnx"))
    want = "feredge-s.int8-cpu.onnx" if narrow else "feredge-s.onnx"
    assert model_path("feredge-s", precision="auto", device="cpu").name == want


@pytest.mark.parametrize("args, message", [
    (("feredge-s", "onnx", "int4"), "precision 'int4': expected one of fp32, fp16, int8"),
    (("feredge-s", "checkpoint", "int8"), "only ONNX files come in precisions"),
    (("exports/best.onnx", "onnx", "int8"), "exports/best.onnx: precision int8 picks among a shipped model's files"),
    (("feredge-s", "onnx", "fp16"), "feredge-s: no shipped fp16 file"),
    (("no-such-model", "onnx", "fp32"), "no-such-model: no shipped onnx of that name"),
])
def test_resolver_refuses_in_one_line(args, message):
    """A file's precision is named (auto is decided where the model runs, by the runtime's loader)."""
    with pytest.raises(FeredgeError, match=message.replace("(", r"\(")) as err:
        resolve(*args)
    assert "\n" not in str(err.value)


def test_fused_int8_kernels_only_where_exact(monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(ort_session, "int8_kernels_saturate", lambda *a, **k: True)
    assert ort_session.session_options().get_session_config_entry("session.disable_quant_qdq") == "1"
    with pytest.raises(RuntimeError):  # 7-bit weights: the fused kernels stay on
        ort_session.session_options(narrow=True).get_session_config_entry("session.disable_quant_qdq")
    info = artifact.read(WEIGHTS_DIR / "feredge-s.int8-cpu.onnx")
    narrow = dataclasses.replace(info, details={**info.details, "reduce_range": True})
    assert ort_session.narrow_weights(narrow)
    assert not ort_session.narrow_weights(dataclasses.replace(narrow, precision="int8-qdq"))


def test_auto_for_an_unknown_name_names_the_model():
    with pytest.raises(FeredgeError, match="no-such-model: no shipped onnx of that name"):
        model_path("no-such-model", precision="auto")
