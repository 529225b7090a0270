"""`feredge run-camera`: frames → faces → expressions, live, with tracking, smoothing, overlay, JSONL and
recording. Every face of a frame goes through pre-processing and the model in one batch."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feredge import config
from feredge._optional import require
from feredge.artifact import no_space
from feredge.errors import FeredgeError
from feredge.outputs import output_file
from feredge.streaming import STAGES as STREAM_STAGES

#: How many unreadable or skipped files the summary names (the rest are counted).
SHOWN = 5
#: Seconds between progress lines when nothing else shows that the run is alive (no window, JSONL or video).
PROGRESS_S = 5.0
#: Frames per second of a recording made from photos: each picture stays on screen for a second.
PHOTO_FPS = 1.0
STAGES = (*STREAM_STAGES, "draw")


@dataclass
class CameraOptions:
    source: str = "0"
    model: str | None = None
    backend: str | None = None
    device: str | None = None  # None: auto (cuda when the backend can use one)
    detector: str = config.DETECTOR
    detect_every: int | None = None  # None: config.DETECT_EVERY on a video or camera; photos are each detected
    detect_max_side: int = config.DETECT_MAX_SIDE
    display: bool = False
    json_path: Path | None = None
    record: Path | None = None
    overwrite: bool = False
    max_faces: int = config.MAX_FACES
    smooth: float = config.SMOOTH
    track_max_unseen: int = config.TRACK_MAX_UNSEEN
    align: bool = config.ALIGN
    max_frames: int = config.MAX_FRAMES
    tta: str = config.TTA
    precision: str = config.PRECISION
    threads: int = config.THREADS
    sequence: bool = False  # an image folder is the frames of one scene (tracked), not separate photos
    server: str | None = None  # host:port of `feredge serve` (HTTP): the model runs there, not here


def check_options(opts: CameraOptions) -> None:
    """The options a library call would only reject after the model is loaded, named as the CLI writes them."""
    config.check_choice("--detector", opts.detector, config.DETECTORS)
    config.check_ranges(cli=True, detect_max_side=opts.detect_max_side, max_faces=opts.max_faces, smooth=opts.smooth,
                        max_frames=opts.max_frames, threads=opts.threads)
    if opts.detect_every is not None:
        config.check_ranges(cli=True, detect_every=opts.detect_every)
    from feredge.vision.source import describe

    kind = describe(str(opts.source))
    if opts.sequence and kind != "folder":
        raise FeredgeError(f"--sequence: {opts.source} is a {kind}; --sequence says an image folder is one scene's "
                           "frames (a video already is)")
    if opts.detect_every is not None and opts.detect_every > 1 and kind == "folder" and not opts.sequence:
        raise FeredgeError(f"--detect-every {opts.detect_every} reuses one frame's boxes on the next; {opts.source} is "
                           "a folder of separate photos, each detected on its own: add --sequence if its pictures are "
                           "the frames of one scene")
    for flag, path in (("--jsonl", opts.json_path), ("--record", opts.record)):
        if path is not None:
            output_file(path, opts.overwrite, flag)


class Recorder:
    """The annotated video, opened on the first frame (its size is known only then). A later frame of
    another size (a folder of photos) is fitted into that size, letterboxed: OpenCV's writer would drop it
    without a word. Written beside the target under a hidden name and moved over it only once it reads back
    whole: OpenCV's writer says nothing when the disk fills up."""

    def __init__(self, path: Path, fps: float):
        self.cv2 = require("cv2")
        self.path, self.fps, self.writer = Path(path), fps if fps > 0 else 25.0, None
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.size: tuple[int, int] = (0, 0)  # width, height
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            fourcc = self.cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self.size = (frame.shape[1], frame.shape[0])
            self.writer = self.cv2.VideoWriter(str(self.partial), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                self.partial.unlink(missing_ok=True)
                raise FeredgeError(f"{self.path}: OpenCV cannot write this video (use .mp4 or .avi)")
        self.writer.write(letterbox(self.cv2, frame, self.size))
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it into place, or remove it and say why when it does not read back whole."""
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        if not self._reads_back():  # what was written is kept under a visible name, never over --record
            kept = self.path.with_name(f"{self.path.stem}.incomplete{self.path.suffix}")
            size = self.partial.stat().st_size if self.partial.exists() else 0
            if size:
                os.replace(self.partial, kept)
            free = shutil.disk_usage(self.path.parent).free
            raise FeredgeError(f"{self.path}: the recording of {self.frames} frames did not fit (its last frame does "
                               f"not read back: the disk or a file-size limit stopped it; {free:,} bytes free there); "
                               + (f"the {size:,} bytes written are in {kept.name}" if size else "nothing was written")
                               + ", nothing was replaced")
        os.replace(self.partial, self.path)

    def _reads_back(self) -> bool:
        """Whether the last frame written decodes (a cut file or an mp4 without its index does not)."""
        from feredge.vision.images import quiet_opencv

        cv2 = self.cv2
        with quiet_opencv(cv2):
            cap = cv2.VideoCapture(str(self.partial))
            try:
                if not cap.isOpened():
                    return False
                cap.set(cv2.CAP_PROP_POS_FRAMES, self.frames - 1)
                return bool(cap.read()[0])
            finally:
                cap.release()


class JsonLines:
    """run-camera's per-frame log, written a whole line at a time (readable with ``tail -f`` while it runs).
    Out of space, the file keeps its whole lines and the error is one line naming it."""

    def __init__(self, path: Path):
        self.path, self.written, self.lines = Path(path), 0, 0
        self.fh = open(self.path, "wb", buffering=0)

    def write(self, record: dict) -> None:
        data = memoryview((json.dumps(record) + "\n").encode())
        try:
            while data:
                data = data[self.fh.write(data) or 0:]
        except OSError as exc:
            self.close()
            os.truncate(self.path, self.written)  # no half line at the end
            full = no_space(self.path, len(data), exc, f"it keeps the {self.lines} whole lines written before")
            if full is None:
                raise
            raise full from None
        self.written, self.lines = self.fh.tell(), self.lines + 1

    def close(self) -> None:
        self.fh.close()


def letterbox(cv2, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` scaled to fit (width, height) ``size`` whole, centred on black bars; as is when it fits exactly."""
    w, h = size
    fh, fw = frame.shape[:2]
    if (fw, fh) == (w, h):
        return frame
    scale = min(w / fw, h / fh)
    nw, nh = max(1, round(fw * scale)), max(1, round(fh * scale))
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y:y + nh, x:x + nw] = resized
    return out


def check_display(cv2) -> None:
    """A window needs an OpenCV built with a GUI; the headless wheels (what the extras install, so servers
    and containers need no X libraries) have none."""
    try:
        cv2.namedWindow("feredge")
    except cv2.error:
        raise FeredgeError("--display: this OpenCV has no GUI (opencv-python-headless); install one with a window "
                           "system (pip uninstall opencv-python-headless && pip install opencv-python), or use "
                           "--record") from None


def run_camera(opts: CameraOptions, log: Callable[[str], None] = print) -> dict:
    """Run until the source ends, ``max_frames``, 'q' in the window, or Ctrl-C; returns a summary."""
    cv2 = require("cv2")
    from feredge.recognizer import Recognizer
    from feredge.streaming import Stream
    from feredge.vision.overlay import draw_faces, draw_hud

    check_options(opts)
    if opts.display:
        check_display(cv2)
    rec = Recognizer(opts.model, backend=opts.backend, device=opts.device, detector=opts.detector,
                     detect_max_side=opts.detect_max_side, max_faces=opts.max_faces, align=opts.align,
                     precision=opts.precision, tta=opts.tta, threads=opts.threads, server=opts.server)
    try:
        frames = Stream(opts.source, rec, detect_every=opts.detect_every, smooth=opts.smooth,
                        track_max_unseen=opts.track_max_unseen, max_frames=opts.max_frames, sequence=opts.sequence)
    except BaseException:
        rec.close()
        raise
    recorder, jsonl = None, None
    totals = {s: 0.0 for s in STAGES}
    count, faces_seen, fps, stop_reason = 0, 0, 0.0, ""
    try:  # from here on, whatever happens, the stream's threads are stopped before the error is reported
        for path in (opts.record, opts.json_path):
            if path is not None:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        recorder = Recorder(opts.record, PHOTO_FPS if frames.photos else frames.fps) if opts.record else None
        jsonl = JsonLines(opts.json_path) if opts.json_path else None
        quiet = not (opts.display or recorder or jsonl)  # nothing else shows the run is alive
        t_start = t_prev = t_said = time.perf_counter()
        for item in frames:
            t0 = time.perf_counter()
            ms = dict(item.ms)
            if opts.display or recorder is not None:
                draw_faces(item.image, np.array([f.box for f in item.faces]).reshape(-1, 4),
                           [f.track_id for f in item.faces], [f.smoothed_label for f in item.faces],
                           [float(f.smoothed.max()) for f in item.faces])
                draw_hud(item.image, fps, ms)
            if recorder is not None:
                recorder.write(item.image)
            ms["draw"] = (time.perf_counter() - t0) * 1000
            if jsonl is not None:
                jsonl.write({
                    "frame": item.index, **({"image": item.path} if item.path else {}),
                    "timestamp": round(item.timestamp, 4), "dropped_before": item.dropped_before,
                    "detected": item.detected, "ms": {k: round(v, 3) for k, v in ms.items()},
                    "faces": [f.to_dict() for f in item.faces]})
            count += 1
            faces_seen += len(item.faces)
            for k, v in ms.items():
                totals[k] += v
            now = time.perf_counter()
            elapsed, t_prev = now - t_prev, now
            fps = 1.0 / max(elapsed, 1e-9) if fps == 0 else 0.9 * fps + 0.1 / max(elapsed, 1e-9)
            if quiet and now - t_said >= PROGRESS_S:
                t_said = now
                log(f"{count} frames, {count / max(now - t_start, 1e-9):.1f} FPS, {faces_seen} faces so far")
            if opts.display:
                cv2.imshow("feredge", item.image)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    stop_reason = "stopped from the window"
                    break
        if opts.max_frames and count >= opts.max_frames:
            stop_reason = f"--max-frames {opts.max_frames}"
    except KeyboardInterrupt:
        stop_reason = "interrupted (Ctrl-C)"
    finally:
        frames.close()
        rec.close()
        if jsonl is not None:
            jsonl.close()
        if recorder is not None:
            recorder.close()
        if opts.display:
            cv2.destroyAllWindows()
    stats = frames.stats
    summary = {"frames": count, "faces": faces_seen, "source": opts.source, "kind": frames.kind,
               "stopped": stop_reason or stats.ended, "dropped": len(stats.dropped), "corrupt": stats.corrupt,
               "unreadable": stats.unreadable, "skipped": stats.skipped,
               "reconnects": stats.reconnects,
               "mean_ms": {k: round(v / max(count, 1), 3) for k, v in totals.items()},
               "json": str(opts.json_path) if opts.json_path else None,
               "record": str(opts.record) if opts.record else None,
               "recorded": recorder.frames if recorder is not None else 0}
    if stats.ended.endswith("disconnected"):
        log(f"{opts.source}: the {frames.kind} went away after {count} frames; everything written is flushed")
    for key, what in (("unreadable", "unreadable pictures"), ("skipped", "skipped, not pictures")):
        if summary[key]:
            log(f"{what} ({len(summary[key])}): " + "; ".join(summary[key][:SHOWN])
                + ("; …" if len(summary[key]) > SHOWN else ""))
    if count == 0 and frames.kind in ("file", "folder", "image") and not stop_reason:
        raise FeredgeError(f"{opts.source}: no frame could be read ({stats.ended}); expected a "
                           + ("folder with readable pictures" if frames.kind == "folder" else "video with frames"))
    return summary


def summary_lines(summary: dict) -> list[str]:
    """What run-camera prints when it ends: counts, mean stage times, the files it wrote."""
    stages = ", ".join(f"{k} {v:.1f}" for k, v in summary["mean_ms"].items())
    return ([f"{summary['frames']} frames, {summary['faces']} faces ({summary['stopped']}); dropped "
             f"{summary['dropped']}, corrupt {summary['corrupt']}, reconnects {summary['reconnects']}; "
             f"mean ms per frame: {stages}"]
            + ([f"json: {summary['json']}"] if summary["json"] else [])
            + ([f"record: {summary['record']} ({summary['recorded']} frames)"] if summary["record"] else []))
