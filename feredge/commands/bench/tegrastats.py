"""Jetson telemetry from `tegrastats`: parse every line format feredge knows, sample it during a timed
window, and turn power samples into average watts and energy per inference.

Formats handled (see ../shared/docs/platform-and-peers.md §A7 and the L4T tegrastats appendix):
  Orin, JetPack 5/6   ``GR3D_FREQ 10%@1300`` · rails ``VDD_GPU_SOC 2398mW/2398mW`` (inst/avg[/max])
  Orin, JetPack 7.2   ``GR3D_FREQ 12%@[1300,1300]`` (one frequency per GPC)
  Thor                ``GR3D_FREQ @[1000,1000,1000]`` (no utilisation) · rails ``VDD_GPU``, ``VDD_CPU_SOC_MSS``, ``VIN``
  Xavier (JetPack 5)  ``GR3D_FREQ 0%@318`` · rails without units ``GPU 155/155 CPU 620/620 SOC 1548/1548``
Lines may start with a timestamp (``11-23-2026 17:40:01``), which newer releases print.
jtop is deliberately not used (AGPL-3.0); tegrastats ships with every L4T.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from feredge.errors import FeredgeError

#: Rails that measure the whole module/board input, best first; without one, the rails are summed.
INPUT_RAILS = ("VIN_SYS_5V0", "VDD_IN", "VIN", "POM_5V_IN", "SYS5V")
GPU_RAILS = ("VDD_GPU_SOC", "VDD_GPU", "GPU", "VDD_CPU_GPU_CV", "POM_5V_GPU")

_TIMESTAMP = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s+")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_GR3D = re.compile(r"\bGR3D_FREQ (?:(\d+)%)?(?:@\[?([\d,]+)\]?)?")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_TEMP = re.compile(r"\b([A-Za-z0-9_]+)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?\b")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "EMC_FREQ", "GR3D_FREQ"}  # CPU [..] is cut out before rails are read


@dataclass
class Sample:
    """One tegrastats line, parsed. Missing fields stay None / empty (formats differ by board)."""

    t: float  # seconds: the line's timestamp when printed, else when it was read
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    gpu_load_pct: float | None = None  # None on Thor: its tegrastats prints no utilisation
    gpu_freq_mhz: list[int] = field(default_factory=list)  # one per GPC on JetPack 7.2 / Thor
    emc_load_pct: float | None = None
    emc_freq_mhz: int | None = None
    cpu_load_pct: list[float] = field(default_factory=list)  # online cores only
    temps_c: dict[str, float] = field(default_factory=dict)
    rails_mw: dict[str, int] = field(default_factory=dict)  # instantaneous power per rail


def parse_line(line: str, t: float | None = None) -> Sample | None:
    """A Sample, or None for a line that is not tegrastats output (blank, a banner)."""
    if "RAM " not in line and "GR3D_FREQ" not in line:
        return None
    stamp = _TIMESTAMP.match(line)
    if stamp:
        t = time.mktime(time.strptime(stamp.group(1), "%m-%d-%Y %H:%M:%S"))
        line = line[stamp.end():]
    s = Sample(t if t is not None else time.time())
    if m := _RAM.search(line):
        s.ram_used_mb, s.ram_total_mb = int(m.group(1)), int(m.group(2))
    if m := _GR3D.search(line):
        s.gpu_load_pct = float(m.group(1)) if m.group(1) is not None else None
        s.gpu_freq_mhz = [int(v) for v in m.group(2).split(",") if v] if m.group(2) else []
    if m := _EMC.search(line):
        s.emc_load_pct = float(m.group(1))
        s.emc_freq_mhz = int(m.group(2)) if m.group(2) else None
    if m := _CPU.search(line):
        s.cpu_load_pct = [float(c.split("%")[0]) for c in m.group(1).split(",") if "%" in c]
    s.temps_c = {name: float(v) for name, v in _TEMP.findall(line)}
    rails_text = _CPU.sub("", _GR3D.sub("", _EMC.sub("", _RAM.sub("", line))))
    s.rails_mw = {name: int(inst) for name, inst, _avg, _max in _RAIL.findall(rails_text) if name not in _NOT_RAILS}
    return s


def parse_log(text: str) -> list[Sample]:
    """Every tegrastats line of a recorded log; lines without timestamps get 1 s apart (tegrastats' default)."""
    samples = []
    for i, line in enumerate(text.splitlines()):
        sample = parse_line(line, t=float(i))
        if sample is not None:
            samples.append(sample)
    return samples


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(samples: list[Sample], seconds: float, inferences: int) -> dict:
    """Averages over the window, and energy per inference from the board input rail (or the sum of rails)."""
    if not samples:
        return {"samples": 0}
    rails = sorted({r for s in samples for r in s.rails_mw})
    avg_rail = {r: _mean([s.rails_mw[r] for s in samples if r in s.rails_mw]) for r in rails}
    total_rail = next((r for r in INPUT_RAILS if r in avg_rail), None)
    total_mw = avg_rail[total_rail] if total_rail else (sum(avg_rail.values()) if avg_rail else None)
    gpu_rail = next((r for r in GPU_RAILS if r in avg_rail), None)
    out = {
        "samples": len(samples),
        "gpu_load_pct": _mean([s.gpu_load_pct for s in samples if s.gpu_load_pct is not None]),
        "gpu_freq_mhz": _mean([sum(s.gpu_freq_mhz) / len(s.gpu_freq_mhz) for s in samples if s.gpu_freq_mhz]),
        "emc_load_pct": _mean([s.emc_load_pct for s in samples if s.emc_load_pct is not None]),
        "emc_freq_mhz": _mean([s.emc_freq_mhz for s in samples if s.emc_freq_mhz is not None]),
        "ram_used_mb": max((s.ram_used_mb for s in samples if s.ram_used_mb is not None), default=None),
        "rails_avg_mw": avg_rail,
        "power_source": total_rail or ("sum of rails" if avg_rail else None),
        "power_avg_w": total_mw / 1000 if total_mw is not None else None,
        "gpu_rail": gpu_rail,
        "gpu_power_avg_w": avg_rail[gpu_rail] / 1000 if gpu_rail else None,
        "temps_max_c": {k: max(s.temps_c[k] for s in samples if k in s.temps_c)
                        for k in sorted({k for s in samples for k in s.temps_c})},
    }
    if total_mw is not None and inferences > 0:
        out["energy_per_inference_mj"] = total_mw / 1000 * seconds / inferences * 1000
        if gpu_rail:
            out["gpu_energy_per_inference_mj"] = avg_rail[gpu_rail] / 1000 * seconds / inferences * 1000
    return out


class Sampler:
    """``tegrastats --interval MS`` in the background while a window is timed; ``stop()`` returns its samples."""

    def __init__(self, interval_ms: int = 100):
        exe = shutil.which("tegrastats")
        if exe is None:
            raise FeredgeError("tegrastats not found: --device jetson needs a Jetson (L4T); to analyse a recorded "
                               "log elsewhere pass --replay-tegrastats FILE")
        self.proc = subprocess.Popen([exe, "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.samples: list[Sample] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            sample = parse_line(line, t=time.time())
            if sample is not None:
                self.samples.append(sample)

    def stop(self) -> list[Sample]:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._thread.join(timeout=5)
        return self.samples


class Replay:
    """Samples from a recorded log, used in place of a live sampler (tests, or a log from a board)."""

    def __init__(self, path: Path):
        path = Path(path)
        try:
            self.samples = parse_log(path.read_text(errors="replace"))
        except OSError as exc:
            raise FeredgeError(f"{path}: cannot read the tegrastats log ({exc.strerror})") from None
        if not self.samples:
            raise FeredgeError(f"{path}: no tegrastats lines in it (expected lines with RAM … GR3D_FREQ …)")
        self.path = path

    def stop(self) -> list[Sample]:
        return self.samples
