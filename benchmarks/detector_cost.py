"""The detector's share of run-camera: YuNet's input size (--detect-max-side) × how often it runs
(--detect-every, tracked boxes moved on between), with speed and found faces reported together.

    python benchmarks/detector_cost.py [--photos ~/feredge-data/real-photos] [--sides 640 480 416 320] \
        [--every 1 2 3 5] [--rounds 2] [--out benchmarks/results/detector_cost-<cpu>.json]

Each setting runs `run-camera`'s own loop (default model, no display, JSONL kept) on:
- a 720p clip panning and zooming across the bundled group photo (3 faces, true boxes known): true faces found,
  other detections, and labels agreeing with 640 px / every frame on the same faces;
- $FEREDGE_SHARED/media/single_face_expressions.avi when present (used for measurements only): faces per frame
  and label agreement;
- with --photos, a clip of the real photos' *tune* half, three a shot for half a second each: faces found on
  their tiles and top-1 against the photos' labels (a shot's first frames keep the previous shot's boxes until
  the detector runs: what --detect-every costs at a cut).
Settings are interleaved, every one once per round; FPS is the best round's, steady (frames after the first,
over the loop's own per-frame times) and whole (frames over wall time, model loading included). With --photos,
the held-out detection rate (a face found on each photo of the check half, as `feredge predict` finds it) is
given per input size: a folder of photos is detected photo by photo whatever --detect-every says.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from clips import group_clip, in_tile, match, photo_clip  # noqa: E402
from cpu_int8 import KERNEL_FLAGS, cpu_flags, cpu_slug  # noqa: E402
from real_photos import half_of  # noqa: E402

from feredge.artifact import atomic_write_text  # noqa: E402
from feredge.commands.bench.environment import cpu_model  # noqa: E402


def run(clip: Path, side: int, every: int, jsonl: Path, model: str | None) -> tuple[dict, list[dict]]:
    """One run of run-camera's loop: its speed and its JSONL records."""
    from feredge.commands.camera.app import CameraOptions, run_camera

    opts = CameraOptions(source=str(clip), model=model, detect_every=every, detect_max_side=side, json_path=jsonl,
                         overwrite=True)
    t0 = time.perf_counter()
    summary = run_camera(opts, log=lambda m: None)
    wall = time.perf_counter() - t0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    steady = sum(sum(r["ms"].values()) for r in records[1:]) / 1e3
    return {"fps_whole": summary["frames"] / wall, "fps_steady": (len(records) - 1) / max(steady, 1e-9),
            "mean_ms": summary["mean_ms"]}, records


def paired(ref: list[dict], got: list[dict]) -> dict:
    """Faces of ``got`` matched to the reference run's (IoU ≥ 0.5, frame by frame): share matched, their box
    IoU, and how often the label and the track's smoothed label are the same."""
    from feredge.vision.tracker import iou

    total = matched = same = same_smoothed = 0
    overlaps = []
    for a, b in zip(ref, got):
        total += len(a["faces"])
        if not a["faces"] or not b["faces"]:
            continue
        o = iou(np.array([f["box"] for f in a["faces"]]), np.array([f["box"] for f in b["faces"]]))
        for i, j in enumerate(o.argmax(1)):
            if o[i, j] >= 0.5:
                matched += 1
                overlaps.append(o[i, j])
                same += a["faces"][i]["label"] == b["faces"][j]["label"]
                same_smoothed += a["faces"][i]["smoothed_label"] == b["faces"][j]["smoothed_label"]
    return {"matched": matched / max(total, 1), "box_iou": float(np.mean(overlaps)) if overlaps else 0.0,
            "label_agreement": same / max(matched, 1), "smoothed_label_agreement": same_smoothed / max(matched, 1)}


def group_metrics(records: list[dict], truth: list[np.ndarray]) -> dict:
    found = other = 0
    for r, t in zip(records, truth):
        f, o = match(np.array([face["box"] for face in r["faces"]]), t)
        found, other = found + f, other + o
    return {"true_faces_found": found / sum(len(t) for t in truth), "other_detections_per_frame": other / len(truth)}


def photo_metrics(records: list[dict], truth: list[list]) -> dict:
    """Per tile and frame: a face found on it, its label right, its smoothed label right (no face: wrong)."""
    tiles = found = right = right_smoothed = 0
    for r, rects in zip(records, truth):
        tiles += len(rects)
        seen: set[int] = set()
        for face in r["faces"]:
            k = in_tile(face["box"], rects)
            if k is None or k in seen:
                continue
            seen.add(k)
            label = rects[k][1]
            found += 1
            right += face["label"] == label
            right_smoothed += face["smoothed_label"] == label
    return {"tiles_with_a_face": found / tiles, "accuracy": right / tiles, "smoothed_accuracy": right_smoothed / tiles}


def detection_rate(photos: Path, sides: list[int]) -> dict:
    """Share of the check half's photos with a face found, per detector input size (as predict finds them)."""
    from feredge import Recognizer
    from feredge.vision.images import read_image

    with open(photos / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if half_of(r["identity"]) == "check"]
    images = [read_image(photos / r["path"]) for r in rows]
    out = {}
    for side in sides:
        rec = Recognizer(detect_max_side=side)
        out[str(side)] = sum(len(rec.detect(im)[0]) > 0 for im in images) / len(images)
        rec.close()
        print(f"check half, {len(images)} photos, detector at {side} px: a face found on {100 * out[str(side)]:.2f} %",
              flush=True)
    return {"photos": len(images), "face_found": out}


def tune_photos(photos: Path, shots: int) -> list[tuple[Path, str]]:
    """``3 × shots`` photos of the tune half, spread over it in file order."""
    with open(photos / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if half_of(r["identity"]) == "tune"]
    step = max(len(rows) // (3 * shots), 1)
    return [(photos / r["path"], r["label7"]) for r in rows[::step][:3 * shots]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the default model")
    parser.add_argument("--sides", type=int, nargs="+", default=[640, 480, 416, 320])
    parser.add_argument("--every", type=int, nargs="+", default=[1, 2, 3, 5])
    parser.add_argument("--frames", type=int, default=300, help="frames of the group clip")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--photos", type=Path, help="the real photos' folder (labels.csv, images/)")
    parser.add_argument("--shots", type=int, default=40, help="shots of three tune-half photos in the photo clip")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/detector_cost-<cpu>.json")
    args = parser.parse_args()
    settings = [(s, e) for s in args.sides for e in args.every]
    ref_setting = (max(args.sides), 1)
    if ref_setting not in settings:
        raise SystemExit("the largest --sides with --every 1 is the reference: include 1 in --every")
    shared = Path(os.environ.get("FEREDGE_SHARED", ROOT.parent / "shared"))
    load = [os.getloadavg()]
    report: dict = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "cpu": cpu_model(), "cores_online": os.cpu_count(),
                    "kernel_flags": [f for f in KERNEL_FLAGS if f in cpu_flags()], "model": args.model or "default",
                    "reference": {"detect_max_side": ref_setting[0], "detect_every": ref_setting[1]}, "clips": {}}
    with tempfile.TemporaryDirectory() as tmp:
        group = Path(tmp) / "group.avi"
        clips: dict[str, tuple[Path, object]] = {"group-720p-3-faces": (group, group_clip(group, args.frames))}
        avi = shared / "media" / "single_face_expressions.avi"
        if avi.is_file():
            clips["single_face_expressions.avi"] = (avi, None)
        if args.photos:
            path = Path(tmp) / "photos.avi"
            clips["real-photos-tune-720p"] = (path, photo_clip(path, tune_photos(args.photos, args.shots)))
        speed: dict = {(c, s): [] for c in clips for s in settings}
        records: dict = {}
        for _ in range(args.rounds):
            for name, (clip, _) in clips.items():
                for setting in settings:
                    result, records[(name, setting)] = run(clip, *setting, Path(tmp) / "run.jsonl", args.model)
                    speed[(name, setting)].append(result)
        load.append(os.getloadavg())
        for name, (_, truth) in clips.items():
            rows = []
            for side, every in settings:
                recs, runs = records[(name, (side, every))], speed[(name, (side, every))]
                best = max(runs, key=lambda r: r["fps_steady"])
                row = {"detect_max_side": side, "detect_every": every, "frames": len(recs),
                       "fps_steady": round(best["fps_steady"], 1),
                       "fps_whole": round(max(r["fps_whole"] for r in runs), 1),
                       "fps_steady_rounds": [round(r["fps_steady"], 1) for r in runs], "mean_ms": best["mean_ms"],
                       "faces_per_frame": sum(len(r["faces"]) for r in recs) / len(recs),
                       **paired(records[(name, ref_setting)], recs)}
                if name.startswith("group"):
                    row |= group_metrics(recs, truth)
                elif name.startswith("real-photos"):
                    row |= photo_metrics(recs, truth)
                rows.append({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
                print(f"{name} side {side} every {every}: " + ", ".join(
                    f"{k} {v}" for k, v in rows[-1].items() if k not in ("mean_ms", "fps_steady_rounds",
                                                                          "detect_max_side", "detect_every")),
                      flush=True)
            report["clips"][name] = rows
    if args.photos:
        report["held_out_detection"] = detection_rate(args.photos, args.sides)
    load.append(os.getloadavg())
    report["load_average"] = {"start": load[0], "after_clips": load[1], "end": load[2]}
    out = args.out or ROOT / "benchmarks" / "results" / f"detector_cost-{cpu_slug(report['cpu'], cpu_flags())}.json"
    atomic_write_text(out, json.dumps(report, indent=1))
    print(f"load average {load[0][0]:.2f} at the start, {load[-1][0]:.2f} at the end; written to {out}")


if __name__ == "__main__":
    main()
