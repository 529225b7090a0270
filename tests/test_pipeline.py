"""GPU pipeline: box checks and flip-TTA merging here; end-to-end runs (TensorRT, ONNX Runtime CUDA) on a GPU only."""

from __future__ import annotations

import numpy as np
import pytest

from feredge.errors import FeredgeError
from feredge.runtime.classifier import fold
from feredge.runtime.pipeline import check_boxes


def test_check_boxes_shapes_and_limits():
    assert check_boxes([], 4).shape == (0, 4)
    assert check_boxes([[1, 2, 3, 4]], 4).dtype == np.float32
    with pytest.raises(FeredgeError, match=r"shape \(4,\), expected \(N, 4\)"):
        check_boxes([1, 2, 3, 4], 4)
    with pytest.raises(FeredgeError, match="5 faces exceed the pipeline's max_faces=4"):
        check_boxes(np.ones((5, 4)), 4)


def test_fold_averages_each_face_with_its_mirror():
    logits = np.arange(12, dtype=np.float32).reshape(6, 2)  # 3 faces then their 3 mirrors
    np.testing.assert_array_equal(fold(logits, 3, "hflip"), (logits[:3] + logits[3:]) / 2)
    np.testing.assert_array_equal(fold(logits[:3], 3, "none"), logits[:3])


SPEC_ARGS = (48, 1, (0.5,), (0.5,))


def _frame_boxes_expected():
    """A random odd-width frame, boxes partly outside / 1 pixel, and CPU pre-processing + ONNX Runtime logits."""
    from feredge.runtime.ort import OrtRunner
    from feredge.vision.preprocess import preprocess_frame
    from feredge.weights import shipped

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (720, 1281, 3), np.uint8)
    boxes = np.array([[100, 80, 200, 210], [-40, 600, 150, 150], [900, 10, 1, 1]], np.float32)
    size, channels, mean, std = SPEC_ARGS
    with OrtRunner(shipped('feredge-s')) as ort:
        expected = ort.infer(preprocess_frame(frame, boxes, size, channels, mean, std, 0.15, True))
    return frame, boxes, (expected[:3] + expected[3:]) / 2


def _run_pipeline(runner, frame, boxes):
    """Two frames through a GpuPipeline: the first eager (then captured when the runner allows), the second replayed."""
    from feredge.artifact import InputSpec
    from feredge.runtime.pipeline import GpuPipeline

    pipe = GpuPipeline(runner, InputSpec(*SPEC_ARGS), margin=0.15, mirror=True, max_faces=8)
    first, second = (fold(pipe(frame, boxes), len(boxes), "hflip") for _ in range(2))
    pipe.close()
    return pipe, first, second


@pytest.mark.gpu
@pytest.mark.trt
def test_pipeline_matches_cpu_reference_and_onnx_runtime(tmp_path):
    """Frame → kernel → engine on one stream, eager then graph replay, against CPU pre-processing + ONNX Runtime."""
    from feredge.engine.build import build_engine, trt_version
    from feredge.engine.plan import BatchProfile, build_plan
    from feredge.runtime.trt import TrtRunner
    from feredge.weights import shipped

    engine = build_engine(shipped('feredge-s'), build_plan(trt_version(), "fp32"), BatchProfile(1, 8, 16), (1, 48, 48),
                          tmp_path / "m.engine")
    frame, boxes, expected = _frame_boxes_expected()
    with TrtRunner(engine) as runner:
        pipe, first, replayed = _run_pipeline(runner, frame, boxes)
    np.testing.assert_allclose(first, expected, atol=2e-2)
    np.testing.assert_allclose(replayed, first, atol=1e-5)
    assert pipe.graph_error == ""


@pytest.mark.gpu
def test_pipeline_on_onnx_runtime_cuda_matches_cpu():
    """The same pipeline feeding ONNX Runtime's CUDA provider through I/O binding (no TensorRT needed)."""
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA execution provider (install onnxruntime-gpu)")
    from feredge.runtime.ort import OrtRunner
    from feredge.weights import shipped

    frame, boxes, expected = _frame_boxes_expected()
    with OrtRunner(shipped('feredge-s'), device="cuda", max_batch=16) as runner:
        pipe, first, second = _run_pipeline(runner, frame, boxes)
    np.testing.assert_allclose(first, expected, atol=2e-2)
    np.testing.assert_allclose(second, first, atol=1e-5)
    assert "own stream" in pipe.graph_error
