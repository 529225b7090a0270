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
    from feredge.vision.source import FrameSource, SourceStats

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

    ``detect_every`` N runs the detector on every Nth frame and in between classifies each tracked box moved
    on at its track's last velocity (None: `feredge.config.DETECT_EVERY`; photos are each detected);
    ``smooth`` is the weight of the newest frame in each track's probabilities (1 = none); a track unseen
    for ``track_max_unseen`` detections ends. ``max_frames`` 0 reads until the source ends.

    An image folder is a set of unrelated photos: every picture is detected on its own and no track or
    smoothing carries from one to the next (track ids restart at 1, ``smoothed`` equals ``probs``), unless
    ``sequence=True`` says the folder holds the frames of one scene in order. Iterating a file, folder or
    picture again starts it again from its first frame; a live source goes on from where it is."""

    def __init__(self, source: str | int | Path, recognizer: Recognizer | None = None, *,
                 detect_every: int | None = None, smooth: float = SMOOTH, track_max_unseen: int = TRACK_MAX_UNSEEN,
                 max_frames: int = MAX_FRAMES, sequence: bool = False, **recognizer_options):
        from feredge.vision.source import FrameSource

        check_ranges(smooth=smooth, track_max_unseen=track_max_unseen, max_frames=max_frames)
        if detect_every is not None:
            check_ranges(detect_every=detect_every)
        self.detect_every = DETECT_EVERY if detect_every is None else detect_every
        self.max_frames, self.smooth = max_frames, smooth
        self.track_max_unseen, self.sequence, self.spec = track_max_unseen, sequence, str(source)
        check_options(recognizer_options)
        if recognizer is not None and recognizer_options:
            raise FeredgeError(f"pass either a recognizer or Recognizer options ({', '.join(recognizer_options)}), "
                               "not both")
        # Checked before the model loads: a typo is said at once, not after seconds of loading.
        self._sources: list[FrameSource] = [FrameSource(self.spec, sequence=sequence)]
        if (detect_every or 1) > 1 and self._sources[0].photos and self._sources[0].kind == "folder":
            self._sources[0].close()
            raise FeredgeError(f"detect_every {detect_every} reuses one frame's boxes on the next; {source} is "
                               "a folder of separate photos, each detected on its own: pass sequence=True "
                               "(--sequence) if its pictures are the frames of one scene")
        self._owns = recognizer is None
        try:
            self.recognizer = recognizer if recognizer is not None else Recognizer(**recognizer_options)
        except BaseException:
            self._sources[0].close()
            raise
        self.frames = 0
        self._started = self._looping = False
        # A stream dropped without close() or `with` must not keep its reader thread (and a camera) alive.
        self._finalizer = weakref.finalize(self, _close, self._sources, self.recognizer if self._owns else None)

    @property
    def source(self) -> FrameSource:
        """The source being read (a replayable source gets a fresh one on each new iteration)."""
        return self._sources[0]

    @property
    def stats(self) -> SourceStats:
        """The source's `SourceStats`: frames read, dropped (by index), corrupt (a folder's unreadable files by
        name), files skipped as not pictures, reconnects, why it ended."""
        return self.source.stats

    @property
    def kind(self) -> str:
        return self.source.kind

    @property
    def photos(self) -> bool:
        """Whether the frames are unrelated photos (an image, or a folder not marked as a sequence)."""
        return self.source.photos

    @property
    def fps(self) -> float:
        return self.source.fps

    def _restart(self) -> None:
        """A file, folder or picture is read again from its start, so each iteration yields the same frames."""
        from feredge.vision.source import FrameSource

        if self._started and not self.source.live:
            old = self._sources[0]
            old.close()
            self._sources[0] = FrameSource(self.spec, sequence=self.sequence)
        self._started = True

    def __iter__(self) -> Iterator[StreamFrame]:
        if self._finalizer.alive is False:
            raise FeredgeError(f"this stream of {self.spec} is closed; create a new one")
        if self._looping:
            raise FeredgeError(f"this stream of {self.spec} is already being read by another loop; a stream serves "
                               "one loop at a time (finish or break that loop first, or open a second stream)")
        self._looping = True
        try:
            yield from self._frames()
        finally:
            self._looping = False

    def _frames(self) -> Iterator[StreamFrame]:
        """One pass over the source (started again when it is a file, folder or picture)."""
        from feredge.vision.tracker import Tracker

        self._restart()
        rec, source, photos = self.recognizer, self.source, self.source.photos
        tracker = Tracker(max_unseen=self.track_max_unseen, alpha=self.smooth)
        boxes, scores, landmarks = np.zeros((0, 4), np.float32), None, None
        found, found_landmarks = boxes, None  # the last detection's boxes and landmarks
        ids: list[int] = []
        reported, count, last, shape = 0, 0, 0, None
        t_wait = time.perf_counter()
        for frame in source:
            t0 = time.perf_counter()
            # a frame of another size (a sequence folder's next picture) is detected: old boxes may lie outside it
            detected = photos or count % self.detect_every == 0 or frame.image.shape != shape
            shape = frame.image.shape
            if photos:  # a new picture: nothing of the previous one is another view of it
                tracker = Tracker(max_unseen=self.track_max_unseen, alpha=self.smooth)
            if detected:
                found, scores, found_landmarks = rec.detect(frame.image)
                ids = tracker.update(found, frame.index - last)
                boxes, landmarks, last = found, found_landmarks, frame.index
            elif len(ids):  # between detections each face moves on at its track's last velocity
                boxes = tracker.predict(ids, frame.index - last, frame.image.shape[:2])
                if found_landmarks is not None:
                    landmarks = found_landmarks + (boxes[:, :2] - found[:, :2])[:, None, :]
            t1 = time.perf_counter()
            faces = rec.faces(frame.image, boxes, scores, landmarks)
            if faces:
                smoothed = tracker.smooth(ids, np.stack([f.probs for f in faces]))
                for face, track_id, track_probs in zip(faces, ids, smoothed):
                    face.track_id, face.smoothed = track_id, track_probs
            t2 = time.perf_counter()
            dropped = source.stats.dropped[reported:]
            reported += len(dropped)
            count += 1
            self.frames += 1
            yield StreamFrame(frame.index, frame.timestamp, frame.image, faces, detected, list(dropped),
                              {"capture": 1e3 * (t0 - t_wait), "detect": 1e3 * (t1 - t0), "classify": 1e3 * (t2 - t1)},
                              frame.path)
            if self.max_frames and count >= self.max_frames:
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


#: What `Stream` itself takes; any other keyword goes to `Recognizer`.
STREAM_OPTIONS = ("recognizer", "detect_every", "smooth", "track_max_unseen", "max_frames", "sequence")


def check_options(options: dict) -> None:
    """An unknown keyword (``detectevery=3``) named with the ones there are, not a TypeError from inside."""
    import difflib
    import inspect

    known_rec = [p for p in inspect.signature(Recognizer.__init__).parameters if p != "self"]
    unknown = [k for k in options if k not in known_rec]
    if unknown:
        known = [*STREAM_OPTIONS, *known_rec]
        close = difflib.get_close_matches(unknown[0], known, n=1)
        raise FeredgeError(f"feredge.stream: unknown option {unknown[0]!r}"
                           + (f" (did you mean {close[0]!r}?)" if close else "")
                           + f"; expected one of {', '.join(known)}")


def _close(sources: list[FrameSource], recognizer: Recognizer | None) -> None:
    """What closing a stream releases; a module function, so the finalizer holds no reference to the stream."""
    for source in sources:
        source.close()
    if recognizer is not None:
        recognizer.close()


def stream(source: str | int | Path, model: str | Path | None = None, **options) -> Stream:
    """Frames of ``source`` (camera index, /dev/videoN, video file, rtsp://…, GStreamer pipeline, image
    folder) with tracked, smoothed faces. ``options`` go to `Stream` (detect_every, smooth, max_frames,
    sequence, …) and to `Recognizer` (backend, device, tta, …), or pass ``recognizer=`` to reuse one. A folder
    is read as separate photos unless ``sequence=True``."""
    if model is not None:
        options["model"] = model
    return Stream(source, **options)
