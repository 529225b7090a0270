"""Pre-processing: the NumPy reference against hand-computed values, OpenCV against the reference,
and (on a GPU) the CUDA kernel against the reference."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from feredge.cuda.preprocess import launch_config
from feredge.vision.preprocess import crop_square, preprocess_faces, preprocess_frame

GRAY = dict(size=4, channels=1, mean=(0.0,), std=(1.0,))


def test_identity_crop_reproduces_pixels():
    # A 4×4 box sampled at 4×4 hits pixel centres exactly: output = gray(frame)/255.
    frame = np.random.default_rng(0).integers(0, 256, (6, 7, 3), np.uint8)
    out = preprocess_frame(frame, [[1, 2, 4, 4]], **GRAY)
    gray = frame[2:6, 1:5].astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)
    np.testing.assert_allclose(out[0, 0], gray / 255, atol=1e-6)


def test_hand_computed_bilinear_and_normalisation():
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[0, 0] = frame[1, 1] = 255  # white diagonal
    # A 2×2 box sampled to 1×1: the single sample sits at (0.5, 0.5) → mean of the 4 pixels = 127.5.
    out = preprocess_frame(frame, [[0, 0, 2, 2]], size=1, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    np.testing.assert_allclose(out[0, :, 0, 0], [0.0, 0.0, 0.0], atol=1e-6)  # (127.5/255 − .5)/.5 = 0
    # Sampled to 2×2 with a 2×2 box: exact pixels; RGB order reversed from BGR.
    frame[0, 1] = (10, 20, 30)
    out = preprocess_frame(frame, [[0, 0, 2, 2]], size=2, channels=3, mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(out[0, :, 0, 1] * 255, [30, 20, 10], atol=1e-4)


def test_outside_frame_is_zero_and_margin_square():
    frame = np.full((10, 10, 3), 200, np.uint8)
    out = preprocess_frame(frame, [[-20, -20, 10, 10]], **GRAY)  # entirely outside
    assert not out.any()
    assert crop_square(np.array([10, 20, 40, 20]), 0.5) == (0.0, 0.0, 60.0)


def test_mirror_copies_follow_the_faces():
    frame = np.random.default_rng(1).integers(0, 256, (30, 40, 3), np.uint8)
    boxes = [[2, 3, 10, 12], [20, 5, 8, 8]]
    out = preprocess_frame(frame, boxes, 8, 3, (0.5,) * 3, (0.25,) * 3, margin=0.2, mirror=True)
    assert out.shape == (4, 3, 8, 8)
    np.testing.assert_array_equal(out[2:], out[:2, ..., ::-1])


def test_faces_path_matches_training_transform():
    torch = pytest.importorskip("torch")
    from feredge.artifact import InputSpec
    from feredge.train.tensor_ops import normalize, to_float

    images = np.random.default_rng(2).integers(0, 256, (3, 48, 48, 1), np.uint8)
    for spec in (InputSpec(48, 1, (0.5,), (0.25,)), InputSpec(40, 3, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5))):
        ref = normalize(to_float(torch.from_numpy(images), spec.channels), spec).numpy()
        np.testing.assert_allclose(preprocess_faces(images, spec), ref, atol=1e-4)


def random_case(rng, odd=True):
    h, w = int(rng.integers(20, 300)), int(rng.integers(20, 300)) | (1 if odd else 0)
    frame = rng.integers(0, 256, (h, w, 3), np.uint8)
    boxes = [[rng.uniform(-30, w), rng.uniform(-30, h), rng.uniform(1, w), rng.uniform(1, h)] for _ in range(5)]
    boxes += [[0, 0, w, h], [w // 2, h // 2, 1, 1], [-w / 2, -h / 2, w, h]]  # frame-sized, 1-pixel, half outside
    return frame, np.array(boxes, np.float32)


def test_opencv_path_agrees_with_reference():
    pytest.importorskip("cv2")
    from feredge.vision.preprocess import preprocess_frame_cv2

    rng = np.random.default_rng(3)
    for _ in range(5):
        frame, boxes = random_case(rng)
        for channels in (1, 3):
            args = (frame, boxes, 48, channels, (0.0,) * channels, (1.0,) * channels, 0.15, True)
            diff = np.abs(preprocess_frame_cv2(*args) - preprocess_frame(*args)).max()
            assert diff <= 1 / 255, diff


def test_launch_config():
    cfg = launch_config(16, 48, 1, mirror=True)
    assert cfg.grid == (9, 32, 1) and cfg.block == (256, 1, 1) and cfg.out_elements == 32 * 48 * 48


@pytest.mark.skipif(shutil.which("nvcc") is None or shutil.which("cmake") is None, reason="needs nvcc and cmake")
def test_cmake_builds_the_kernel(tmp_path):
    """CMake configure + build for Jetson and desktop architectures (compiles here; runs only on a GPU)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run(["cmake", "-S", str(root), "-B", str(tmp_path), "-DFEREDGE_CUDA_ARCHS=75;87;90"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(tmp_path)], check=True, capture_output=True)
    fatbin = tmp_path / "feredge_preprocess.fatbin"
    assert fatbin.stat().st_size > 1000
    cuobjdump = shutil.which("cuobjdump") or str(Path(shutil.which("nvcc")).resolve().parent / "cuobjdump")
    if Path(cuobjdump).is_file():
        listing = subprocess.run([cuobjdump, "--list-elf", str(fatbin)], capture_output=True, text=True, check=True)
        assert "sm_87" in listing.stdout and "sm_90" in listing.stdout


def _kernel_parameter_types() -> list[str]:
    """C types of fer_preprocess's parameters, read from the CUDA source."""
    import re

    from feredge.cuda.preprocess import KERNEL_NAME, SOURCE

    src = re.sub(r"//[^\n]*", "", SOURCE.read_text())
    params = src.split(f"void {KERNEL_NAME}(", 1)[1].split(")", 1)[0]
    kinds = []
    for param in params.split(","):
        param = param.replace("__restrict__", "").replace("const", "").split()
        kinds.append("pointer" if "*" in "".join(param) else param[0])
    return kinds


def test_kernel_arguments_match_the_cuda_signature():
    """Python passes exactly the kernel's parameters, in order, with matching sizes, and the launch's pointer
    array points at those values (what cuLaunchKernel copies)."""
    import ctypes

    from feredge.cuda import kernel_params
    from feredge.cuda.preprocess import kernel_args

    args = kernel_args(0x1000, 641, 480, 1952, 0x2000, 3, 0.15, 48, 3, True, (0.5, 0.4, 0.3), (0.2, 0.25, 0.5), 0x3000)
    expected = {"pointer": np.uintp, "int": np.int32, "float": np.float32}
    assert [type(a) for a in args] == [expected[k] for k in _kernel_parameter_types()]
    pointers, keep = kernel_params(args)
    assert len(pointers) == len(args) and len(keep) == len(args)
    for ptr, value in zip(pointers, args):
        raw = ctypes.string_at(int(ptr), np.dtype(type(value)).itemsize)
        assert raw == np.array(value).tobytes()
    assert np.float32(args[-4]) == np.float32(1 / 0.2)  # std is passed inverted


def _nvrtc_available() -> bool:
    try:
        from cuda.bindings import nvrtc

        return int(nvrtc.nvrtcVersion()[0]) == 0
    except Exception:  # module missing, or libnvrtc not found by cuda-pathfinder
        return False


@pytest.mark.skipif(not _nvrtc_available(), reason="needs cuda-bindings and libnvrtc (installed with the dev extra)")
@pytest.mark.parametrize("arch", ["75", "87", "90"])  # NVRTC 13 no longer targets sm_72
def test_nvrtc_compiles_the_kernel(arch):
    """The run-time fallback: NVRTC compiles the shipped source to a cubin for GPUs the fatbin lacks (no GPU needed)."""
    from feredge.cuda.preprocess import KERNEL_NAME, nvrtc_compile

    cubin = nvrtc_compile(arch)
    assert cubin[:4] == b"\x7fELF" and KERNEL_NAME.encode() in cubin


@pytest.mark.gpu
@pytest.mark.parametrize("api_name", ["pycuda", "cuda-python"])
def test_cuda_kernel_matches_reference(api_name):
    """Random frames and boxes (partly outside, 1-pixel, frame-sized), odd widths and pitches, gray/RGB, fp32/fp16."""
    from feredge.artifact import InputSpec
    from feredge.cuda import CudaPythonApi, PycudaApi
    from feredge.cuda.preprocess import GpuPreprocessor

    pytest.importorskip("pycuda" if api_name == "pycuda" else "cuda.bindings")
    api = PycudaApi() if api_name == "pycuda" else CudaPythonApi()
    pre = GpuPreprocessor(api)
    stream = api.stream()
    rng = np.random.default_rng(4)
    for trial in range(6):
        frame, boxes = random_case(rng, odd=bool(trial % 2))
        h, w = frame.shape[:2]
        pitch = (w * 3 + 127) // 128 * 128 + (trial % 3)  # padded, sometimes odd pitches
        padded = api.pinned((h, pitch), np.uint8)
        padded[:] = 0
        padded[:, :w * 3] = frame.reshape(h, -1)
        host_boxes = api.pinned(boxes.shape, np.float32)
        host_boxes[:] = boxes
        d_frame, d_boxes = api.alloc(padded.nbytes), api.alloc(boxes.nbytes)
        api.htod(d_frame, padded, stream)
        api.htod(d_boxes, host_boxes, stream)
        for channels, fp16 in ((1, False), (3, False), (3, True)):
            spec = InputSpec(48, channels, (0.0,) * channels, (1.0,) * channels)
            launch = launch_config(len(boxes), 48, channels, True)
            out = api.pinned((launch.out_elements,), np.float16 if fp16 else np.float32)
            d_out = api.alloc(out.nbytes)
            pre(d_frame, w, h, pitch, d_boxes, len(boxes), spec, d_out, margin=0.1, mirror=True, fp16=fp16,
                stream=stream)
            api.dtoh(out, d_out, stream)
            api.synchronize(stream)
            ref = preprocess_frame(frame, boxes, 48, channels, spec.mean, spec.std, 0.1, True)
            tol = 1 / 255 + (2e-3 if fp16 else 0)
            assert np.abs(out.astype(np.float32).reshape(ref.shape) - ref).max() <= tol, (api_name, trial, channels)
            api.free(d_out)
        api.free(d_frame)
        api.free(d_boxes)


@pytest.mark.gpu
def test_mapped_frame_is_read_in_place():
    """Zero-copy input (how Jetson avoids the frame upload): the kernel reads a mapped host buffer directly."""
    from feredge.artifact import InputSpec
    from feredge.cuda import cuda_api
    from feredge.cuda.preprocess import GpuPreprocessor

    api = cuda_api()
    pre = GpuPreprocessor(api)
    frame, boxes = random_case(np.random.default_rng(9), odd=True)
    h, w = frame.shape[:2]
    host, device = api.mapped(frame.shape, np.uint8)
    host[:] = frame
    mboxes, dboxes = api.mapped(boxes.shape, np.float32)
    mboxes[:] = boxes
    spec = InputSpec(48, 1, (0.5,), (0.25,))
    out, dout = api.mapped((len(boxes), 1, 48, 48), np.float32)
    stream = api.stream()
    pre(device, w, h, w * 3, dboxes, len(boxes), spec, dout, margin=0.2, stream=stream)
    api.synchronize(stream)
    ref = preprocess_frame(frame, boxes, 48, 1, spec.mean, spec.std, 0.2)
    assert np.abs(out - ref).max() <= 4 / 255  # /std = ×4: the 1/255 agreement before normalisation
