"""Frame sources through OpenCV — webcams (index or /dev/videoN), files, RTSP/HTTP streams, GStreamer
pipelines (Jetson CSI: ``nvarguscamerasrc ! … ! appsink``) and image folders — read on their own thread.

The reader thread fills a small ring of frame buffers so capture never waits on inference. A live source
drops its *oldest* unread frame when the consumer falls behind (latency matters more than completeness); a
file or folder never drops (every frame is analysed). Dropped and corrupt frames are counted and reported
by index, so the JSONL output says which frames were not analysed.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from feredge._optional import require
from feredge.errors import FeredgeError, absent
from feredge.vision.images import check_image, quiet_opencv, read_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
#: In a folder, every picture read_image decodes counts (a GIF gives its first frame; alone, one plays as a video).
FOLDER_IMAGE_SUFFIXES = IMAGE_SUFFIXES | {".gif", ".avif", ".pgm", ".ppm", ".pnm"}
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://")
#: What each kind of source must be for OpenCV to open it, said when it cannot (images are read by feredge).
EXPECTED_SOURCE = {"camera": "a connected camera no other program holds",
                   "file": "a video this OpenCV can decode (e.g. MJPG or H.264 in .avi / .mp4)",
                   "stream": "a reachable stream URL one of this OpenCV's video backends can play",
                   "gstreamer": "a pipeline ending in appsink, with OpenCV built with GStreamer"}


@dataclass
class Frame:
    index: int  # position in the source (frames dropped before analysis leave gaps)
    timestamp: float  # seconds: the file's position for files, time since start for live sources
    image: np.ndarray
    path: str | None = None  # the picture's file, for folder and image sources


@dataclass
class SourceStats:
    read: int = 0  # frames decoded: the reader runs up to a queue ahead, so a stream stopped early counts a few more
    dropped: list[int] = field(default_factory=list)  # indices of frames dropped because the consumer was behind
    corrupt: int = 0  # frames the decoder could not read (skipped)
    unreadable: list[str] = field(default_factory=list)  # a folder's pictures that could not be read, and why
    skipped: list[str] = field(default_factory=list)  # a folder's files that are not pictures (by suffix)
    reconnects: int = 0
    ended: str = ""  # why the source stopped: "end of file", "camera disconnected", "stopped", …


def describe(spec: str) -> str:
    """What kind of source ``spec`` names: camera, file (a video), image, folder, stream or gstreamer."""
    if spec.isdigit() or spec.startswith("/dev/video"):
        return "camera"
    if spec.startswith(STREAM_PREFIXES):
        return "stream"
    if "!" in spec:
        return "gstreamer"
    if Path(spec).is_dir():
        return "folder"
    return "image" if Path(spec).suffix.lower() in IMAGE_SUFFIXES else "file"


def folder_pictures(folder: Path) -> tuple[list[Path], list[str]]:
    """A folder's pictures in name order, and the names of what else it holds (sub-folders as ``name/``, not
    entered; hidden files are neither); a folder without pictures is an error that says which suffixes count."""
    try:
        entries = sorted(p for p in Path(folder).iterdir() if not p.name.startswith("."))
    except PermissionError:
        raise FeredgeError(f"{folder}: no permission to list this folder") from None
    images = [p for p in entries if p.suffix.lower() in FOLDER_IMAGE_SUFFIXES and not p.is_dir()]
    if not images:
        raise FeredgeError(f"{folder}: no images in the folder (expected {', '.join(sorted(FOLDER_IMAGE_SUFFIXES))})")
    return images, [p.name + "/" * p.is_dir() for p in entries if p not in images]


class FrameSource:
    """Iterate ``Frame``s from ``spec``; ``close()`` (or the end of the source) stops the reader thread."""

    def __init__(self, spec: str, ring: int = 4, reconnect_s: tuple[float, ...] = (0.5, 1, 2, 4, 8),
                 sequence: bool = False):
        # FFmpeg prints a line per damaged packet ("[mjpeg @ 0x…] overread 8"); corrupt frames are counted
        # and reported instead. Read when a capture opens; a value the user set is kept.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        self.cv2 = require("cv2")
        self.spec, self.kind = str(spec), describe(str(spec))
        self.live = self.kind in ("camera", "stream", "gstreamer")
        if sequence and self.kind != "folder":
            raise FeredgeError(f"{spec}: sequence=True says an image folder is a frame sequence; this source is a "
                               f"{self.kind}, expected a folder")
        #: Unrelated pictures: no track, smoothing or skipped detection carries from one to the next.
        self.photos = self.kind == "image" or (self.kind == "folder" and not sequence)
        self.stats = SourceStats()
        self.reconnect_s = reconnect_s
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        if self.kind == "folder":
            self.images, self.stats.skipped = folder_pictures(Path(spec))
            self.fps = 0.0
        elif self.kind == "image":
            check_image(spec)  # one picture: a missing or damaged file is the user's error, said now
            self.images, self.fps = [Path(spec)], 0.0
        else:
            if self.kind == "file" and not Path(spec).is_file():
                expected = "a video file, a folder, a camera index, /dev/videoN, rtsp://… or a GStreamer pipeline"
                raise FeredgeError(f"{spec}: {absent(spec, expected)}")
            self.cap = self._open()
            self.fps = float(self.cap.get(self.cv2.CAP_PROP_FPS) or 0.0)
        # live: a bounded ring that drops the oldest; files/folders: a blocking queue that never drops
        self._ring: deque[Frame | None] = deque()  # None: the source ended
        self._ring_size = ring
        self._lock = threading.Condition()
        self._queue: queue.Queue = queue.Queue(maxsize=ring)
        self._thread = threading.Thread(target=self._reader, name="feredge-capture", daemon=True)
        self._thread.start()

    def _capture(self) -> Any:  # a cv2.VideoCapture (OpenCV is imported lazily)
        cv2 = self.cv2
        if self.kind == "camera":
            target = int(self.spec) if self.spec.isdigit() else self.spec
            cap = cv2.VideoCapture(target, cv2.CAP_V4L2) if isinstance(target, str) else cv2.VideoCapture(target)
        elif self.kind == "gstreamer":
            cap = cv2.VideoCapture(self.spec, cv2.CAP_GSTREAMER)
        else:
            cap = cv2.VideoCapture(self.spec)
        return cap

    def _open(self) -> Any:
        with quiet_opencv(self.cv2):  # its backends warn on every failed probe; the error below says it once
            cap = self._capture()
        if not cap.isOpened():
            raise FeredgeError(f"{self.spec}: cannot open this {self.kind} source through OpenCV; expected "
                               + EXPECTED_SOURCE[self.kind])
        return cap

    # reader thread -----------------------------------------------------------------------------------
    def _reader(self) -> None:
        try:
            if self.kind in ("folder", "image"):
                self._read_folder()
            else:
                self._read_capture()
        finally:
            self._put(None)

    def _read_folder(self) -> None:
        for i, path in enumerate(self.images):
            if self._stop.is_set():
                self.stats.ended = "stopped"
                return
            try:
                image = read_image(path)  # the checks predict makes: a truncated JPEG is corrupt, not half a frame
            except FeredgeError as exc:
                self.stats.corrupt += 1
                self.stats.unreadable.append(str(exc))
                continue
            self.stats.read += 1
            self._put(Frame(i, float(i), image, str(path)))
        self.stats.ended = "end of folder" if self.kind == "folder" else "end of image"

    def _read_capture(self) -> None:
        index, failures = 0, 0
        while not self._stop.is_set():
            ok, image = self.cap.read()
            if not ok or image is None:
                if not self.live:
                    total = int(self.cap.get(self.cv2.CAP_PROP_FRAME_COUNT))
                    if 0 < total and index < total and failures < 10:  # a corrupt frame inside the file
                        failures += 1
                        self.stats.corrupt += 1
                        index += 1
                        continue
                    missing = max(0, total - index) if total > 0 else 0
                    self.stats.corrupt += missing  # a truncated file ends before the frames its header announced
                    short = (f" (read {self.stats.read} of the {total} frames its header announces: damaged or "
                             "truncated)") if self.stats.corrupt else ""
                    self.stats.ended = "end of file" + short
                    return
                if not self._reconnect():
                    self.stats.ended = f"{self.kind} disconnected"
                    return
                continue
            failures = 0
            stamp = (self.cap.get(self.cv2.CAP_PROP_POS_MSEC) / 1000.0 if not self.live
                     else time.perf_counter() - self._t0)
            self.stats.read += 1
            self._put(Frame(index, stamp, image))
            index += 1
        self.stats.ended = "stopped"

    def _reconnect(self) -> bool:
        """Streams come back after a network drop: retry with back-off; a camera gets one quick retry."""
        delays = self.reconnect_s if self.kind in ("stream", "gstreamer") else self.reconnect_s[:1]
        self.cap.release()
        for delay in delays:
            if self._stop.wait(delay):
                return False
            try:
                self.cap = self._open()
            except FeredgeError:
                continue
            self.stats.reconnects += 1
            return True
        return False

    def _put(self, frame: Frame | None) -> None:
        if not self.live:
            while not self._stop.is_set():
                try:
                    self._queue.put(frame, timeout=0.1)
                    return
                except queue.Full:
                    continue
            return
        with self._lock:
            if frame is not None and len(self._ring) >= self._ring_size:
                oldest = self._ring.popleft()  # a frame: the end-of-source None is always the last one put
                if oldest is not None:
                    self.stats.dropped.append(oldest.index)
            self._ring.append(frame)
            self._lock.notify()

    # consumer --------------------------------------------------------------------------------------
    def __iter__(self):
        while True:
            if self.live:
                with self._lock:
                    while not self._ring:
                        self._lock.wait(0.1)
                    frame = self._ring.popleft()
            else:
                try:
                    frame = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():  # closed while a loop still read it: end, rather than wait forever
                        return
                    continue
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        self._stop.set()
        while not self.live and not self._queue.empty():
            self._queue.get_nowait()  # unblock a reader waiting on a full queue
        if threading.current_thread() is not self._thread:  # a finalizer may run on the reader thread itself
            self._thread.join(timeout=5)
        if self.kind not in ("folder", "image"):
            self.cap.release()
