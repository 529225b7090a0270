"""Activation ranges (entropy/KL, minmax, percentile) and a Q/DQ INT8 ONNX for TensorRT's explicit path.

Built on onnxruntime.quantization: symmetric signed int8 activations and per-channel symmetric int8
weights, as TensorRT requires (asymmetric UINT8 is DLA-only). The same ranges also become a
TensorRT-format calibration cache for the implicit path of TensorRT 8.5/8.6.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.config import CALIB_METHOD, CALIB_METHODS
from feredge.errors import FeredgeError

METHODS = CALIB_METHODS
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Add", "GlobalAveragePool", "MaxPool", "Concat", "Mul"]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hold back what onnxruntime.quantization says while it works: its calibrators print progress to
    stdout and it logs advice ("consider pre-processing") on the root logger as warnings. Errors still
    reach the user (logged at ERROR or raised)."""
    root = logging.getLogger()

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    root.addFilter(keep)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(keep)


def _method(name: str):
    q = require("onnxruntime.quantization")
    table = {"entropy": q.CalibrationMethod.Entropy, "minmax": q.CalibrationMethod.MinMax,
             "percentile": q.CalibrationMethod.Percentile}
    if name not in table:
        raise FeredgeError(f"--calib-method {name!r}: expected one of {', '.join(METHODS)}")
    return table[name]


def even_batch(n: int, most: int) -> int:
    """The largest batch size up to ``most`` that splits ``n`` inputs into equal batches: ONNX Runtime's
    histogram calibrators stack every batch's activations, and a shorter last batch makes them fail."""
    return max(d for d in range(1, max(1, min(n, most)) + 1) if n % d == 0)


def _reader(batches: np.ndarray, input_name: str, batch: int, desc: str):
    """A CalibrationDataReader over float32 NCHW inputs in equal batches, with a progress bar over them."""
    q = require("onnxruntime.quantization")
    from tqdm import tqdm

    batch = even_batch(len(batches), batch)

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.steps = range(0, len(batches), batch)
            self.bar = tqdm(total=len(self.steps), desc=desc, unit="batch", leave=False)
            self.it = iter(self.steps)

        def get_next(self):
            start = next(self.it, None)
            if start is None:
                self.bar.close()
                return None
            self.bar.update()
            return {input_name: batches[start:start + batch]}

    return Reader()


def _extra(method: str, percentile: float) -> dict:
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}  # TensorRT wants float bias
    if method == "percentile":
        extra["CalibPercentile"] = percentile
    return extra


def quantize_qdq(fp32_onnx: Path, inputs: np.ndarray, out: Path, method: str = CALIB_METHOD,
                 input_name: str = "input", batch: int = 32, percentile: float = 99.99,
                 ranges: dict[str, float] | None = None) -> Path:
    """Write a Q/DQ INT8 ONNX calibrated on ``inputs`` (already pre-processed float32 NCHW).

    Ranges come from ``activation_ranges`` (TensorRT-like histograms: 2048 bins, 128 quantised bins for
    entropy) and are imposed as scale overrides: quantize_static cannot set the histogram size itself,
    and with its default of 128 bins entropy calibration degenerates to minmax. Pass ``ranges`` when they
    were already computed (e.g. for the TensorRT calibration cache) to calibrate only once.
    """
    q = require("onnxruntime.quantization")
    if ranges is None:
        ranges = activation_ranges(fp32_onnx, inputs, method, input_name, batch, percentile)
    overrides = {name: [{"scale": np.array(max(amax, 1e-8) / 127.0, np.float32), "zero_point": np.array(0, np.int8)}]
                 for name, amax in ranges.items()}
    extra = {**_extra(method, percentile), "TensorQuantOverrides": overrides}
    with _quiet():
        q.quantize_static(str(fp32_onnx), str(out), _reader(inputs, input_name, batch, "quantizing"),
                          quant_format=q.QuantFormat.QDQ, activation_type=q.QuantType.QInt8,
                          weight_type=q.QuantType.QInt8, per_channel=True, calibrate_method=_method("minmax"),
                          op_types_to_quantize=QUANTIZED_OPS, extra_options=extra)
    return Path(out)


def activation_ranges(fp32_onnx: Path, inputs: np.ndarray, method: str = CALIB_METHOD, input_name: str = "input",
                      batch: int = 32, percentile: float = 99.99) -> dict[str, float]:
    """Per-tensor absolute maximum |x| chosen by ``method`` for every activation in the graph."""
    q = require("onnxruntime.quantization")
    extra = {"symmetric": True}
    if method == "percentile":
        extra["percentile"] = percentile
    if method == "entropy":
        extra.update(num_bins=2048, num_quantized_bins=128)  # TensorRT's entropy calibrator settings
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        calibrator = q.create_calibrator(str(fp32_onnx), None, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                         calibrate_method=_method(method), extra_options=extra)
        calibrator.collect_data(_reader(inputs, input_name, batch, f"ranges ({method})"))
        data = calibrator.compute_data()
    ranges = {}
    for name, value in data.data.items():
        lo, hi = value.range_value if hasattr(value, "range_value") else value
        ranges[name] = float(max(abs(float(np.asarray(lo).max())), abs(float(np.asarray(hi).max()))))
    return ranges


def unquantized_inputs(model, op_types: tuple[str, ...] = ("Conv", "Gemm")) -> list[str]:
    """Conv/Gemm inputs (data and weights) not fed by a DequantizeLinear: TensorRT would run them in float."""
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    missing = []
    for node in model.graph.node:
        if node.op_type in op_types:
            for name in node.input[:2]:
                if producers.get(name) != "DequantizeLinear":
                    missing.append(f"{node.name or node.op_type}:{name}")
    return missing
