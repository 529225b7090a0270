"""ONNX Runtime session settings shared by the export's checks and the runtime's runner, so that an INT8 Q/DQ
file gives the same answers in both, on every CPU."""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any

from feredge._optional import require
from feredge.artifact import Artifact

#: x86 CPU flags of instructions that multiply int8 without clipping intermediate sums (VNNI, AMX).
_EXACT_INT8_FLAGS = re.compile(r"\b(avx512_vnni|avx_vnni|amx_int8)\b")
_X86 = ("x86_64", "amd64", "i386", "i686")


def int8_kernels_saturate(cpuinfo: str | None = None, machine: str | None = None) -> bool:
    """Whether ONNX Runtime's fused int8 kernels clip here: on x86 without VNNI they multiply u8·s8 with
    VPMADDUBSW, whose 16-bit pair sums saturate (a small model's validation accuracy fell from 28.6 % to
    16.7 % on an AVX2-only EPYC). An x86 CPU that cannot be read counts as one: the exact path is slower,
    never wrong."""
    if (machine or platform.machine()).lower() not in _X86:
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True
    return _EXACT_INT8_FLAGS.search(cpuinfo) is None


def narrow_weights(info: Artifact) -> bool:
    """Whether a file's fused int8 kernels are exact on every CPU: a CPU INT8 file whose weights were stored in
    7 bits (``reduce_range``), so that even VPMADDUBSW's 16-bit pair sums hold 2·255·64 without clipping."""
    return info.precision == "int8-cpu" and info.details.get("reduce_range") is True


def session_options(exact_qdq: bool | None = None, narrow: bool = False) -> Any:
    """Quiet session options. ``exact_qdq`` runs Q/DQ nodes as written (the quantisation arithmetic in float:
    TensorRT's semantics) instead of fusing them into int8 kernels; None does so only where those clip, unless
    the file's weights are ``narrow`` (`narrow_weights`)."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # its warnings about unused initialisers are not the user's business
    exact = (int8_kernels_saturate() and not narrow) if exact_qdq is None else exact_qdq
    if exact:  # the other optimisations stay (constant folding turns the weights' DequantizeLinear into floats)
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return options
