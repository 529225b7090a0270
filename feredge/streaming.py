"""`feredge.stream`: a video, camera, stream or image folder → each frame with its tracked faces.

The same capture thread, ring, reconnect and tracker as `feredge run-camera`, which is built on it."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from feredge.config import DETECT_EVERY, MAX_FRAMES, SMOOTH, TRACK_MAX_UNSEEN, check_ranges
from feredge.errors import FeredgeError
from feredge.recognizer import Face, Recognizer

if TYPE_CHECKING:
    from feredge.vision.source import FrameSource

#: Stages timed per frame, in order (run-camera's overlay and JSONL report them).
STAGES = ("capture", "detect", "classify")


@dataclass
class StreamFrame:
    """One analysed frame: ``faces`` carry ``track_id`` and the track's ``smoothed`` probabilities."""

    index: int  # position in the source (frames dropped before analysis leave gaps)
    timestamp: float  # seconds: position in a file, time since start for a live source
    image: np.ndarray  # BGR uint8, the source's own buffer: copy it to keep it beyond the next frame
    faces: list[Face]
    detected: bool  # whether the detector ran on this frame (else the tracks' boxes were reused)
    dropped_before: list[int] = field(default_factory=list)  # indices dropped since the previous frame
    ms: dict[str, float] = field(default_factory=dict)
    path: str | None = None  # the picture's file, for folder and image sources


class Stream:
    """Iterate `StreamFrame`s; ``stats`` says what the source dropped, could not decode or reconnected.

    ``detect_every`` N runs the detector on every Nth frame and classifies the tracked boxes in between;
    ``smooth`` is the weight of the newest frame in each track's probabilities (1 = none); a track unseen
    for ``track_max_unseen`` detections ends. ``max_frames`` 0 reads until the source ends."""

    def __init__(self, source: str | int | Path, recognizer: Recognizer | None = None, *,
                 detect_every: int = DETECT_EVERY, smooth: float = SMOOTH, track_max_unseen: int = TRACK_MAX_UNSEEN,
                 max_frames: int = MAX_FRAMES, **recognizer_options):
        from feredge.vision.source import FrameSource
        from feredge.vision.tracker import Tracker

        check_ranges(detect_every=detect_every, smooth=smooth, track_max_unseen=track_max_unseen,
                     max_frames=max_frames)
        self.detect_every, self.max_frames = detect_every, max_frames
        if recognizer is not None and recognizer_options:
            raise FeredgeError(f"pass either a recognizer or Recognizer options ({', '.join(recognizer_options)}), "
                               "not both")
        self._owns = recognizer is None
        self.recognizer = recognizer if recognizer is not None else Recognizer(**recognizer_options)
        try:
            self.tracker = Tracker(max_unseen=track_max_unseen, alpha=smooth)
            self.source = FrameSource(str(source))
        except BaseException:
            self._close_recognizer()
            raise
        self.frames = 0
        # A stream dropped without close() or `with` must not keep its reader thread (and a camera) alive.
        self._finalizer = weakref.finalize(self, _close, self.source, self.recognizer if self._owns else None)

    @property
    def stats(self):
        """The source's `SourceStats`: frames read, dropped (by index), corrupt (a folder's unreadable files by
        name), files skipped as not pictures, reconnects, why it ended."""
        return self.source.stats

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def fps(self) -> float:
        return self.source.fps

    def __iter__(self) -> Iterator[StreamFrame]:
        rec = self.recognizer
        boxes, scores, landmarks = np.zeros((0, 4), np.float32), None, None
        ids: list[int] = []
        reported = 0
        t_wait = time.perf_counter()
        for frame in self.source:
            t0 = time.perf_counter()
            detected = self.frames % self.detect_every == 0
            if detected:
                boxes, scores, landmarks = rec.detect(frame.image)
                ids = self.tracker.update(boxes)
            t1 = time.perf_counter()
            faces = rec.faces(frame.image, boxes, scores, landmarks)
            if faces:
                smoothed = self.tracker.smooth(ids, np.stack([f.probs for f in faces]))
                for face, track_id, track_probs in zip(faces, ids, smoothed):
                    face.track_id, face.smoothed = track_id, track_probs
            t2 = time.perf_counter()
            dropped = self.stats.dropped[reported:]
            reported += len(dropped)
            self.frames += 1
            yield StreamFrame(frame.index, frame.timestamp, frame.image, faces, detected, list(dropped),
                              {"capture": 1e3 * (t0 - t_wait), "detect": 1e3 * (t1 - t0), "classify": 1e3 * (t2 - t1)},
                              frame.path)
            if self.max_frames and self.frames >= self.max_frames:
                return
            t_wait = time.perf_counter()

    def _close_recognizer(self) -> None:
        if self._owns:
            self.recognizer.close()

    def close(self) -> None:
        """Stop the reader thread; the Recognizer too when the stream created it."""
        self._finalizer()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _close(source: FrameSource, recognizer: Recognizer | None) -> None:
    """What closing a stream releases; a module function, so the finalizer holds no reference to the stream."""
    source.close()
    if recognizer is not None:
        recognizer.close()


def stream(source: str | int | Path, model: str | Path | None = None, **options) -> Stream:
    """Frames of ``source`` (camera index, /dev/videoN, video file, rtsp://…, GStreamer pipeline, image
    folder) with tracked, smoothed faces. ``options`` go to `Stream` (detect_every, smooth, max_frames, …)
    and to `Recognizer` (backend, device, tta, …), or pass ``recognizer=`` to reuse one."""
    if model is not None:
        options["model"] = model
    return Stream(source, **options)
