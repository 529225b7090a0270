"""The CUDA kernel's arithmetic without a GPU: preprocess.cu compiled by g++ (feredge/cuda/kernels/host_compat.h and
host_launch.cpp run its grid sequentially) against the NumPy reference.

Launch shape and arguments come from the same functions that feed the GPU (launch_config, kernel_args,
kernel_params), so a wrong argument order, type or grid fails here too. This is the host build of the source,
not the device: nvcc contracts a*b+c into FMA (one rounding fewer), which stays within the same tolerances.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

from feredge.cuda import kernel_params
from feredge.cuda.preprocess import KERNEL_DIR, kernel_args, launch_config
from feredge.vision.preprocess import crop_square, preprocess_frame

EPS = float(np.finfo(np.float32).eps)
COORD_ULPS = 4  # |kernel − reference| sampling coordinate, in float32 ulps of the crop's largest coordinate


@pytest.fixture(scope="module")
def host_kernel(tmp_path_factory) -> ctypes.CDLL:
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("needs a C++17 compiler (g++)")
    lib = tmp_path_factory.mktemp("kernel_host") / "libferedge_host.so"
    # -ffp-contract=off: every operation rounds once, as in NumPy; -Werror: the CUDA shims must be complete.
    cmd = [cxx, "-std=c++17", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
           str(KERNEL_DIR / "host_launch.cpp"), "-o", str(lib)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    dll = ctypes.CDLL(str(lib))
    dll.feredge_launch.argtypes = [ctypes.c_void_p] * 3
    dll.feredge_half_bits.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return dll


def run_kernel(dll, frame: np.ndarray, pitch: int, boxes: np.ndarray, size: int, channels: int, mean, std,
               margin: float, mirror: bool, fp16: bool) -> np.ndarray:
    """One launch on the host, from a frame copied into rows of ``pitch`` bytes whose padding holds noise."""
    h, w = frame.shape[:2]
    padded = np.random.default_rng(pitch).integers(0, 256, (h, pitch), np.uint8)
    padded[:, :w * 3] = frame.reshape(h, -1)
    boxes = np.ascontiguousarray(boxes, np.float32)
    launch = launch_config(len(boxes), size, channels, mirror)
    out = np.full(launch.out_elements, np.nan, np.float16 if fp16 else np.float32)
    args = kernel_args(padded.ctypes.data, w, h, pitch, boxes.ctypes.data, len(boxes), margin, size, channels, fp16,
                       mean, std, out.ctypes.data)
    params, _alive = kernel_params(args)
    grid, block = np.array(launch.grid, np.uint32), np.array(launch.block, np.uint32)
    dll.feredge_launch(grid.ctypes.data, block.ctypes.data, params.ctypes.data)
    return out.reshape(-1, channels, size, size)


def tolerance(ref: np.ndarray, boxes: np.ndarray, margin: float, std, mirror: bool) -> np.ndarray:
    """Bound on |kernel − reference| (fp32), element-wise, from the two sources of rounding differences.

    Sampling: the reference computes the crop origin and scale in float64 and the coordinate in a different
    float32 operation order, so coordinates differ by up to a few ulps of the crop's largest coordinate M
    (3 measured over 20,000 random boxes; COORD_ULPS allows 4). Bilinear sampling of values in [0, 255] moves
    by at most 255 per pixel of shift along each axis: 2·COORD_ULPS·ulp(M)·255/255/std.
    Colour: gray dot product (3 products, 2 sums, possibly summed in another order by NumPy), ×(1/255) against
    /255, ×(1/std) against /std: 4 ulp of the [0, 1] value before normalisation, plus 2 ulp of the result.
    """
    ulp = []
    for box in boxes:
        x0, y0, side = crop_square(box, margin)
        ulp.append(np.spacing(np.float32(max(abs(x0), abs(y0), abs(x0 + side), abs(y0 + side), side))))
    ulp = np.array(ulp * (2 if mirror else 1), np.float32)[:, None, None, None]
    inv_std = 1 / np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return 2 * COORD_ULPS * ulp * inv_std + 4 * EPS * inv_std + 2 * EPS * np.abs(ref)


def assert_matches(out: np.ndarray, ref: np.ndarray, tol: np.ndarray, fp16: bool) -> None:
    assert out.shape == ref.shape
    diff = np.abs(out.astype(np.float32) - ref)
    if fp16:  # the exact value is within tol of ref, then rounded once: at most half an fp16 ulp more
        tol = tol + np.spacing(np.abs(ref + tol).astype(np.float16)).astype(np.float32) / 2
    worst = np.unravel_index(np.argmax(diff - tol), diff.shape)
    assert (diff <= tol).all(), f"at {worst}: |{out[worst]} - {ref[worst]}| = {diff[worst]} > {tol[worst]}"


def frame_and_boxes(rng: np.random.Generator, h: int, w: int, n_random: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise frame (worst case for interpolation) and boxes: inside, partly and wholly outside, 1-pixel, frame-sized."""
    frame = rng.integers(0, 256, (h, w, 3), np.uint8)
    boxes = [[rng.uniform(-w / 4, w), rng.uniform(-h / 4, h), rng.uniform(1, w / 2), rng.uniform(1, h / 2)]
             for _ in range(n_random)]
    boxes += [[0, 0, w, h], [w // 2, h // 2, 1, 1], [-w / 2, -h / 2, w, h], [w - 3.5, h - 2.25, 9.75, 7.5],
              [-40, -40, 20, 30], [w + 5, 10, 12, 12], [5, h + 0.5, 8, 8], [-w, h / 3, w / 2, h / 2]]
    return frame, np.array(boxes, np.float32)


# (height, width, pitch in bytes): odd widths, pitch just above 3·width, far above it, and a 1080p frame.
FRAMES = [(37, 53, 53 * 3 + 1), (120, 161, 161 * 3 * 2 + 7), (64, 48, 48 * 3 + 64), (1080, 1920, 1920 * 3 + 128)]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("mirror", [False, True], ids=["plain", "mirrored"])
def test_kernel_matches_reference(host_kernel, channels, fp16, mirror):
    rng = np.random.default_rng(10 * channels + 2 * fp16 + mirror)
    mean, std = (0.5, 0.45, 0.4)[:channels], (0.25, 0.2, 0.3)[:channels]
    for (h, w, pitch), margin, size in zip(FRAMES, (0.0, 0.15, 0.4, 0.15), (48, 40, 64, 48)):
        frame, boxes = frame_and_boxes(rng, h, w, 56 if h == 1080 else 8)
        ref = preprocess_frame(frame, boxes, size, channels, mean, std, margin, mirror)
        out = run_kernel(host_kernel, frame, pitch, boxes, size, channels, mean, std, margin, mirror, fp16)
        assert_matches(out, ref, tolerance(ref, boxes, margin, std, mirror), fp16)
        if mirror:  # the copies sample the same coordinates: bit-exact flips of the faces
            np.testing.assert_array_equal(out[len(boxes):], out[:len(boxes), ..., ::-1])


@pytest.mark.parametrize("channels", [1, 3])
def test_fp16_output_is_the_fp32_output_rounded_to_nearest_even(host_kernel, channels):
    """Same launch, fp16 buffer: bit for bit NumPy's float16 rounding (RNE) of the kernel's fp32 values."""
    rng = np.random.default_rng(5)
    frame, boxes = frame_and_boxes(rng, 90, 131, 8)
    mean, std = (0.5,) * channels, (0.004,) * channels  # a small std spreads values up to ±125 (coarser fp16 steps)
    args = (frame, 131 * 3 + 5, boxes, 48, channels, mean, std, 0.1, True)
    fp32, fp16 = run_kernel(host_kernel, *args, fp16=False), run_kernel(host_kernel, *args, fp16=True)
    np.testing.assert_array_equal(fp16.view(np.uint16), fp32.astype(np.float16).view(np.uint16))


def test_exact_sampling_grid_leaves_only_colour_rounding(host_kernel):
    """Integer boxes whose side is a power-of-two multiple of the output size: every coordinate is exact in both,
    so only the colour arithmetic's rounding remains (4 ulp before normalisation, 2 ulp of the result)."""
    rng = np.random.default_rng(6)
    frame = rng.integers(0, 256, (300, 401, 3), np.uint8)
    boxes = [[rng.integers(-60, 401), rng.integers(-60, 300), 48 * 2 ** k, rng.integers(1, 48 * 2 ** k)]
             for k in (0, 1, 2) for _ in range(6)]
    boxes = np.array(boxes + [[0, 0, 24, 24], [390, 290, 96, 12]], np.float32)
    for channels in (1, 3):
        mean, std = (0.5, 0.45, 0.4)[:channels], (0.25, 0.2, 0.3)[:channels]
        ref = preprocess_frame(frame, boxes, 48, channels, mean, std, 0.0, True)
        out = run_kernel(host_kernel, frame, 401 * 3 + 3, boxes, 48, channels, mean, std, 0.0, True, False)
        inv_std = 1 / np.asarray(std, np.float32).reshape(1, -1, 1, 1)
        assert_matches(out, ref, 4 * EPS * inv_std + 2 * EPS * np.abs(ref), fp16=False)


def _fp16_probe_floats() -> np.ndarray:
    """Floats around every fp16 rounding boundary: normal (13 dropped bits) and subnormal (14-24 dropped bits)
    ranges with ties, just-below/above-ties, overflow, underflow and specials, plus random bit patterns."""
    bits = []
    for exponent in range(256):
        top = np.arange(1024, dtype=np.uint32) << 13
        for low in (0, 1, 0xFFF, 0x1000, 0x1001, 0x1FFF):
            bits.append((np.uint32(exponent) << 23) | top | low)
    for exponent in range(102, 113):  # fp16 subnormals: the value keeps 24 - (126 - exponent) significant bits
        shift = 126 - exponent
        q = np.arange(1 << (24 - shift), dtype=np.uint32) << shift
        for low in (0, 1, (1 << (shift - 1)) - 1, 1 << (shift - 1), (1 << (shift - 1)) + 1, (1 << shift) - 1):
            m = (q | low) & 0x7FFFFF
            bits.append((np.uint32(exponent) << 23) | m)
    bits.append(np.random.default_rng(7).integers(0, 2 ** 32, 1 << 20, dtype=np.uint64).astype(np.uint32))
    special = np.array([0.0, 65504, 65519.996, 65520, 65536, 1e30, np.inf, 2.0 ** -24, 2.0 ** -25,
                        np.nextafter(np.float32(2.0 ** -25), np.float32(1)), 2.0 ** -14, 6.1e-5], np.float32)
    bits.append(special.view(np.uint32))
    bits = np.concatenate(bits)
    return np.concatenate([bits, bits ^ np.uint32(0x80000000)]).view(np.float32)


def test_fp16_conversion_is_round_to_nearest_even(host_kernel):
    """The kernel's to_half_bits (PTX cvt.rn.f16.f32, emulated in host_compat.h) is bit-exact NumPy float16
    rounding on normals, subnormals, ties, overflow to ±inf and zeros; NaN stays NaN."""
    x = _fp16_probe_floats()
    out = np.empty(x.shape, np.uint16)
    host_kernel.feredge_half_bits(x.ctypes.data, out.ctypes.data, x.size)
    with np.errstate(over="ignore"):
        expected = x.astype(np.float16)
    nan = np.isnan(x)
    np.testing.assert_array_equal(out[~nan], expected[~nan].view(np.uint16))
    assert np.isnan(out[nan].view(np.float16)).all() and nan.any()
