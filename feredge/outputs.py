"""One output rule for every command that writes: earlier results are never replaced silently.

Without an explicit folder a command picks a fresh one (``runs/eval``, ``runs/eval-2``, …); an explicit
folder or file that already holds results is refused unless the user passed ``--overwrite``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from feredge.artifact import check_folder
from feredge.errors import FeredgeError


def _found(folder: Path, markers: Sequence[str]) -> str | None:
    """The first of ``markers`` (file names or glob patterns) present in ``folder``."""
    if not folder.is_dir():
        return None
    for marker in markers:
        hit = next(iter(sorted(folder.glob(marker))), None)
        if hit is not None:
            return hit.name
    return None


def output_folder(out: Path | None, default: Path, markers: Sequence[str], overwrite: bool,
                  flag: str = "--out") -> Path:
    """The folder a command writes into: ``out`` when given (refused while it holds a marker, unless
    ``overwrite``), else ``default`` or the first free ``default-2``, ``-3`` … ."""
    if out is not None:
        out = check_folder(Path(out), flag)
        marker = _found(out, markers)
        if marker is not None and not overwrite:
            raise FeredgeError(f"{out}: holds earlier results ({marker}); pass --overwrite or choose another {flag}")
        return out
    default = Path(default)
    candidate, n = default, 1
    while not overwrite and _found(check_folder(candidate, flag), markers) is not None:
        n += 1
        candidate = default.with_name(f"{default.name}-{n}")
    return check_folder(candidate, flag)


def refuse_existing(paths: Sequence[Path], overwrite: bool, flag: str = "--out", holds: str = "") -> None:
    """Outputs (files, or folders a command fills) that exist already are refused unless ``overwrite``: the
    one wording of every "pass --overwrite" in feredge. ``holds`` says what the first one is, if it helps."""
    existing = next((Path(p) for p in paths if Path(p).exists()), None)
    if existing is not None and not overwrite:
        what = f"already holds {holds}" if holds else "already exists"
        raise FeredgeError(f"{existing}: {what}; pass --overwrite to replace it or choose another {flag}")


def output_file(path: Path, overwrite: bool, flag: str = "--out") -> Path:
    """A single output file: refused when it exists (or is a folder) unless ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise FeredgeError(f"{path}: is a folder; {flag} takes a file name")
    if path.exists() and not overwrite:
        raise FeredgeError(f"{path}: already exists; pass --overwrite to replace it or choose another {flag}")
    check_folder(path.parent, flag, path)
    return path
