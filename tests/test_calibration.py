"""INT8 calibration takes any number of images: ONNX Runtime's histogram calibrators stack every batch's
activations, so the batches must be equal (a calibration set of 37 or 140 images crashed them)."""

from pathlib import Path

import numpy as np
import pytest

from feredge.calibration.quantize import activation_ranges, even_batch

onnx = pytest.importorskip("onnx")


def test_even_batch_splits_any_count_into_equal_batches():
    for n in (1, 31, 32, 37, 60, 140, 512):
        size = even_batch(n, 32)
        assert 1 <= size <= 32 and n % size == 0
    assert even_batch(512, 32) == 32 and even_batch(140, 32) == 28 and even_batch(37, 32) == 1


def _conv_model(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 1, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["conv"]), helper.make_node("Relu", ["conv"], ["output"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 4, 6, 6])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


@pytest.mark.parametrize("method", ["entropy", "percentile", "minmax"])
def test_ranges_from_a_count_that_is_no_multiple_of_the_batch(tmp_path, method):
    inputs = np.random.default_rng(1).normal(size=(37, 1, 8, 8)).astype(np.float32)
    ranges = activation_ranges(_conv_model(tmp_path / "m.onnx"), inputs, method)
    assert {"input", "output"} <= set(ranges) and all(v > 0 for v in ranges.values())
