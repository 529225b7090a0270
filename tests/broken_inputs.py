"""Builders of broken inputs for tests/test_bad_input.py: each writes one damaged file or folder (a truncated
JPEG, a PNG whose header claims 20000×20000, a sidecar or ONNX metadata edited, …) and returns its path."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

from tests.support import make_fer_images


def copy_ckpt(run: Path, dst: Path, mangle) -> Path:
    """best.safetensors + its sidecar copied to ``dst``, the weights passed through ``mangle``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(mangle((run / "best.safetensors").read_bytes()))
    shutil.copy(run / "best.safetensors.json", str(dst) + ".json")
    return dst


def onnx_with_meta(run: Path, dst: Path, edit) -> Path:
    """The exported ONNX with its feredge metadata changed by ``edit(dict)``."""
    import onnx

    proto = onnx.load(str(run / "exp" / "best.onnx"))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    edit(meta)
    del proto.metadata_props[:]
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, json.dumps(v)
    onnx.save(proto, str(dst))
    return dst


def huge_png(path: Path, side: int = 20000) -> Path:
    """A PNG whose header says side×side (decoders read the size before any pixel)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (side + 1)))
                     + chunk(b"IEND", b""))
    return path


def prepared_copy(prepared: Path, dst: Path, edit) -> Path:
    shutil.copytree(prepared, dst)
    edit(dst)
    return dst


def toml_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def bench_report(path: Path, rows: list | None = None, p50: float = 1.0) -> Path:
    """A bench report.json as `feredge bench` writes it, with ``rows`` (default: one row of latency ``p50``)."""
    row = {"artifact": "m.onnx", "model": "m", "precision": "fp32", "measure": "model", "batch": 1, "p50_ms": p50}
    report = {"format": "feredge-bench-v1", "environment": {"cpu": "x"}, "rows": [row] if rows is None else rows}
    path.write_text(json.dumps(report))
    return path


def edit_sidecar(ckpt: Path, edit) -> Path:
    side = Path(str(ckpt) + ".json")
    meta = json.loads(side.read_text())
    edit(meta)
    side.write_text(json.dumps(meta))
    return ckpt


def write_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def truncated_state(run: Path, tmp: Path) -> Path:
    dst = shutil.copytree(run, tmp / "r")
    state = dst / "last_state.pt"
    state.write_bytes(state.read_bytes()[:64])
    return dst


def bad_bytes_csv(tmp: Path) -> Path:
    images, labels = make_fer_images(1)
    pixels = " ".join(map(str, images[0].reshape(-1)))
    return write_file(tmp / "fer.csv", f"emotion,pixels,Usage\n0,{pixels},Training\n".encode() + b"\xff,1,Training\n")


def truncated_jpeg(tmp: Path) -> Path:
    src = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"
    data = src.read_bytes()
    return write_file(tmp / "half.jpg", data[:len(data) // 2])


def blank_jpeg(tmp: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (320, 240), (128, 128, 128)).save(tmp / "blank.jpg")
    return tmp / "blank.jpg"


def reordered_classes(data: Path, tmp: Path) -> Path:
    dst = shutil.copytree(data, tmp / "reordered")
    meta = json.loads((dst / "meta.json").read_text())
    meta["classes"] = meta["classes"][::-1]
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


def two_train_folders(tmp: Path) -> Path:
    from PIL import Image

    for split in ("train", "Training"):
        (tmp / "src" / split / "happy").mkdir(parents=True)
        Image.new("L", (48, 48)).save(tmp / "src" / split / "happy" / "a.png")
    return tmp / "src"


def png_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (48, 48), 100).save(buf, "PNG")
    return buf.getvalue()


def tree_of(tmp: Path, files: dict[str, bytes]) -> Path:
    """``tmp/src`` holding ``files`` (relative path → bytes)."""
    for rel, data in files.items():
        (tmp / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "src" / rel).write_bytes(data)
    return tmp / "src"


def edit_json(path: Path, edit) -> Path:
    """``path``'s JSON passed through ``edit`` (which changes it in place) and written back."""
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def without(folder: Path, *names: str) -> Path:
    """``folder`` with the subfolders ``names`` removed."""
    for name in names:
        shutil.rmtree(folder / name)
    return folder


def symlink_loop(path: Path) -> Path:
    """A link to itself (``ln -s loop.jpg loop.jpg``): every open fails with ELOOP."""
    path.symlink_to(path.name)
    return path


def folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
