"""A training run's folder: checkpoints, optimiser state and logs, and the rules for reusing one.

Saving an epoch writes the weights to a staged file, then the state (optimiser, scheduler, history,
and the staged weights' sha256) atomically — the commit point — and only then moves the weights over
``last.safetensors``. A kill at any moment leaves either the previous epoch's weights and state, or
this epoch's state and staged weights that ``--resume`` moves into place: never weights of one epoch
beside the state of another.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from feredge.artifact import (
    Artifact,
    ArtifactError,
    atomic_write_bytes,
    atomic_write_text,
    check_folder,
    file_sha256,
    remove_stale_temporaries,
    sidecar_path,
)
from feredge.errors import FeredgeError
from feredge.models.checkpoint import load_into, read_meta, read_state_dict
from feredge.train.checkpoint import save_checkpoint
from feredge.train.distill import teacher_paths

STATE_FILE = "last_state.pt"
LAST = "last.safetensors"
BEST = "best.safetensors"
STAGED = "last.next.safetensors"  # this epoch's weights until its state is written
RUN_FILES = tuple(name for f in (LAST, BEST, STAGED) for name in (f, f + ".json")) + (STATE_FILE, "log.csv", "log.json")
LOCK = ".feredge-train.lock"  # flock'ed while a run writes here; holds the writer's pid


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``out``'s run lock: a second run into the same folder is refused, naming the first one's process.
    An flock ends with its process, so a killed run leaves no lock behind; the file goes when the run ends.
    Only the main process of a distributed run takes it (the others write nothing)."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    out = check_folder(Path(out))
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FeredgeError(f"{out}: another feredge train (pid {holder}) is writing this run folder; wait for it "
                               "to end, or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and lock: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run refused before its first file leaves no empty folder behind


def clear_leftovers(out: Path) -> None:
    """What a killed save left that only this run could have written, said in one line: its hidden
    temporaries (run under the lock)."""
    removed = remove_stale_temporaries(out, RUN_FILES)
    if removed:
        names = ", ".join(p.name for p in removed[:3]) + ", …" * (len(removed) > 3)
        print(f"{out}: removed {len(removed)} temporary file(s) an interrupted save left ({names})", file=sys.stderr)


def run_config(out: Path) -> dict:
    """The settings a run in ``out`` was started with ({} when it has none), so --resume needs no repeats."""
    for name in (LAST, STAGED):  # staged only: the first save was interrupted before its weights moved
        path = Path(out) / name
        if path.is_file() and sidecar_path(path).is_file():
            return dict(read_meta(path).details.get("config", {}))
    return {}


def unfinished(out: Path) -> bool:
    """Whether ``out`` holds only what a first save, killed before its state was written, left: staged
    weights (and best, written before the state) but no finished epoch, so nothing to resume."""
    return (out / STAGED).exists() and not (out / STATE_FILE).exists() and not (out / LAST).exists()


def claim_out(out: Path, resume: bool, overwrite: bool) -> list[Path]:
    """A finished or running run in ``out`` is never replaced without --overwrite; returns the files to replace.
    A run none of whose epochs finished saving is started again plainly (its leftovers replaced, said so)."""
    check_folder(out)
    found = [out / name for name in RUN_FILES if (out / name).exists()]
    if resume:
        if overwrite:
            raise FeredgeError("--resume continues the run in --out, --overwrite replaces it: choose one")
        if unfinished(out):
            raise FeredgeError(f"{out}: nothing to resume — no epoch finished saving ({STAGED} is what an "
                               "interrupted first save left); run the same command without --resume to start again")
        return []
    if found and unfinished(out) and not overwrite:
        print(f"{out}: no epoch of the run here finished saving (an interrupted first save left "
              f"{', '.join(p.name for p in found)}); starting it again and replacing those", file=sys.stderr)
        return found
    if found and not overwrite:
        raise FeredgeError(f"{out}: already holds a training run ({found[0].name}); pass --resume to continue it, "
                           "--overwrite to replace it, or choose another --out")
    return found


def _plain(value: Any) -> Any:
    """Config values as JSON would store them (tuples as lists), for comparing a saved config."""
    return json.loads(json.dumps(value))


#: Settings that name files (a comma-separated list for teachers): saved absolute by `feredge train`, and
#: compared as the files they name, so a run saved with relative paths still resumes.
PATH_SETTINGS = ("data", "init", "teacher")


def same_files(a: str | None, b: str | None) -> bool:
    """Whether two path settings name the same files, however they were typed."""
    return ([Path(p).resolve() for p in teacher_paths(a or "")] == [Path(p).resolve() for p in teacher_paths(b or "")])


def check_same_run(settings: dict, old: dict, where: Path) -> None:
    """--resume continues the *same* run: changed data or hyper-parameters would silently mix two runs."""
    ignore = ("out", "device", "cpu_bf16", *PATH_SETTINGS)  # where and how the step is computed; files below
    changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings.items()
               if k not in ignore and k in old and _plain(old[k]) != _plain(v)]
    changed[:0] = [f"{k} {old[k]!r} -> {settings.get(k)!r}" for k in PATH_SETTINGS
                   if k in old and not same_files(old[k], settings.get(k))]
    if changed:
        raise FeredgeError(f"{where}: --resume with settings that differ from the run's: {'; '.join(changed)}; "
                           "resume with the same settings, or start a new run (another --out, or --set init=…)")


def write_state(path: Path, state: dict) -> None:
    """The commit point of a save: a kill mid-write keeps the previous state."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def promote(out: Path) -> None:
    """Move the staged sidecar (when still there), then the staged weights, over last.*; each move is atomic."""
    staged = out / STAGED
    if sidecar_path(staged).is_file():
        os.replace(sidecar_path(staged), sidecar_path(out / LAST))
    os.replace(staged, out / LAST)


def truncation(path: Path) -> str | None:
    """How much of a .safetensors file is missing ("12,345 of 67,890 bytes"), from its own header; None when
    it is whole (or not a safetensors file at all, which its reader reports)."""
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            raw = fh.read(n) if 0 < n < 100_000_000 else b""
        if 0 < len(raw) < n:
            return f"{Path(path).stat().st_size:,} bytes; its header alone announces {8 + n:,}"
        header = json.loads(raw) if raw else None
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    expected, size = 8 + n + max(ends, default=0), Path(path).stat().st_size
    return f"{size:,} of the {expected:,} bytes its header announces" if size < expected else None


def _tensorboard(out: Path):
    """A TensorBoard writer when the tensorboard package is installed, else None (CSV/JSON logs remain)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))


class RunFolder:
    """The files of the run in ``out``; only the main process (``main``) writes logs."""

    def __init__(self, out: Path, main: bool):
        self.out = Path(out)
        self.tb = _tensorboard(self.out) if main else None

    def log(self, history: list[dict]) -> None:
        """Rewrite log.csv and log.json with every epoch so far; the last row also goes to TensorBoard."""
        row = history[-1]
        keys = list(row)
        lines = [",".join(keys)] + [",".join(f"{r.get(k, '')}" for k in keys) for r in history]
        atomic_write_text(self.out / "log.csv", "\n".join(lines) + "\n")
        atomic_write_text(self.out / "log.json", json.dumps(history, indent=1))
        if self.tb is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.tb.add_scalar(key, value, row["epoch"])
            self.tb.flush()

    def save(self, kept: torch.nn.Module, meta: Artifact, improved: bool, state: dict) -> None:
        """Staged weights, best (when ``improved``), the state with the weights' sha256, then the move. Out of
        space before the state is written, the staged weights go too: the folder keeps the previous epoch."""
        try:
            sha = save_checkpoint(kept, self.out / STAGED, meta)
            if improved:
                save_checkpoint(kept, self.out / BEST, meta)
            write_state(self.out / STATE_FILE, {**state, "weights_sha256": sha})
        except ArtifactError:  # raised before a file was replaced, so the state was not committed
            first = not (self.out / STATE_FILE).exists()  # then best is this uncommitted epoch's too
            for name in (STAGED, BEST) if first else (STAGED,):
                (self.out / name).unlink(missing_ok=True)
                sidecar_path(self.out / name).unlink(missing_ok=True)
            raise
        promote(self.out)

    def read_state(self, device: torch.device) -> dict:
        """The saved state (weights-only loading); a missing or unreadable one is a one-line error."""
        path = self.out / STATE_FILE
        if not path.is_file():
            raise FeredgeError(f"{path}: nothing to resume (no state file from an earlier run)")
        try:
            return torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # truncated / foreign file: torch raises many types
            raise FeredgeError(f"{path}: cannot be read ({exc.__class__.__name__}); the run cannot resume from it "
                               "— start again with --overwrite, or warm-start with "
                               f"--set init={self.out / LAST}") from None

    def settle(self, state: dict) -> None:
        """Make last.safetensors the weights ``state`` was saved with: finish a save that a kill interrupted
        after its state was written, drop staged weights of a save that never reached it, and refuse
        weights that belong to another epoch (a run saved by an older feredge, or a folder edited by hand)."""
        staged, last = self.out / STAGED, self.out / LAST
        sha = state.get("weights_sha256")
        if staged.is_file():
            if sha is not None and file_sha256(staged) == sha:
                promote(self.out)
            else:
                staged.unlink()
                sidecar_path(staged).unlink(missing_ok=True)
        if not last.is_file():
            raise FeredgeError(f"{last}: missing beside {STATE_FILE}; the run cannot resume — start again with "
                               "--overwrite")
        cut = truncation(last)
        if cut is not None:
            best = self.out / BEST
            whole = best.is_file() and truncation(best) is None
            other = f", or warm-start from {best} with --set init={best}" if whole else ""
            raise FeredgeError(f"{last}: truncated ({cut}), so the run cannot resume from it; start again with "
                               f"--overwrite{other}")
        epoch = read_meta(last).details.get("epoch")
        if (sha is not None and file_sha256(last) != sha) or epoch != state["epoch"]:
            raise FeredgeError(f"{last}: weights (epoch {epoch}) are not the ones {STATE_FILE} "
                               f"(epoch {state['epoch']}) "
                               "was saved with, so resuming would not continue this run; start again with --overwrite, "
                               f"or warm-start with --set init={last}")

    def load_last(self, settings: dict, model: torch.nn.Module) -> None:
        """Check that ``settings`` are the run's, then load last.safetensors into ``model``."""
        last = self.out / LAST
        check_same_run(settings, read_meta(last).details.get("config", {}), last)
        load_into(model, read_state_dict(last), str(last))
