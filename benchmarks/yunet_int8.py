"""Is an INT8 YuNet worth shipping? The shipped YuNet quantised with ONNX Runtime (static, QDQ, u8 activations,
s8 per-channel weights, as the classifiers' CPU INT8 files), timed beside the fp32 file through OpenCV's
FaceDetectorYN (what feredge runs) and through ONNX Runtime (YuNet's outputs decoded as OpenCV does: checked
box for box against it), with the boxes compared to OpenCV fp32's.

    python benchmarks/yunet_int8.py [--sides 640 480 320] [--rounds 3] [--threads 2] \
        [--out benchmarks/results/yunet_int8-<cpu>.json]

Calibration: the bundled group photo, $FEREDGE_SHARED/media/*.jpg and frames of a generated clip; timing and
boxes: other frames of that clip (3 faces) and of $FEREDGE_SHARED/media/single_face_expressions.avi.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from clips import GROUP, group_clip  # noqa: E402
from cpu_int8 import KERNEL_FLAGS, cpu_flags, cpu_slug  # noqa: E402

from feredge.artifact import atomic_write_text  # noqa: E402
from feredge.commands.bench.environment import cpu_model  # noqa: E402
from feredge.vision.detector import YUNET  # noqa: E402
from feredge.vision.tracker import iou  # noqa: E402

SCORE, NMS = 0.7, 0.3  # YuNetDetector's thresholds


def dynamic_yunet(path: Path) -> Path:
    """The shipped YuNet with free input height and width, at opset 13 (per-channel Q/DQ needs it)."""
    import onnx
    import onnx.version_converter

    model = onnx.load(str(YUNET))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[1].dim_param = "anchors"
    del model.graph.value_info[:]
    onnx.save(onnx.version_converter.convert_version(model, 13), str(path))
    return path


def blob(image: np.ndarray) -> np.ndarray:
    """What FaceDetectorYN feeds the network: BGR as float, padded right and down to multiples of 32."""
    h, w = image.shape[:2]
    out = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    out[0, :, :h, :w] = image.transpose(2, 0, 1)
    return out


def decode(outputs: dict[str, np.ndarray], width: int, height: int) -> np.ndarray:
    """(N, 15) as FaceDetectorYN returns: x, y, w, h, 5 landmarks, score (OpenCV's face_detect.cpp)."""
    import cv2

    boxes, scores, marks = [], [], []
    for s in (8, 16, 32):
        cols = width // s
        score = np.sqrt(np.clip(outputs[f"cls_{s}"].ravel(), 0, 1) * np.clip(outputs[f"obj_{s}"].ravel(), 0, 1))
        keep = np.flatnonzero(score >= SCORE)
        r, c = keep // cols, keep % cols
        b = outputs[f"bbox_{s}"].reshape(-1, 4)[keep]
        w, h = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
        boxes.append(np.stack([(c + b[:, 0]) * s - w / 2, (r + b[:, 1]) * s - h / 2, w, h], 1))
        k = outputs[f"kps_{s}"].reshape(-1, 5, 2)[keep]
        marks.append(np.concatenate([(k[..., :1] + c[:, None, None]) * s, (k[..., 1:] + r[:, None, None]) * s], 2))
        scores.append(score[keep])
    b, sc, k = np.concatenate(boxes), np.concatenate(scores), np.concatenate(marks).reshape(-1, 10)
    if not len(b):
        return np.zeros((0, 15), np.float32)
    idx = np.asarray(cv2.dnn.NMSBoxes(b.tolist(), sc.tolist(), SCORE, NMS, top_k=5000), int).reshape(-1)
    return np.concatenate([b[idx], k[idx], sc[idx, None]], 1).astype(np.float32)


class OrtYuNet:
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = blob(image)
        outs = self.session.run(self.names, {"input": x})
        return decode(dict(zip(self.names, outs)), x.shape[3], x.shape[2])


class CvYuNet:
    def __init__(self, path: Path):
        import cv2

        self.detector = cv2.FaceDetectorYN.create(str(path), "", (320, 320), SCORE, NMS)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        self.detector.setInputSize((image.shape[1], image.shape[0]))
        faces = self.detector.detect(image)[1]
        return np.zeros((0, 15), np.float32) if faces is None else faces


def quantize(fp32: Path, out: Path, images: list[np.ndarray]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out.with_name("pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": blob(i)} for i in images])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    return out


def frames_of(path: Path, every: int) -> list[np.ndarray]:
    import cv2

    cap, out, k = cv2.VideoCapture(str(path)), [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        if k % every == 0:
            out.append(frame)
        k += 1


def fit(image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    s = min(1.0, side / max(image.shape[:2]))
    h, w = image.shape[:2]
    return image if s == 1 else cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def main() -> None:
    import cv2
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[640, 480, 320])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime's threads (OpenCV uses its own)")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/yunet_int8-<cpu>.json")
    args = parser.parse_args()
    shared = Path(os.environ.get("FEREDGE_SHARED", ROOT.parent / "shared"))
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "group.avi"
        group_clip(clip, 300)
        video = frames_of(clip, 5)
        calib = [cv2.imread(str(p)) for p in [GROUP, *sorted((shared / "media").glob("*.jpg"))]] + video[1::2]
        test = video[0::2]
        avi = shared / "media" / "single_face_expressions.avi"
        test += frames_of(avi, 4) if avi.is_file() else []
        fp32 = dynamic_yunet(Path(tmp) / "yunet-dyn.onnx")
        int8 = quantize(fp32, Path(tmp) / "yunet-int8.onnx", [fit(i, 640) for i in calib])
        sizes = {"fp32": YUNET.stat().st_size, "int8": int8.stat().st_size}
        detectors = {"opencv fp32 (shipped)": CvYuNet(YUNET), "opencv int8": CvYuNet(int8),
                     "onnxruntime fp32": OrtYuNet(fp32, args.threads), "onnxruntime int8": OrtYuNet(int8, args.threads)}
        load = [os.getloadavg()]
        rows = []
        for side in args.sides:
            images = [fit(i, side) for i in test]
            times: dict[str, list[float]] = {k: [] for k in detectors}
            found: dict[str, list[np.ndarray]] = {}
            for _ in range(args.rounds):  # interleaved: each detector once per round
                for name, det in detectors.items():
                    t0 = time.perf_counter()
                    found[name] = [det(i) for i in images]
                    times[name].append((time.perf_counter() - t0) / len(images) * 1e3)
            ref = found["opencv fp32 (shipped)"]
            for name in detectors:
                n_ref = sum(len(r) for r in ref)
                overlaps = [iou(r[:, :4], g[:, :4]).max(1) for r, g in zip(ref, found[name]) if len(r) and len(g)]
                o = np.concatenate(overlaps) if overlaps else np.zeros(0)
                rows.append({"side": side, "detector": name, "ms_per_frame": round(min(times[name]), 2),
                             "ms_rounds": [round(t, 2) for t in times[name]],
                             "faces": int(sum(len(g) for g in found[name])), "faces_fp32": n_ref,
                             "matched_iou_0.5": int((o >= 0.5).sum()), "mean_iou": round(float(o.mean()), 4)})
                r = rows[-1]
                print(f"{side} px {name:<22} {r['ms_per_frame']:6.2f} ms/frame  faces {r['faces']}/{n_ref}  "
                      f"matched {r['matched_iou_0.5']}  mean IoU {r['mean_iou']:.3f}", flush=True)
        load.append(os.getloadavg())
    flags = cpu_flags()
    report = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "cpu": cpu_model(), "cores_online": os.cpu_count(),
              "kernel_flags": [f for f in KERNEL_FLAGS if f in flags], "opencv": cv2.__version__,
              "onnxruntime": onnxruntime.__version__, "threads_onnxruntime": args.threads, "frames": len(test),
              "file_bytes": sizes, "load_average": {"before": load[0], "after": load[1]}, "results": rows}
    out = args.out or ROOT / "benchmarks" / "results" / f"yunet_int8-{cpu_slug(report['cpu'], flags)}.json"
    atomic_write_text(out, json.dumps(report, indent=1))
    print(f"load average {load[0][0]:.2f} before, {load[1][0]:.2f} after; written to {out}")


if __name__ == "__main__":
    main()
