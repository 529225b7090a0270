"""`feredge run-camera` against the `fer` package's own pipeline on the same clips, side by side in one run:
each as a whole command (a fresh process, start-up included), alternated A/B/B/A round after round.

    python -m venv ~/fer-venv && ~/fer-venv/bin/pip install --no-deps fer==25.10.3 && \
        ~/fer-venv/bin/pip install tensorflow-cpu "opencv-python-headless<5" requests pillow "setuptools<81"
    python benchmarks/camera_vs_fer.py --fer-python ~/fer-venv/bin/python [--rounds 5] [--quiet-below 1.0] \
        [--out benchmarks/results/camera_vs_fer-<cpu>.json]

fer is installed without its declared dependencies: ``FER().detect_emotions`` (mtcnn off, its default) needs
only TensorFlow (``tf.lite.Interpreter`` runs its quantised model), OpenCV with Haar cascades (OpenCV 5 has
none), requests, Pillow and pkg_resources; facenet-pytorch (for MTCNN) would pin an old torch, and moviepy,
pandas and matplotlib serve its video helper, which is not what is timed. fer runs through
benchmarks/fer_clip.py: read a frame with OpenCV, ``detect_emotions(frame)``, count the faces.

Clips: a 1280×720 clip of 300 frames panning and zooming across the bundled group photo (3 faces, made at run
time), and $FEREDGE_SHARED/media/single_face_expressions.avi (720×480, 67 frames) when present.

Per command and clip: FPS whole (frames over the process's wall time, start-up included) and steady (frames
after the first over the time after it: run-camera's own per-frame times from a second run with --jsonl,
fer's loop timed inside fer_clip.py), and faces found per frame (run-camera's summary; fer's detections).
run-camera runs with the default model and every default (no display), --max-frames set to the clip's length,
and again with --detect-every 1 (detecting every frame, as before it defaulted to 3) unless --baseline-every 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from clips import group_clip  # noqa: E402
from cpu_int8 import KERNEL_FLAGS, cpu_flags, cpu_slug  # noqa: E402

from feredge import config  # noqa: E402
from feredge.artifact import atomic_write_text  # noqa: E402
from feredge.commands.bench.environment import cpu_model  # noqa: E402

#: The targets for run-camera on the 720p clip with 3 faces, two cores, whole command.
TARGET_FPS, TARGET_RATIO = 60.0, 4.0


def feredge_run(clip: Path, frames: int, jsonl: Path | None, extra: tuple[str, ...] = ()) -> dict:
    """`feredge run-camera` as a fresh process; its whole-command FPS, faces per frame, and with ``jsonl`` the
    steady FPS from its per-frame times."""
    cmd = [sys.executable, "-m", "feredge", "run-camera", "--source", str(clip), "--max-frames", str(frames), *extra]
    if jsonl is not None:
        cmd += ["--jsonl", str(jsonl), "--overwrite"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"run-camera failed: {out.stderr[-2000:]}")
    m = re.search(r"^(\d+) frames, (\d+) faces", out.stdout, re.M)
    if m is None:
        raise SystemExit(f"run-camera printed no summary: {out.stdout[-2000:]}")
    n, faces = int(m.group(1)), int(m.group(2))
    row = {"frames": n, "faces_per_frame": faces / n, "wall_s": wall, "fps_whole": n / wall}
    if jsonl is not None:
        records = [json.loads(line) for line in jsonl.read_text().splitlines()]
        steady = sum(sum(r["ms"].values()) for r in records[1:]) / 1e3
        row |= {"fps_steady": (len(records) - 1) / steady}
    return row


def fer_run(python: str, clip: Path, frames: int) -> dict:
    cmd = [python, str(ROOT / "benchmarks" / "fer_clip.py"), str(clip), "--max-frames", str(frames)]
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"fer failed: {out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"frames": r["frames"], "faces_per_frame": r["faces"] / r["frames"], "wall_s": wall,
            "fps_whole": r["frames"] / wall, "fps_steady": (r["frames"] - 1) / r["seconds_after_first_frame"],
            "start_s": r["seconds_to_first_frame_done"]}


def wait_quiet(below: float, limit_s: float) -> list[float]:
    """Wait (at most ``limit_s``) for the 1-minute load average to fall below ``below``; the last reading."""
    t0 = time.monotonic()
    while os.getloadavg()[0] >= below and time.monotonic() - t0 < limit_s:
        time.sleep(10)
    return [round(v, 2) for v in os.getloadavg()]


def fer_version(python: str) -> dict:
    """The versions of fer and of what it runs on, in its Python."""
    code = ("import json, importlib.metadata as m\nv = {}\n"
            "for p in ('fer', 'tensorflow', 'tensorflow-cpu', 'opencv-python', 'opencv-python-headless', "
            "'opencv-contrib-python'):\n    try: v[p] = m.version(p)\n    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(v))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fer-python", default=os.environ.get("FER_PYTHON", ""),
                        help="the Python that has fer installed (default: $FER_PYTHON)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=300, help="frames of the generated 720p clip")
    parser.add_argument("--quiet-below", type=float, default=1.0, help="wait for a 1-minute load average below this")
    parser.add_argument("--quiet-wait", type=float, default=300, help="seconds to wait for it at most")
    parser.add_argument("--baseline-every", type=int, default=1,
                        help="also run run-camera with --detect-every N (1: every frame; 0: not)")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/camera_vs_fer-<cpu>.json")
    args = parser.parse_args()
    if not args.fer_python:
        raise SystemExit("--fer-python: the Python of a venv with fer installed (see this script's docstring)")
    shared = Path(os.environ.get("FEREDGE_SHARED", ROOT.parent / "shared"))
    import cv2
    import onnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        clips = {"group-720p-3-faces": Path(tmp) / "group.avi"}
        group_clip(clips["group-720p-3-faces"], args.frames)
        if (shared / "media" / "single_face_expressions.avi").is_file():
            clips["single_face_expressions.avi"] = shared / "media" / "single_face_expressions.avi"
        lengths = {name: int(cv2.VideoCapture(str(p)).get(cv2.CAP_PROP_FRAME_COUNT)) for name, p in clips.items()}
        feredge_run(clips["group-720p-3-faces"], 5, None)  # warm the file cache before timing anything
        load = {"waited_for": args.quiet_below, "before": wait_quiet(args.quiet_below, args.quiet_wait), "rounds": []}
        baseline = f"feredge --detect-every {args.baseline_every}"
        tools = ("feredge", "fer", baseline) if args.baseline_every else ("feredge", "fer")
        runs: dict = {(c, k): [] for c in clips for k in tools}
        for r in range(args.rounds):
            for name, clip in clips.items():
                jsonl = Path(tmp) / "frames.jsonl"
                for tool in tools if r % 2 == 0 else tools[::-1]:
                    if tool.startswith("feredge"):
                        extra = ("--detect-every", str(args.baseline_every)) if tool == baseline else ()
                        row = feredge_run(clip, lengths[name], None, extra)
                        row["fps_steady"] = feredge_run(clip, lengths[name], jsonl, extra)["fps_steady"]
                    else:
                        row = fer_run(args.fer_python, clip, lengths[name])
                    runs[(name, tool)].append(row)
                    print(f"round {r + 1} {name:<28} {tool:<26} {row['fps_whole']:6.1f} FPS whole, "
                          f"{row['fps_steady']:6.1f} steady, {row['faces_per_frame']:.2f} faces/frame", flush=True)
            load["rounds"].append([round(v, 2) for v in os.getloadavg()])
    results = {}
    for name in clips:
        fe, fr = runs[(name, "feredge")], runs[(name, "fer")]
        ratio = [a["fps_whole"] / b["fps_whole"] for a, b in zip(fe, fr)]
        results[name] = {
            "frames": lengths[name],
            "feredge": {"fps_whole_median": median(fe, "fps_whole"), "fps_steady_median": median(fe, "fps_steady"),
                        "faces_per_frame": round(fe[0]["faces_per_frame"], 3), "runs": fe},
            "fer": {"fps_whole_median": median(fr, "fps_whole"), "fps_steady_median": median(fr, "fps_steady"),
                    "faces_per_frame": round(fr[0]["faces_per_frame"], 3), "start_s_median": median(fr, "start_s"),
                    "runs": fr},
            "ratio_whole_median": round(statistics.median(ratio), 2), "ratio_whole_rounds": [round(x, 2) for x in ratio],
            "ratio_steady_median": round(median(fe, "fps_steady") / median(fr, "fps_steady"), 2)}
        if args.baseline_every:
            b = runs[(name, baseline)]
            results[name][baseline] = {"fps_whole_median": median(b, "fps_whole"),
                                       "fps_steady_median": median(b, "fps_steady"),
                                       "faces_per_frame": round(b[0]["faces_per_frame"], 3), "runs": b}
        print(f"{name}: run-camera {results[name]['feredge']['fps_whole_median']} FPS whole "
              f"({results[name]['feredge']['fps_steady_median']} steady), fer {results[name]['fer']['fps_whole_median']}"
              f" ({results[name]['fer']['fps_steady_median']} steady): ×{results[name]['ratio_whole_median']} whole")
    group = results["group-720p-3-faces"]
    flags = cpu_flags()
    report = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "cpu": cpu_model(), "cores_online": os.cpu_count(),
        "kernel_flags": [f for f in KERNEL_FLAGS if f in flags], "flags": flags,
        "feredge_defaults": {"model": config.DEFAULT_MODEL, "precision": config.PRECISION,
                             "detect_max_side": config.DETECT_MAX_SIDE, "detect_every": config.DETECT_EVERY},
        "versions": {"onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
                     "fer_side": fer_version(args.fer_python)},
        "rounds": args.rounds, "load_average": load | {"after": [round(v, 2) for v in os.getloadavg()]},
        "targets": {"fps_whole": TARGET_FPS, "ratio_to_fer": TARGET_RATIO,
                    "fps_met": group["feredge"]["fps_whole_median"] >= TARGET_FPS,
                    "ratio_met": group["ratio_whole_median"] >= TARGET_RATIO},
        "clips": results}
    out = args.out or ROOT / "benchmarks" / "results" / f"camera_vs_fer-{cpu_slug(report['cpu'], flags)}.json"
    atomic_write_text(out, json.dumps(report, indent=1))
    print(f"targets on the 720p clip: ≥{TARGET_FPS:.0f} FPS whole {'met' if report['targets']['fps_met'] else 'NOT met'}"
          f", ≥{TARGET_RATIO:.0f}× fer {'met' if report['targets']['ratio_met'] else 'NOT met'}; load average "
          f"{load['before']} before, {report['load_average']['after']} after; written to {out}")


if __name__ == "__main__":
    main()
