"""Timed windows with trtexec's semantics: warm up for a time, then run for a time, and report percentiles.

Two measurements per (artifact, batch):
  model  the model alone. GPU runners with device buffers: CUDA events around the enqueue (optionally a
         replayed CUDA graph), inputs already on the device. Every other runner: wall time of one
         ``infer`` call on a host batch (on CPU that *is* the model).
  e2e    a host BGR frame with N faces → pre-processing (OpenCV on CPU, the CUDA kernel on GPU) → copy →
         inference → copy → labels: what `predict` and `run-camera` pay per frame, detection excluded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Window:
    warmup_ms: float = 200.0
    duration_s: float = 3.0
    min_iterations: int = 10

    def describe(self) -> str:
        return f"warm-up {self.warmup_ms:.0f} ms, then timed for {self.duration_s:g} s (≥ {self.min_iterations} runs)"


def stats(ms: list[float], items_per_run: int) -> dict:
    """min/mean/percentiles in ms and throughput in items/s from per-run latencies."""
    a = np.asarray(ms, np.float64)
    out = {"runs": int(a.size), "min_ms": float(a.min()), "mean_ms": float(a.mean()), "max_ms": float(a.max())}
    out.update({f"p{p}_ms": float(np.percentile(a, p)) for p in PERCENTILES})
    out["throughput_per_s"] = items_per_run * 1000.0 / out["mean_ms"]
    return out


def timed_window(run: Callable[[], float | None], window: Window) -> list[float]:
    """Call ``run`` through warm-up then the timed window; it returns its own ms (GPU events) or None
    (then host wall time is used)."""
    end = time.perf_counter() + window.warmup_ms / 1000
    while time.perf_counter() < end:
        run()
    times: list[float] = []
    end = time.perf_counter() + window.duration_s
    while time.perf_counter() < end or len(times) < window.min_iterations:
        t0 = time.perf_counter()
        ms = run()
        times.append(ms if ms is not None else (time.perf_counter() - t0) * 1000)
    return times


def model_run(runner, batch: int, cuda_graph: bool) -> tuple[Callable[[], float | None], str]:
    """The callable timing the model alone, and what it measures (for the report)."""
    if runner.gpu_io:
        cuda, stream = runner.cuda, runner.stream
        runner.bind(batch)
        if cuda_graph:
            runner.enqueue(stream)  # one eager run at this shape first (TensorRT for RTX compiles its kernels here)
            cuda.synchronize(stream)
        if cuda_graph and runner.capturable:
            graph = cuda.capture(stream, lambda: runner.enqueue(stream))
            handle = cuda.stream_handle(stream)
            return (lambda: cuda.timed(stream, lambda: graph.launch(handle))), "CUDA events around a CUDA-graph replay"
        return (lambda: cuda.timed(stream, lambda: runner.enqueue(stream))), "CUDA events around enqueue (eager)"
    spec = runner.info.input_spec
    x = np.random.default_rng(0).normal(size=(batch, spec.channels, spec.size, spec.size)).astype(np.float32)
    def run() -> None:
        runner.infer(x)
    return run, "wall time of one host infer() call"


def synthetic_frame(faces: int, height: int = 720, width: int = 1280, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noise frame and ``faces`` boxes of ~120 px on a grid (content does not change the cost)."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (height, width, 3), np.uint8)
    cols = max(1, int(np.ceil(np.sqrt(faces))))
    side = min(120, width // (cols + 1), height // (cols + 1))
    boxes = [[(i % cols + 0.5) * width / cols - side / 2, (i // cols + 0.5) * height / cols - side / 2, side, side]
             for i in range(faces)]
    return frame, np.asarray(boxes, np.float32)


def e2e_run(recognizer, frame: np.ndarray, boxes: np.ndarray) -> Callable[[], None]:
    """One frame through the Recognizer, as every command runs it: every face pre-processed, inferred as one
    batch, turned into labelled faces (the boxes are given: detection is excluded)."""
    def run() -> None:
        labels = [face.label for face in recognizer.faces(frame, boxes)]
        assert len(labels) == len(boxes)
    return run
