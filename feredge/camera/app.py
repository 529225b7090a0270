"""`feredge run-camera`: frames → faces → expressions, live, with tracking, smoothing, overlay, JSONL and
recording. Every face of a frame goes through pre-processing and the model in one batch."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from feredge._optional import require
from feredge.errors import FeredgeError
from feredge.metrics import softmax
from feredge.runtime.records import face_records

STAGES = ("capture", "detect", "preprocess", "infer", "draw")


@dataclass
class CameraOptions:
    source: str = "0"
    model: str | None = None
    backend: str | None = None
    device: str = "cpu"
    detector: str = "yunet"
    detect_every: int = 1
    detect_max_side: int = 640
    display: bool = False
    json_path: Path | None = None
    record: Path | None = None
    overwrite: bool = False
    max_faces: int = 16
    smooth: float = 0.4  # weight of the newest frame in each track's probabilities (1 = no smoothing)
    track_max_unseen: int = 10
    align: bool = False
    max_frames: int = 0  # 0 = until the source ends
    server: str | None = None  # host:port of `feredge serve` (HTTP): the model runs there, not here


def check_options(opts: CameraOptions) -> None:
    if opts.detect_every < 1:
        raise FeredgeError(f"--detect-every {opts.detect_every}: expected a positive integer")
    if opts.max_faces < 1:
        raise FeredgeError(f"--max-faces {opts.max_faces}: expected a positive integer")
    if not 0 < opts.smooth <= 1:
        raise FeredgeError(f"--smooth {opts.smooth}: expected 0 < α ≤ 1 (1 = no smoothing)")
    for flag, path in (("--json", opts.json_path), ("--record", opts.record)):
        if path is not None and Path(path).is_dir():
            raise FeredgeError(f"{path}: is a folder; {flag} takes a file name")
        if path is not None and Path(path).exists() and not opts.overwrite:
            raise FeredgeError(f"{path}: exists; pass --overwrite to replace it ({flag})")
        if path is not None and not Path(path).parent.is_dir():
            raise FeredgeError(f"{path}: its folder does not exist ({flag})")


class RemoteFer:
    """The model behind `feredge serve`: pre-processed faces go over HTTP to model ``fer`` as one request;
    its description must match the local file used for pre-processing (same input, same classes)."""

    def __init__(self, url: str, info):
        th = require("tritonclient.http")
        self.th, self.client = th, th.InferenceServerClient(url)
        try:
            meta = self.client.get_model_metadata("fer")
        except Exception as exc:  # connection refused, DNS, HTTP errors: all say the server is not usable
            raise FeredgeError(f"--server {url}: no `feredge serve` model 'fer' there ({str(exc)[:120]})") from None
        s = info.input_spec
        dims = [int(d) for d in meta["inputs"][0]["shape"][1:]]
        width = int(meta["outputs"][0]["shape"][-1])
        if dims != [s.channels, s.size, s.size] or width != len(info.classes):
            raise FeredgeError(f"--server {url}: serves input {dims} → {width} classes, but --model expects "
                               f"{[s.channels, s.size, s.size]} → {len(info.classes)}; pass the served model as --model")

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        inp = self.th.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(np.ascontiguousarray(x, np.float32))
        return self.client.infer("fer", [inp]).as_numpy("probabilities")


class Recorder:
    """The annotated video, opened on the first frame (its size is known only then)."""

    def __init__(self, path: Path, fps: float):
        self.cv2 = require("cv2")
        self.path, self.fps, self.writer = Path(path), fps if fps > 0 else 25.0, None

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            fourcc = self.cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self.writer = self.cv2.VideoWriter(str(self.path), fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                raise FeredgeError(f"{self.path}: OpenCV cannot write this video (use .mp4 or .avi)")
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def _largest(boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, n: int):
    if len(boxes) <= n:
        return boxes, scores, landmarks
    keep = np.argsort(-(boxes[:, 2] * boxes[:, 3]))[:n]
    return boxes[keep], scores[keep], landmarks[keep]


def run_camera(opts: CameraOptions, log: Callable[[str], None] = print) -> dict:
    """Run until the source ends, ``max_frames``, 'q' in the window, or Ctrl-C; returns a summary."""
    cv2 = require("cv2")
    from feredge.vision.detector import eye_angles, make_detector
    from feredge.vision.overlay import draw_faces, draw_hud
    from feredge.vision.source import FrameSource
    from feredge.vision.tracker import Tracker
    from feredge.predict import CpuFaceClassifier, face_classifier
    from feredge.runtime.loader import load_runner
    from feredge.weights import resolve

    check_options(opts)
    runner = load_runner(resolve(opts.model), opts.backend, device=opts.device)
    if opts.align and runner.gpu_io:
        runner.close()
        raise FeredgeError("--align rotates crops on the CPU path; the GPU pipeline crops unrotated: use "
                           "--no-align with a GPU runner")
    spec, classes = runner.info.input_spec, list(runner.info.classes)
    remote = RemoteFer(opts.server, runner.info) if opts.server else None
    gpu = face_classifier(runner, spec, mirror=False) if runner.gpu_io and remote is None else None
    cpu = CpuFaceClassifier(runner, spec, mirror=False)  # its crops feed the local runner or the server
    detector = make_detector(opts.detector, opts.detect_max_side)
    tracker = Tracker(max_unseen=opts.track_max_unseen, alpha=opts.smooth)
    source = FrameSource(opts.source)
    recorder = Recorder(opts.record, source.fps) if opts.record else None
    jsonl = open(opts.json_path, "w") if opts.json_path else None
    totals = {s: 0.0 for s in STAGES}
    frames, faces_seen, fps, stop_reason = 0, 0, 0.0, ""
    boxes = np.zeros((0, 4), np.float32)
    ids: list[int] = []
    angles = np.zeros(0)
    reported_drops = 0
    try:
        t_wait = time.perf_counter()
        for frame in source:
            t0 = time.perf_counter()
            ms = {"capture": (t0 - t_wait) * 1000}
            image = frame.image
            if frames % opts.detect_every == 0:
                found, _scores, landmarks = _largest(*detector.detect(image), detector.landmarks, opts.max_faces)
                boxes = found
                ids = tracker.update(boxes)
                angles = eye_angles(landmarks) if opts.align and len(boxes) else np.zeros(len(boxes))
            t1 = time.perf_counter()
            ms["detect"] = (t1 - t0) * 1000
            probs = np.zeros((0, len(classes)), np.float32)
            t2 = t3 = time.perf_counter()
            if len(boxes) and gpu is not None:
                probs = softmax(gpu(image, boxes))
                t2 = t3 = time.perf_counter()
            elif len(boxes):
                x = cpu.crops(image, boxes, angles)
                t2 = time.perf_counter()
                probs = remote.probabilities(x) if remote is not None else softmax(runner.infer_all(x))
                t3 = time.perf_counter()
            ms["preprocess"], ms["infer"] = (t2 - t1) * 1000, (t3 - t2) * 1000
            smoothed = tracker.smooth(ids, probs) if len(probs) else probs
            labels = [classes[i] for i in smoothed.argmax(1)] if len(smoothed) else []
            if opts.display or recorder is not None:
                draw_faces(image, boxes, ids, labels, smoothed.max(1) if len(smoothed) else [])
                draw_hud(image, fps, ms)
            ms["draw"] = (time.perf_counter() - t3) * 1000
            if recorder is not None:
                recorder.write(image)
            dropped = source.stats.dropped[reported_drops:]
            reported_drops += len(dropped)
            if jsonl is not None:
                jsonl.write(json.dumps({
                    "frame": frame.index, "timestamp": round(frame.timestamp, 4), "dropped_before": dropped,
                    "detected": frames % opts.detect_every == 0,
                    "ms": {k: round(v, 3) for k, v in ms.items()},
                    "faces": face_records(boxes, probs, classes, track_ids=ids, smoothed=smoothed)}) + "\n")
            frames += 1
            faces_seen += len(boxes)
            for k, v in ms.items():
                totals[k] += v
            elapsed = time.perf_counter() - t_wait
            fps = 1.0 / elapsed if fps == 0 else 0.9 * fps + 0.1 / max(elapsed, 1e-9)
            t_wait = time.perf_counter()
            if opts.display:
                cv2.imshow("feredge", image)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    stop_reason = "stopped from the window"
                    break
            if opts.max_frames and frames >= opts.max_frames:
                stop_reason = f"--max-frames {opts.max_frames}"
                break
    except KeyboardInterrupt:
        stop_reason = "interrupted (Ctrl-C)"
    finally:
        source.close()
        if jsonl is not None:
            jsonl.close()
        if recorder is not None:
            recorder.close()
        if gpu is not None:
            gpu.close()
        runner.close()
        if opts.display:
            cv2.destroyAllWindows()
    stats = source.stats
    summary = {"frames": frames, "faces": faces_seen, "source": opts.source, "kind": source.kind,
               "stopped": stop_reason or stats.ended, "dropped": len(stats.dropped), "corrupt": stats.corrupt,
               "reconnects": stats.reconnects,
               "mean_ms": {k: round(v / max(frames, 1), 3) for k, v in totals.items()},
               "json": str(opts.json_path) if opts.json_path else None,
               "record": str(opts.record) if opts.record else None}
    if stats.ended.endswith("disconnected"):
        log(f"{opts.source}: the {source.kind} went away after {frames} frames; everything written is flushed")
    return summary
