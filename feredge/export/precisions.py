"""The exported file's other precisions, made from its fp32 ONNX: FP16, INT8 Q/DQ for TensorRT (with its
calibration cache for the implicit path) and the CPU INT8 file for ONNX Runtime's integer kernels. Each is
written with its description; calibration inputs come from `feredge.calibration`, chosen once per export."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge import artifact
from feredge._optional import require
from feredge.artifact import Artifact, file_sha256
from feredge.errors import FeredgeError

#: The calibration cache header's TensorRT version when no TensorRT is installed (the 8.5/8.6 implicit path).
CACHE_TRT_VERSION = "8.6.1"


def to_fp16(fp32: Path, info: Artifact, out: Path) -> tuple[Path, Artifact]:
    """fp16 weights and compute with fp32 I/O (for strongly typed TensorRT ≥ 10 and ONNX Runtime)."""
    onnx = require("onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from feredge.export.onnx import save_onnx

    model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    derived = info.derive("onnx", "fp16", sources={"onnx_fp32": file_sha256(fp32)}, versions=info.versions,
                          **info.details)
    return save_onnx(model, out, derived, check=False), derived


def int8_qdq(fp32: Path, info: Artifact, x: np.ndarray, calibration: dict, out: Path,
             cache_out: Path) -> tuple[Path, Path, Artifact]:
    """The Q/DQ INT8 ONNX (symmetric int8, per-channel weights: TensorRT's explicit path) calibrated on the
    model inputs ``x``, and the TensorRT calibration cache of the same ranges."""
    onnx = require("onnx")
    from feredge.calibration.quantize import activation_ranges, quantize_qdq, unquantized_inputs
    from feredge.calibration.trt_cache import write_cache
    from feredge.export.onnx import save_onnx

    method = calibration["method"]
    ranges = activation_ranges(fp32, x, method)
    qdq = quantize_qdq(fp32, x, out, method, ranges=ranges)
    model = onnx.load(str(qdq))
    missing = unquantized_inputs(model)
    if missing:
        raise FeredgeError(f"{qdq}: Conv/Gemm inputs without Q/DQ: {missing[:3]}")
    sources = {"onnx_fp32": file_sha256(fp32)}
    derived = info.derive("onnx", "int8-qdq", sources=sources, versions=info.versions, calibration=calibration,
                          **info.details)
    save_onnx(model, qdq, derived, check=False)
    version = _trt_version_or(CACHE_TRT_VERSION)
    cache = write_cache(ranges, cache_out, method, version)
    artifact.write(cache, info.derive("calib-cache", "int8-calib", sources=sources, versions={"tensorrt": version},
                                      calibration=calibration))
    return qdq, cache, derived


def int8_cpu(fp32: Path, info: Artifact, x: np.ndarray, calibration: dict, out: Path,
             reduce_range: bool) -> tuple[Path, Artifact]:
    """The CPU flavour from the same fp32 file and calibration inputs (ONNX Runtime's fast u8·s8 form)."""
    onnx = require("onnx")
    from feredge.calibration.cpu_int8 import PRECISION, quantize_cpu
    from feredge.export.onnx import save_onnx

    path = quantize_cpu(fp32, x, out, calibration["method"], reduce_range)
    sources = {**info.sources, "onnx_fp32": file_sha256(fp32)}
    derived = info.derive("onnx", PRECISION, sources=sources, versions=info.versions, calibration=dict(calibration),
                          **info.details, target="cpu", reduce_range=reduce_range,
                          quantization="QDQ, asymmetric uint8 activations, symmetric per-channel int8 weights"
                                       + (" in 7 bits" if reduce_range else ""))
    return save_onnx(onnx.load(str(path)), path, derived, check=False), derived


def _trt_version_or(default: str) -> str:
    try:
        import tensorrt

        return tensorrt.__version__
    except ImportError:
        return default
