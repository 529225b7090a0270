"""TensorRT calibration cache files (text: a TRT-<version>-<Algo> header, then 'tensor: hex(scale)')."""

from __future__ import annotations

import struct
from pathlib import Path

from feredge.artifact import atomic_write_text
from feredge.errors import FeredgeError

#: feredge method → TensorRT calibrator algorithm name written in the cache header.
ALGORITHMS = {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration", "percentile": "MinMaxCalibration"}


def trt_version_code(version: str) -> int:
    """'8.6.1' → 8601, '10.3.0' → 100300 (the number TensorRT writes into the header)."""
    parts = [int(p) for p in version.split(".")[:3]] + [0, 0]
    major, minor, patch = parts[:3]
    return major * 1000 + minor * 100 + patch if major < 10 else major * 10000 + minor * 100 + patch


def scale_to_hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def hex_to_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


def write_cache(ranges: dict[str, float], path: Path, method: str, trt_version: str) -> Path:
    """Scales are amax/127 (symmetric int8), one line per tensor, as TensorRT's calibrators write them."""
    header = f"TRT-{trt_version_code(trt_version)}-{ALGORITHMS[method]}"
    lines = [header] + [f"{name}: {scale_to_hex(max(amax, 1e-8) / 127.0)}" for name, amax in sorted(ranges.items())]
    return atomic_write_text(Path(path), "\n".join(lines) + "\n")


def read_cache(path: Path) -> tuple[str, dict[str, float]]:
    lines = Path(path).read_text().splitlines()
    if not lines or not lines[0].startswith("TRT-"):
        raise FeredgeError(f"{path}: not a TensorRT calibration cache (first line should start with 'TRT-')")
    scales = {}
    for i, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(": ")
        if not sep:
            raise FeredgeError(f"{path}: line {i} should read '<tensor>: <hex scale>'")
        scales[name] = hex_to_scale(value.strip())
    return lines[0], scales
