"""A training run's folder: checkpoints, optimiser state and logs, and the rules for reusing one.

Saving an epoch writes the weights to a staged file, then the state (optimiser, scheduler, history,
and the staged weights' sha256) atomically — the commit point — and only then moves the weights over
``last.safetensors``. A kill at any moment leaves either the previous epoch's weights and state, or
this epoch's state and staged weights that ``--resume`` moves into place: never weights of one epoch
beside the state of another.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from feredge.artifact import Artifact, atomic_write_bytes, atomic_write_text, check_folder, file_sha256, sidecar_path
from feredge.errors import FeredgeError
from feredge.models.checkpoint import load_into, read_meta, read_state_dict
from feredge.train.checkpoint import save_checkpoint
from feredge.train.distill import teacher_paths

STATE_FILE = "last_state.pt"
LAST = "last.safetensors"
BEST = "best.safetensors"
STAGED = "last.next.safetensors"  # this epoch's weights until its state is written
RUN_FILES = tuple(name for f in (LAST, BEST, STAGED) for name in (f, f + ".json")) + (STATE_FILE, "log.csv", "log.json")


def run_config(out: Path) -> dict:
    """The settings a run in ``out`` was started with ({} when it has none), so --resume needs no repeats."""
    for name in (LAST, STAGED):  # staged only: the first save was interrupted before its weights moved
        path = Path(out) / name
        if path.is_file() and sidecar_path(path).is_file():
            return dict(read_meta(path).details.get("config", {}))
    return {}


def claim_out(out: Path, resume: bool, overwrite: bool) -> list[Path]:
    """A finished or running run in ``out`` is never replaced without --overwrite; returns the files to replace."""
    check_folder(out)
    found = [out / name for name in RUN_FILES if (out / name).exists()]
    if resume:
        if overwrite:
            raise FeredgeError("--resume continues the run in --out, --overwrite replaces it: choose one")
        return []
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
        """Staged weights, best (when ``improved``), the state with the weights' sha256, then the move."""
        sha = save_checkpoint(kept, self.out / STAGED, meta)
        if improved:
            save_checkpoint(kept, self.out / BEST, meta)
        write_state(self.out / STATE_FILE, {**state, "weights_sha256": sha})
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
                               f"— start again with --overwrite, or warm-start with --set init={self.out / LAST}") from None

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
            raise FeredgeError(f"{last}: missing beside {STATE_FILE}; the run cannot resume — start again with --overwrite")
        epoch = read_meta(last).details.get("epoch")
        if (sha is not None and file_sha256(last) != sha) or epoch != state["epoch"]:
            raise FeredgeError(f"{last}: weights (epoch {epoch}) are not the ones {STATE_FILE} (epoch {state['epoch']}) "
                               "was saved with, so resuming would not continue this run; start again with --overwrite, "
                               f"or warm-start with --set init={last}")

    def load_last(self, settings: dict, model: torch.nn.Module) -> None:
        """Check that ``settings`` are the run's, then load last.safetensors into ``model``."""
        last = self.out / LAST
        check_same_run(settings, read_meta(last).details.get("config", {}), last)
        load_into(model, read_state_dict(last), str(last))
