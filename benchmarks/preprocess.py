"""Pre-processing time for 1/4/16/64 faces from a 1080p frame: OpenCV on the CPU vs the CUDA kernel.

    python benchmarks/preprocess.py [--repeat 50]

CPU: OpenCV warpAffine per face (feredge's fast CPU path). CUDA (when pycuda and a GPU are present):
the kernel alone (frame already on the device) and with the frame upload from pinned and from pageable
memory. Prints a table and the ratios; targets at 16 faces: kernel ≥ 20× OpenCV, end to end ≥ 2×.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from feredge.models import InputSpec
from feredge.runtime.preprocess import preprocess_frame_cv2

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


def time_gpu(frame: np.ndarray, boxes: np.ndarray, repeat: int) -> dict[str, float]:
    import pycuda.driver as drv

    from feredge.runtime.kernels import GpuPreprocessor, launch_config

    pre = GpuPreprocessor()
    h, w = frame.shape[:2]
    pinned = drv.pagelocked_empty(frame.shape, np.uint8)
    pinned[:] = frame
    d_frame, d_boxes = drv.mem_alloc(frame.nbytes), drv.to_device(boxes)
    d_out = drv.mem_alloc(launch_config(len(boxes), SPEC.size, SPEC.channels, False).out_elements * 4)
    stream = drv.Stream()
    start, end = drv.Event(), drv.Event()

    def run(upload: np.ndarray | None) -> float:
        start.record(stream)
        for _ in range(repeat):
            if upload is not None:
                drv.memcpy_htod_async(d_frame, upload, stream)
            pre(int(d_frame), w, h, w * 3, int(d_boxes), len(boxes), SPEC, int(d_out), 0.15, stream=stream)
        end.record(stream)
        end.synchronize()
        return end.time_since(start) / repeat * 1e3

    drv.memcpy_htod(d_frame, frame)
    run(None)
    return {"kernel_us": run(None), "pinned_upload_us": run(pinned), "pageable_upload_us": run(frame)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1080, 1920, 3), np.uint8)
    try:
        import pycuda  # noqa: F401

        gpu = True
    except ImportError:
        gpu = False
    rows = []
    for n in FACE_COUNTS:
        boxes = boxes_for(n, rng)
        row = {"faces": n, "opencv_us": time_cpu(frame, boxes, args.repeat)}
        if gpu:
            row.update(time_gpu(frame, boxes, args.repeat))
            row["kernel_speedup"] = row["opencv_us"] / row["kernel_us"]
            row["end_to_end_speedup"] = row["opencv_us"] / row["pinned_upload_us"]
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("1080p frame, 200x200 faces → 1x48x48, mean µs per call" + ("" if gpu else " (no pycuda/GPU: CPU only)"))
    for r in rows:
        line = f"  {r['faces']:>3} faces  OpenCV {r['opencv_us']:9.1f}"
        if gpu:
            line += (f"  kernel {r['kernel_us']:7.1f} ({r['kernel_speedup']:.0f}x)  +pinned upload "
                     f"{r['pinned_upload_us']:7.1f} ({r['end_to_end_speedup']:.1f}x)  +pageable {r['pageable_upload_us']:7.1f}")
        print(line)


if __name__ == "__main__":
    main()
