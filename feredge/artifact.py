"""What an artifact says about itself: one description for checkpoints, ONNX files, TensorRT engines
and calibration caches, read and written only here.

Every file feredge makes carries an `Artifact`: in a sidecar ``<file>.json`` next to it (all kinds) and,
for ONNX, also inside the file as metadata properties so it travels with the model. Readers get a
validated `Artifact` or a one-line error naming the file and the field; nothing downstream parses these
JSON files by hand. Torch-free and dependency-free, so the runtime can use it anywhere.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from feredge._version import __version__
from feredge.errors import FeredgeError, absent

FORMAT = "feredge-artifact-v1"
KINDS = ("checkpoint", "onnx", "engine", "calib-cache")
#: int8-qdq: TensorRT's Q/DQ (signed activations); int8-cpu: ONNX Runtime's CPU form (uint8 activations).
ARTIFACT_PRECISIONS = ("fp32", "fp16", "int8-qdq", "int8-calib", "int8-cpu")
#: Checkpoint sidecars written before this module existed: ``best.json`` beside ``best.safetensors``.
#: What an engine's key must match on the machine that runs it.
ENGINE_KEY_FIELDS = ("gpu_name", "compute_capability", "tensorrt")
LEGACY_CHECKPOINT_FORMAT = "feredge-checkpoint-v1"


class ArtifactError(FeredgeError):
    """An artifact or its description is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class InputSpec:
    """What a model expects: size×size pixels, channels, and per-channel normalisation of x/255."""

    size: int
    channels: int
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "input_spec") -> InputSpec:
        """Validated: positive size, 1 or 3 channels, one mean/std per channel, no zero std."""
        if not isinstance(d, dict):
            raise ArtifactError(f"{where}: expected an object with size, channels, mean, std")
        try:
            spec = cls(int(d["size"]), int(d["channels"]), tuple(float(v) for v in d["mean"]),
                       tuple(float(v) for v in d["std"]))
        except KeyError as exc:
            raise ArtifactError(f"{where}: missing field '{exc.args[0]}'") from None
        except (TypeError, ValueError):
            raise ArtifactError(f"{where}: size/channels must be integers and mean/std lists of numbers") from None
        if spec.size < 1 or spec.channels not in (1, 3):
            raise ArtifactError(f"{where}: size {spec.size}, channels {spec.channels}; expected size ≥ 1, "
                                "channels 1 or 3")
        if len(spec.mean) != spec.channels or len(spec.std) != spec.channels or 0.0 in spec.std:
            raise ArtifactError(f"{where}: mean {list(spec.mean)} / std {list(spec.std)} need one non-zero value "
                                f"per channel ({spec.channels})")
        return spec


@dataclass(frozen=True)
class Artifact:
    """The description every feredge file carries (see module docstring)."""

    kind: str
    model: str
    classes: tuple[str, ...]
    input_spec: InputSpec
    precision: str = "fp32"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # what it was made from: name → sha256
    engine_key: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=lambda: {"feredge": __version__})
    details: dict[str, Any] = field(default_factory=dict)  # per kind: training config/metrics, build plan, …

    def derive(self, kind: str, precision: str | None = None, sources: dict[str, str] | None = None,
               engine_key: dict | None = None, versions: dict[str, str] | None = None, **details: Any) -> Artifact:
        """The description of a file made from this one (export, build): same model, classes and input."""
        return replace(self, kind=kind, precision=precision or self.precision, sources=sources or {},
                       engine_key=engine_key, versions={"feredge": __version__, **(versions or {})}, details=details)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return {"format": FORMAT, **d}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Artifact:
        """Validate a decoded description; ``where`` (a path) starts every error message."""
        if not isinstance(d, dict):
            raise ArtifactError(f"{where}: expected a JSON object describing the artifact")
        if d.get("format") != FORMAT:
            raise ArtifactError(f"{where}: field 'format' is {d.get('format')!r}, expected {FORMAT!r} "
                                "(re-export the file with this feredge)")
        for key in ("kind", "model", "classes", "input_spec", "precision"):
            if key not in d:
                raise ArtifactError(f"{where}: missing field '{key}'")
        if d["kind"] not in KINDS:
            raise ArtifactError(f"{where}: field 'kind' is {d['kind']!r}, expected one of {', '.join(KINDS)}")
        if d["precision"] not in ARTIFACT_PRECISIONS:
            raise ArtifactError(f"{where}: field 'precision' is {d['precision']!r}, expected one of "
                                f"{', '.join(ARTIFACT_PRECISIONS)}")
        classes = d["classes"]
        if not (isinstance(classes, list) and classes and all(isinstance(c, str) and c for c in classes)):
            raise ArtifactError(f"{where}: field 'classes' must be a non-empty list of names")
        if len(set(classes)) != len(classes):
            raise ArtifactError(f"{where}: field 'classes' repeats a name: {classes}")
        for key in ("model_kwargs", "sources", "versions", "details"):
            if not isinstance(d.get(key, {}), dict):
                raise ArtifactError(f"{where}: field '{key}' must be an object")
        if d["kind"] == "engine" and not isinstance(d.get("engine_key"), dict):
            raise ArtifactError(f"{where}: field 'engine_key' is missing (engines are tied to a GPU and TensorRT "
                                "version)")
        return cls(d["kind"], str(d["model"]), tuple(classes), InputSpec.from_dict(d["input_spec"],
                                                                                   f"{where}: input_spec"),
                   d["precision"], d.get("model_kwargs", {}), d.get("sources", {}), d.get("engine_key"),
                   d.get("versions", {}), d.get("details", {}))

    def check_engine_key(self, here: dict[str, str], where: str) -> None:
        """An engine runs only on the GPU and TensorRT it was built for: refuse it elsewhere, naming what differs."""
        stored = self.engine_key or {}
        problems = [f"{k}: engine {stored.get(k)!r} vs here {here[k]!r}" for k in ENGINE_KEY_FIELDS
                    if stored.get(k) != here[k]]
        if problems:
            raise ArtifactError(f"{where}: built for another machine ({'; '.join(problems)}); rebuild the "
                                "engine on this machine")

    def check_outputs(self, width: int | str | None, where: str) -> None:
        """A model whose output width differs from the class list would label faces wrongly: refuse it."""
        if isinstance(width, int) and width != len(self.classes):
            raise ArtifactError(f"{where}: the model outputs {width} scores but field 'classes' names "
                                f"{len(self.classes)} ({', '.join(self.classes)})")


def sidecar_path(artifact: Path) -> Path:
    """``x.onnx`` → ``x.onnx.json``: one convention for every kind (trtexec still reads the file itself)."""
    return Path(str(artifact) + ".json")


def check_folder(path: Path, option: str = "--out", target: Path | None = None) -> Path:
    """An output folder given on the command line must be a folder this process can create or write in:
    said before any work, not as the operating system's traceback after it. ``target`` names the file
    written there, when the option is a file."""
    path = Path(path)
    named = target or path
    if target is None and path.exists() and not path.is_dir():
        raise ArtifactError(f"{path}: {option} is a file, expected a folder")
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise ArtifactError(f"{named}: {existing} is a file, so {option} cannot go there; expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ArtifactError(f"{named}: no permission to write in {existing}; choose another {option}")
    return path


#: What a full disk, a quota or a file-size limit make a write fail with.
DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def no_space(path: Path, needed: int, exc: BaseException, kept: str = "nothing was replaced") -> ArtifactError | None:
    """The one line for a write that ran out of room (None for any other failure): the file, the bytes it needs.
    NumPy's short write ("N requested and M written") carries no errno, but has no other cause."""
    if not isinstance(exc, OSError) or (exc.errno not in DISK_FULL and "requested and" not in str(exc)):
        return None
    folder = next((p for p in Path(path).parents if p.is_dir()), Path("."))
    reason = exc.strerror or "the disk took only part of it: full, or a file-size limit"
    return ArtifactError(f"{path}: cannot write {needed:,} bytes ({reason}; {shutil.disk_usage(folder).free:,} bytes "
                         f"free there); {kept} — free some space or write elsewhere")


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write through a temporary file in the same folder, then rename: readers never see half a file; out of
    space, the temporary file is removed and the error is one line (`no_space`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = no_space(path, len(data), exc)
        if full is not None:
            raise full from None
        raise
    return path


def remove_stale_temporaries(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """The hidden ``.<name>.*.tmp`` files a killed `atomic_write_bytes` of these names left in ``folder``; call
    it only while no other process writes them (a run folder's lock held). Returns what was removed."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def write(path: Path, artifact: Artifact) -> Path:
    """Write ``path``'s sidecar (atomically); returns the sidecar's path."""
    return atomic_write_text(sidecar_path(path), json.dumps(artifact.to_dict(), indent=2))


def _load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ArtifactError(f"{path}: not UTF-8 text (expected a JSON sidecar)") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None


def _legacy_checkpoint(path: Path) -> Artifact | None:
    """A run saved before the artifact contract: ``best.json`` in format feredge-checkpoint-v1."""
    side = Path(path).with_suffix(".json")
    if Path(path).suffix != ".safetensors" or not side.is_file():
        return None
    d = _load_json(side)
    if not isinstance(d, dict) or d.get("format") != LEGACY_CHECKPOINT_FORMAT:
        return None
    details = {k: v for k, v in d.items() if k not in ("format", "feredge_version", "model", "classes", "input_spec",
                                                        "model_kwargs")}
    return Artifact.from_dict({"format": FORMAT, "kind": "checkpoint", "model": d.get("model"),
                               "classes": d.get("classes"),
                               "input_spec": d.get("input_spec"), "precision": "fp32",
                               "model_kwargs": d.get("model_kwargs", {}),
                               "versions": {"feredge": d.get("feredge_version", "")}, "details": details}, str(side))


def read(path: Path) -> Artifact:
    """The validated description of the file at ``path`` (from its sidecar)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: {absent(path, 'a feredge model file')}")
    side = sidecar_path(path)
    if not side.is_file():
        legacy = _legacy_checkpoint(path)
        if legacy is not None:
            return legacy
        raise ArtifactError(f"{side}: missing (feredge files carry their description beside them; "
                            "make the file with `feredge train` or `feredge export`)")
    return Artifact.from_dict(_load_json(side), str(side))


def onnx_properties(artifact: Artifact) -> dict[str, str]:
    """The description as ONNX metadata properties: each top-level field JSON-encoded."""
    return {key: json.dumps(value) for key, value in artifact.to_dict().items()}


def from_onnx_properties(props: dict[str, str], where: str) -> Artifact:
    """Inverse of `onnx_properties`; an ONNX without them was not made by `feredge export`."""
    if "format" not in props:
        raise ArtifactError(f"{where}: no feredge metadata in the ONNX file (classes, input spec); "
                            "export it with `feredge export`")
    known = {"format", *(f.name for f in fields(Artifact))}  # other tools add their own properties: leave them
    decoded = {}
    for key, value in props.items():
        if key not in known:
            continue
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            raise ArtifactError(f"{where}: metadata property '{key}' is not JSON") from None
    return Artifact.from_dict(decoded, where)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
