"""Pre-processing time for 1/4/16/64 faces from a 1080p frame: OpenCV on the CPU vs the CUDA kernel.

    python benchmarks/preprocess.py [--repeat 50]

CPU: OpenCV warpAffine per face (feredge's fast CPU path). CUDA (pycuda, else cuda-python, and a GPU):
the kernel alone (frame already on the device) and with the frame upload from pinned and from pageable
memory. Prints a table and the ratios; targets at 16 faces: kernel ≥ 20× OpenCV, end to end ≥ 2×.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from feredge.artifact import InputSpec
from feredge.vision.preprocess import preprocess_frame_cv2

SPEC = InputSpec(48, 1, (0.5,), (0.25,))
FACE_COUNTS = (1, 4, 16, 64)


def boxes_for(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.array([[rng.uniform(0, 1720), rng.uniform(0, 880), 200, 200] for _ in range(n)], np.float32)


def time_cpu(frame: np.ndarray, boxes: np.ndarray, repeat: int) -> float:
    preprocess_frame_cv2(frame, boxes, SPEC.size, SPEC.channels, SPEC.mean, SPEC.std, 0.15)
    t0 = time.perf_counter()
    for _ in range(repeat):
        preprocess_frame_cv2(frame, boxes, SPEC.size, SPEC.channels, SPEC.mean, SPEC.std, 0.15)
    return (time.perf_counter() - t0) / repeat * 1e6


def time_gpu(api, frame: np.ndarray, boxes: np.ndarray, repeat: int) -> dict[str, float]:
    """Mean µs per call by CUDA events: kernel alone, and with the frame upload from pinned / pageable memory."""
    from feredge.cuda.preprocess import GpuPreprocessor, launch_config

    pre = GpuPreprocessor(api)
    h, w = frame.shape[:2]
    pinned = api.pinned(frame.shape, np.uint8)
    pinned[:] = frame
    host_boxes = api.pinned(boxes.shape, np.float32)
    host_boxes[:] = boxes
    stream = api.stream()
    d_frame, d_boxes = api.alloc(frame.nbytes), api.alloc(boxes.nbytes)
    d_out = api.alloc(launch_config(len(boxes), SPEC.size, SPEC.channels, False).out_elements * 4)
    api.htod(d_boxes, host_boxes, stream)

    def run(upload: np.ndarray | None) -> float:
        def work() -> None:
            for _ in range(repeat):
                if upload is not None:
                    api.htod(d_frame, upload, stream)
                pre(d_frame, w, h, w * 3, d_boxes, len(boxes), SPEC, d_out, 0.15, stream=stream)

        return api.timed(stream, work) / repeat * 1e3

    api.htod(d_frame, pinned, stream)
    run(None)
    result = {"kernel_us": run(None), "pinned_upload_us": run(pinned), "pageable_upload_us": run(frame)}
    for ptr in (d_frame, d_boxes, d_out):
        api.free(ptr)
    return result


def gpu_api(name: str):
    """The requested CUDA API, or None (with the reason printed) when it or a GPU is missing."""
    from feredge.cuda import cuda_api
    from feredge.errors import FeredgeError

    try:
        return cuda_api(name)
    except (FeredgeError, ImportError, RuntimeError) as exc:
        print(f"no CUDA timing: {exc}")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--api", choices=("pycuda", "cuda-python"), default="pycuda",
                        help="CUDA API to try first (the other is the fallback)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1080, 1920, 3), np.uint8)
    api = gpu_api(args.api)
    gpu = api is not None
    rows = []
    for n in FACE_COUNTS:
        boxes = boxes_for(n, rng)
        row = {"faces": n, "opencv_us": time_cpu(frame, boxes, args.repeat)}
        if gpu:
            row.update(time_gpu(api, frame, boxes, args.repeat), api=api.name)
            row["kernel_speedup"] = row["opencv_us"] / row["kernel_us"]
            row["end_to_end_speedup"] = row["opencv_us"] / row["pinned_upload_us"]
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("1080p frame, 200x200 faces → 1x48x48, mean µs per call" + (f" (CUDA via {api.name})" if gpu else " (CPU only)"))
    for r in rows:
        line = f"  {r['faces']:>3} faces  OpenCV {r['opencv_us']:9.1f}"
        if gpu:
            line += (f"  kernel {r['kernel_us']:7.1f} ({r['kernel_speedup']:.0f}x)  +pinned upload "
                     f"{r['pinned_upload_us']:7.1f} ({r['end_to_end_speedup']:.1f}x)  +pageable {r['pageable_upload_us']:7.1f}")
        print(line)


if __name__ == "__main__":
    main()
