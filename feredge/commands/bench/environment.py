"""What a benchmark ran on — written into every report, because a latency without its machine is noise."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from feredge._version import __version__
from feredge.runtime.ort_session import int8_kernels_saturate

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
TEGRA_RELEASE = Path("/etc/nv_tegra_release")


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def cpu_model() -> str:
    text = _read(Path("/proc/cpuinfo")) or ""
    m = re.search(r"^(model name|Model)\s*:\s*(.+)$", text, re.M)
    return m.group(2).strip() if m else platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return getattr(mod, "__version__", None)


def is_jetson() -> bool:
    return TEGRA_RELEASE.is_file() or "jetson" in (_read(DEVICE_TREE_MODEL) or "").lower()


def jetson_info() -> dict:
    """Board, L4T release, power mode and whether clocks are pinned (a benchmark with floating clocks
    measures the governor, not the model)."""
    release = _read(TEGRA_RELEASE) or ""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    nvp = _run(["nvpmodel", "-q"])
    clocks = _run(["jetson_clocks", "--show"])
    pinned = None
    if clocks:
        freqs = re.findall(r"MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)", clocks)
        pinned = bool(freqs) and all(lo == hi == cur for lo, hi, cur in freqs)
    return {"board": _read(DEVICE_TREE_MODEL), "l4t": f"{m.group(1)}.{m.group(2)}" if m else release or None,
            "nvpmodel": nvp.splitlines()[0].split(":", 1)[-1].strip() if nvp else None, "clocks_pinned": pinned}


def gpu_info() -> dict:
    """GPU name, compute capability, driver and CUDA versions, from whichever CUDA binding is installed."""
    info: dict = {}
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"])
    if smi:
        name, driver, cc = (p.strip() for p in smi.splitlines()[0].split(","))
        info.update(gpu=name, driver=driver, compute_capability=cc)
    try:
        from feredge.cuda import device_identity

        name, cc = device_identity()
        info.setdefault("gpu", name)
        info.setdefault("compute_capability", cc)
    except Exception:  # no CUDA binding or no GPU: the report then says "none"
        pass
    return info


def environment(device: str) -> dict:
    env = {
        "feredge": __version__, "python": platform.python_version(), "os": platform.platform(),
        "cpu": cpu_model(), "cpu_cores": os.cpu_count(),
        "onnxruntime": _version("onnxruntime"), "torch": _version("torch"), "tensorrt": _version("tensorrt"),
        "numpy": _version("numpy"), "opencv": _version("cv2"),
        # how an INT8 ONNX runs on this CPU: its timings differ by path (feredge.runtime.ort_session)
        "ort_int8_on_cpu": "Q/DQ as written (no VNNI)" if int8_kernels_saturate() else "fused int8 kernels",
    }
    if device in ("cuda", "jetson"):
        env.update(gpu_info())
    if device == "jetson":
        env["jetson"] = jetson_info()
    return env
