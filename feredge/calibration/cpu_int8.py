"""An INT8 ONNX in the form ONNX Runtime's CPU kernels are fast at: u8 activations, s8 per-channel weights.

The TensorRT-style file (`feredge.calibration.quantize`) has symmetric *signed* activations, which ONNX
Runtime's CPU execution provider runs no faster than fp32; with asymmetric uint8 activations it fuses the
Q/DQ pairs into its u8·s8 integer kernels (VNNI on x86, dot-product instructions on ARM64). The graph is
first put through ``quant_pre_process`` (shape inference and ONNX Runtime's graph optimisations), as
onnxruntime.quantization advises, and calibrated on the same class-balanced set as the TensorRT file.

``reduce_range`` stores the weights in 7 bits: then the pair sums of VPMADDUBSW, the u8·s8 instruction
of x86 CPUs without VNNI (AVX2), cannot saturate (2·255·64 < 2¹⁵), so the fused kernels stay exact there.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.calibration.quantize import _method, _quiet, _reader
from feredge.config import CALIB_METHOD

#: The precision an int8-cpu file carries in its description (`feredge.artifact.ARTIFACT_PRECISIONS`).
PRECISION = "int8-cpu"


def pre_process(fp32_onnx: Path, out: Path) -> Path:
    """The graph as onnxruntime.quantization wants it: shapes inferred, batch-norms and constants folded."""
    require("onnxruntime.quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _quiet():
        quant_pre_process(str(fp32_onnx), str(out), skip_symbolic_shape=False)
    return Path(out)


def activation_extents(onnx_path: Path, inputs: np.ndarray, method: str = CALIB_METHOD, input_name: str = "input",
                       batch: int = 32, percentile: float = 99.99) -> dict[str, tuple[float, float]]:
    """(low, high) of every activation, chosen by ``method`` (asymmetric: u8 spends no code on a ReLU's
    empty negative half). Histograms as for the TensorRT file: 2048 bins, 128 quantised bins for entropy."""
    q = require("onnxruntime.quantization")
    extra: dict = {"symmetric": False}
    if method == "percentile":
        extra.update(percentile=percentile, num_bins=2048)
    if method == "entropy":
        extra.update(num_bins=2048, num_quantized_bins=128)
    calibrate = _method(method)
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        calibrator = q.create_calibrator(str(onnx_path), None, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                         calibrate_method=calibrate, extra_options=extra)
        calibrator.collect_data(_reader(inputs, input_name, batch, f"CPU ranges ({method})"))
        data = calibrator.compute_data()
    extents = {}
    for name, value in data.data.items():
        lo, hi = value.range_value if hasattr(value, "range_value") else value
        extents[name] = (float(np.asarray(lo).min()), float(np.asarray(hi).max()))
    return extents


def quantize_cpu(fp32_onnx: Path, inputs: np.ndarray, out: Path, method: str = CALIB_METHOD,
                 reduce_range: bool = False, input_name: str = "input", batch: int = 32,
                 percentile: float = 99.99) -> Path:
    """Write the CPU INT8 ONNX of ``fp32_onnx`` calibrated on ``inputs`` (pre-processed float32 NCHW).

    QDQ format, asymmetric uint8 activations, symmetric per-channel int8 weights, int32 bias. Ranges are
    computed once with ``method`` and imposed as rmin/rmax overrides (quantize_static cannot set the
    histogram size itself), so its own minmax pass costs one cheap sweep."""
    q = require("onnxruntime.quantization")
    with tempfile.TemporaryDirectory() as tmp:
        pre = pre_process(fp32_onnx, Path(tmp) / "pre.onnx")
        extents = activation_extents(pre, inputs, method, input_name, batch, percentile)
        overrides = {name: [{"rmin": np.float32(min(lo, 0.0)), "rmax": np.float32(max(hi, lo + 1e-6, 0.0))}]
                     for name, (lo, hi) in extents.items()}
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True, "TensorQuantOverrides": overrides}
        with _quiet():
            q.quantize_static(str(pre), str(out), _reader(inputs, input_name, batch, "quantizing (CPU)"),
                              quant_format=q.QuantFormat.QDQ, activation_type=q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
                              calibrate_method=_method("minmax"), extra_options=extra)
    return Path(out)


def activation_zero_point_types(model) -> set[int]:
    """ONNX element types of the zero points of QuantizeLinear nodes (what the activations are quantised to)."""
    onnx = require("onnx")
    init = {t.name: t.data_type for t in model.graph.initializer}
    types = {init[node.input[2]] for node in model.graph.node
             if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in init}
    return types - {onnx.TensorProto.UNDEFINED}
