"""GPU pipeline: box checks and flip-TTA merging here; the TensorRT end-to-end run only on a GPU with TensorRT."""

from __future__ import annotations

import numpy as np
import pytest

from feredge.errors import FeredgeError
from feredge.runtime.pipeline import check_boxes, merge_mirrored


def test_check_boxes_shapes_and_limits():
    assert check_boxes([], 4).shape == (0, 4)
    assert check_boxes([[1, 2, 3, 4]], 4).dtype == np.float32
    with pytest.raises(FeredgeError, match=r"shape \(4,\), expected \(N, 4\)"):
        check_boxes([1, 2, 3, 4], 4)
    with pytest.raises(FeredgeError, match="5 faces exceed the pipeline's max_faces=4"):
        check_boxes(np.ones((5, 4)), 4)


def test_merge_mirrored_averages_each_face_with_its_mirror():
    logits = np.arange(12, dtype=np.float32).reshape(6, 2)  # 3 faces then their 3 mirrors
    np.testing.assert_array_equal(merge_mirrored(logits, 3, True), (logits[:3] + logits[3:]) / 2)
    np.testing.assert_array_equal(merge_mirrored(logits[:3], 3, False), logits[:3])


@pytest.mark.gpu
@pytest.mark.trt
def test_pipeline_matches_cpu_reference_and_onnx_runtime(tmp_path):
    """Frame → kernel → engine on one stream, eager then graph replay, against CPU pre-processing + ONNX Runtime."""
    from feredge.engine.build import build_engine, trt_version
    from feredge.engine.plan import BatchProfile, build_plan
    from feredge.models import InputSpec
    from feredge.runtime.ort import OrtRunner
    from feredge.runtime.preprocess import preprocess_frame
    from feredge.runtime.trt import TrtRunner
    from feredge.weights import DEFAULT_ONNX

    engine = build_engine(DEFAULT_ONNX, build_plan(trt_version(), "fp32"), BatchProfile(1, 8, 16), (1, 48, 48),
                          tmp_path / "m.engine")
    ort = OrtRunner(DEFAULT_ONNX)
    spec = InputSpec(48, 1, (0.5,), (0.5,))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (720, 1281, 3), np.uint8)
    boxes = np.array([[100, 80, 200, 210], [-40, 600, 150, 150], [900, 10, 1, 1]], np.float32)
    expected = ort.infer(preprocess_frame(frame, boxes, 48, 1, spec.mean, spec.std, 0.15, True))
    expected = (expected[:3] + expected[3:]) / 2
    with TrtRunner(engine) as runner:
        from feredge.runtime.pipeline import GpuPipeline

        pipe = GpuPipeline(runner, spec, margin=0.15, mirror=True, max_faces=8)
        first = pipe(frame, boxes)  # eager, then captured
        replayed = pipe(frame, boxes)  # graph replay
        pipe.close()
    np.testing.assert_allclose(first, expected, atol=2e-2)
    np.testing.assert_allclose(replayed, first, atol=1e-5)
    assert pipe.graph_error == ""
