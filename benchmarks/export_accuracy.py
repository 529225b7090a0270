"""FP32 / FP16 / INT8 × {top-1, mean-class accuracy, file size} for the default model, per calibration method.

    python benchmarks/export_accuracy.py --data prepared/fer2013 [--checkpoint CKPT] [--split val] [--calib-size 512]

Calibration uses the training split (minus the held-out validation carve); accuracies are measured with
ONNX Runtime on --split (default: FER2013 PublicTest, `val`) and on the held-out validation images.
Writes benchmarks/results/export_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx

from feredge.calibration.dataset import calibration_set
from feredge.calibration.quantize import METHODS, quantize_qdq
from feredge.commands.export import onnx_accuracy
from feredge.data.store import load_split, read_meta
from feredge.export.onnx import export_onnx, save_onnx
from feredge.export.precisions import to_fp16
from feredge.models.checkpoint import load_checkpoint
from feredge.vision.preprocess import preprocess_faces
from feredge.weights import default_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--split", default="val")
    parser.add_argument("--calib-size", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/export_accuracy.json"))
    args = parser.parse_args()
    ckpt = args.checkpoint or default_checkpoint()
    model, meta = load_checkpoint(ckpt)
    spec = meta.input_spec
    classes = read_meta(args.data)["classes"]
    split = load_split(args.data, args.split)
    x, labels = np.asarray(split.images), np.asarray(split.labels)
    calib = preprocess_faces(calibration_set(args.data, args.calib_size).images, spec)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32, fp32_info = export_onnx(model, meta, Path(tmp) / "m.onnx", batch=None, source=ckpt)
        fp16, _ = to_fp16(fp32, fp32_info, Path(tmp) / "m.fp16.onnx")
        rows.append({"precision": "fp32", "calibration": "-", **onnx_accuracy(fp32, x, labels, classes)})
        rows.append({"precision": "fp16", "calibration": "-", **onnx_accuracy(fp16, x, labels, classes)})
        for method in METHODS:
            int8 = quantize_qdq(fp32, calib, Path(tmp) / f"m.{method}.onnx", method)
            save_onnx(onnx.load(str(int8)), int8, fp32_info.derive("onnx", "int8-qdq"), check=False)  # its description
            rows.append({"precision": "int8", "calibration": method,
                         **onnx_accuracy(int8, x, labels, classes, exact_qdq=True)})
            rows.append({"precision": "int8 (ORT CPU kernels)", "calibration": method,
                         **onnx_accuracy(int8, x, labels, classes, exact_qdq=False)})
    print(f"{ckpt.name} on {args.data} split '{args.split}' ({len(x)} images), ONNX Runtime CPU, "
          f"calibration {len(calib)} training images")
    print("int8 = exact Q/DQ arithmetic (TensorRT's semantics); 'ORT CPU kernels' = ONNX Runtime's fused int8 "
          "kernels on this CPU")
    print(f"{'precision':<24}{'calibration':<13}{'top-1':>8}{'mean-class':>12}{'MB':>8}")
    for r in rows:
        print(f"{r['precision']:<24}{r['calibration']:<13}{r['accuracy']:>8.4f}{r['mean_class_accuracy']:>12.4f}"
              f"{r['size_bytes'] / 1e6:>8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"checkpoint": str(ckpt), "split": args.split, "n": len(x), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
