"""Per-face CPU latency of each model's fp32 ONNX beside its CPU INT8 file (u8 activations), 1 thread, batch 1
and 8, interleaved in one run, through the runtime's own runner (the kernels it chooses on this CPU).

    python benchmarks/cpu_int8.py [--model feredge-s feredge-n | exports/best.onnx] [--batch 1 8] \
        [--threads 1] [--rounds 7] [--seconds 1.5] [--out benchmarks/results/cpu_int8-<cpu>.json]

A model is a shipped name (its fp32 and int8-cpu files) or an fp32 ONNX with ``<stem>.int8-cpu.onnx`` beside
it (what `feredge export --int8` writes). Every round times each (model, file, batch) once, so a slow spell
of a shared machine hits fp32 and INT8 alike; the figures are medians over the rounds of each round's median
call. The report holds the CPU's model and flags (from /proc/cpuinfo), whether ONNX Runtime's u8·s8 kernels
saturate here, and the load average before and after, which says how much the timings can be trusted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from feredge.artifact import atomic_write_text
from feredge.commands.bench.environment import cpu_model
from feredge.errors import FeredgeError
from feredge.runtime.ort_session import int8_kernels_saturate

#: The flags that decide which integer kernels ONNX Runtime's CPU provider uses (x86 and ARM64).
KERNEL_FLAGS = ("sse4_1", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile",
                "asimd", "asimddp", "i8mm", "sve")


def cpu_flags() -> list[str]:
    """The CPU's feature flags as /proc/cpuinfo lists them (x86 'flags', ARM 'Features')."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    m = re.search(r"^(flags|Features)\s*:\s*(.+)$", text, re.M)
    return m.group(2).split() if m else []


def cpu_slug(model: str, flags: list[str]) -> str:
    """A file-name part for this CPU: its model name, and vnni/avx2 for x86 (the kernels' dividing line)."""
    name = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\(.*?\)|cpu|processor|@.*", "", model.lower())).strip("-")
    if platform.machine().lower() in ("x86_64", "amd64"):
        name += "-vnni" if {"avx512_vnni", "avx_vnni"} & set(flags) else "-avx2" if "avx2" in flags else ""
    return name or "cpu"


def pair(model: str) -> dict[str, Path]:
    """fp32 and int8-cpu files of a shipped name or of an fp32 ONNX path."""
    from feredge.weights import resolve

    if model.endswith(".onnx"):
        fp32 = Path(model)
        files = {"fp32": fp32, "int8-cpu": fp32.with_name(fp32.name[:-len(".onnx")] + ".int8-cpu.onnx")}
    else:
        files = {"fp32": resolve(model, precision="fp32"), "int8-cpu": resolve(model, precision="int8")}
    for path in files.values():
        if not path.is_file():
            raise FeredgeError(f"{path}: not found (--model takes a shipped name or an fp32 ONNX with its "
                               "<stem>.int8-cpu.onnx beside it)")
    return files


def round_median(runner, x: np.ndarray, seconds: float) -> float:
    """The median wall time of one call (ms), calling for about ``seconds``."""
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        runner.infer(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["feredge-s", "feredge-n"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per file and batch in a round")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls per file and batch first")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/cpu_int8-<cpu>.json")
    args = parser.parse_args()
    if args.threads < 1 or args.rounds < 1 or min(args.batch) < 1:
        raise SystemExit("--threads, --rounds and --batch take positive integers")
    from feredge.runtime.ort import OrtRunner

    flags = cpu_flags()
    runners, cases = {}, []
    for model in args.model:
        for kind, path in pair(model).items():
            runners[(model, kind)] = runner = OrtRunner(path, threads=args.threads)
            spec = runner.info.input_spec
            for batch in args.batch:
                x = np.random.default_rng(batch).random((batch, spec.channels, spec.size, spec.size), np.float32)
                for _ in range(args.warmup):
                    runner.infer(x)
                cases.append((model, kind, batch, x))
    load_before = os.getloadavg()
    rounds: dict[tuple, list[float]] = {(m, k, b): [] for m, k, b, _ in cases}
    for _ in range(args.rounds):  # interleaved: every case once per round
        for model, kind, batch, x in cases:
            rounds[(model, kind, batch)].append(round_median(runners[(model, kind)], x, args.seconds))
    load_after = os.getloadavg()
    rows = []
    for (model, kind, batch), ms in rounds.items():
        per_face = float(np.median(ms)) / batch
        base = float(np.median(rounds[(model, "fp32", batch)])) / batch
        path = Path(runners[(model, kind)].path).resolve()
        rows.append({"model": model, "file": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
                     "precision": kind, "batch": batch,
                     "ms_per_face": round(per_face, 4), "speedup_vs_fp32": round(base / per_face, 3),
                     "round_medians_ms_per_call": [round(v, 4) for v in ms]})
        print(f"{model:<12} {kind:<9} batch {batch:<2} {per_face:.3f} ms per face  ×{base / per_face:.2f} vs fp32  "
              f"(median of {args.rounds} rounds, {args.threads} thread{'s' * (args.threads > 1)})", flush=True)
    import onnxruntime

    report = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "cpu": cpu_model(), "machine": platform.machine(),
              "cores_online": os.cpu_count(), "kernel_flags": [f for f in KERNEL_FLAGS if f in flags], "flags": flags,
              "int8_kernels_saturate": int8_kernels_saturate(), "onnxruntime": onnxruntime.__version__,
              "threads": args.threads, "rounds": args.rounds, "seconds_per_case": args.seconds,
              "load_average_before": [round(v, 2) for v in load_before],
              "load_average_after": [round(v, 2) for v in load_after], "results": rows}
    out = args.out or ROOT / "benchmarks" / "results" / f"cpu_int8-{cpu_slug(report['cpu'], flags)}.json"
    atomic_write_text(out, json.dumps(report, indent=1))
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; written to {out}")


if __name__ == "__main__":
    main()
