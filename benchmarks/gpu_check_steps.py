"""The Python steps of benchmarks/gpu_check.sh: environment, FER2013 preparation, time-boxed training, export +
evaluation, and the summary that gathers every step's result into $OUT.

    python benchmarks/gpu_check_steps.py env|prepare|train|export-eval|summary ...

Each step writes <work>/steps/<name>.json; the shell script records exit codes and time boxes next to them
(<name>.rc) and calls ``summary`` after every step, so $OUT holds a current gpu_check.json even if the whole
command is killed. feredge is used through its library functions, never its CLI.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

#: Modules the check needs: (import name, what for). pycuda is looked for separately (pass 1 only).
REQUIRED = [("torch", "training"), ("numpy", "everything"), ("PIL", "FER2013 decoding"), ("tqdm", "training"),
            ("safetensors", "checkpoints"), ("onnx", "export"), ("onnxsim", "export (feredge requires it)"),
            ("onnxruntime", "export checks and evaluation"), ("cv2", "OpenCV pre-processing benchmark"),
            ("cuda.bindings", "cuda-python API, NVRTC"), ("pytest", "GPU tests")]
LOG_TAIL = 60_000  # characters kept of each step's log in gpu_check.log
MAX_CHECKPOINT = 16 * 2 ** 20


def write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    tmp.replace(path)


def env_step(args: argparse.Namespace) -> int:
    """Versions of everything the check uses, and which required modules are missing (fails when any is)."""
    found, missing = {}, {}
    for name, purpose in REQUIRED + [("pycuda", "pycuda API (pass 1)"), ("cupy", "not used by feredge"),
                                     ("tensorrt_rtx_bindings", "TensorRT for RTX (optional: the rtx step)")]:
        try:
            module = importlib.import_module(name)
            found[name] = str(getattr(module, "__version__", "present"))
        except Exception as exc:  # ImportError, or a broken install raising something else
            missing[name] = f"{purpose}: {type(exc).__name__}: {exc}"
    info = {"python": platform.python_version(), "found": found, "missing": missing}
    if "torch" in found:
        import torch

        info["torch_cuda"] = {"available": torch.cuda.is_available(), "built_for": torch.version.cuda,
                              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    smi = shutil.which("nvidia-smi")
    info["nvidia_smi"] = subprocess.run(
        [smi, "--query-gpu=name,driver_version,compute_cap,memory.total", "--format=csv,noheader"],
        capture_output=True, text=True).stdout.strip() if smi else "nvidia-smi not found"
    needed = [m for m, _ in REQUIRED if m in missing]
    no_gpu = args.gpu and not info.get("torch_cuda", {}).get("available")
    info["status"] = "fail" if needed or no_gpu else "pass"
    write_json(args.work / "steps" / "env.json", info)
    print(json.dumps(info, indent=2))
    return 1 if info["status"] == "fail" else 0


def prepare_step(args: argparse.Namespace) -> int:
    """Extract the carried FER2013 archive and prepare it (train/val, FER+ soft labels) as the tests do."""
    from feredge.data import prepare

    t0 = time.perf_counter()
    src = args.work / "fer2013-src"
    shutil.rmtree(src, ignore_errors=True)
    with tarfile.open(args.archive) as tar:
        tar.extractall(src, filter="data")
    extracted = time.perf_counter() - t0
    ds, problems = prepare("fer2013", src / "fer2013", args.out, ferplus=src / "fer2013" / "ferplus_votes.csv",
                           overwrite=True)
    shutil.rmtree(src)
    info = {"status": "pass", "extract_s": extracted, "seconds": time.perf_counter() - t0,
            "splits": {name: len(split) for name, split in ds.splits.items()}, "skipped": len(problems.items),
            "ferplus_matched": ds.meta.get("ferplus_matched"), "data": str(args.out)}
    write_json(args.work / "steps" / "prepare.json", info)
    print(json.dumps(info, indent=2))
    return 0


#: What the shipped feredge-s trains on since stage 9: half of the label target FER+'s votes (prepare_step adds
#: them), so a GPU-trained model is comparable with it (README, "Training campaign").
LABELS = {"soft_labels": True, "soft_label_share": 0.5}


def _train_config(args: argparse.Namespace, out: Path, **overrides):
    from feredge.config import config_from_dict
    from feredge.train.recipes import recipe

    values = {**recipe("feredge-s"), **LABELS}
    values.update(data=str(args.data), out=str(out), device=args.device, **overrides)
    return config_from_dict(values, "gpu_check")


def _history(out: Path) -> list[dict]:
    path = out / "log.json"
    return json.loads(path.read_text()) if path.is_file() else []


def train_step(args: argparse.Namespace) -> int:
    """feredge-s with its recipe and stage 9's label target on ``device``: a 2-epoch probe measures start-up and epoch time, then the real run
    gets as many epochs (up to the recipe's) as fit in ``budget_s``, so its one-cycle schedule completes.
    ``--tiny``: the CPU rehearsal (1 short epoch on a small subset, no probe)."""
    from feredge.train.recipes import recipe
    from feredge.train.trainer import train

    t0 = time.perf_counter()
    info: dict = {"device": args.device, "recipe": "feredge-s", "labels": LABELS, "budget_s": args.budget_s}
    if args.tiny:
        epochs, tiny = 1, dict(limit_train=700, max_steps_per_epoch=4, batch_size=64)
        info["tiny"] = tiny
    else:
        tiny = {}
        probe_out = args.out.parent / "probe"
        shutil.rmtree(probe_out, ignore_errors=True)
        train(_train_config(args, probe_out, epochs=2), overwrite=True)
        probe_s = time.perf_counter() - t0
        epoch_s = _history(probe_out)[-1]["seconds"]  # the 2nd epoch: steady state, past cuDNN's autotuning
        startup_s = max(probe_s - 2 * epoch_s, 0.0)  # set-up, data to the device, the first epoch's warm-up
        # The real run pays the start-up again, then epoch_s per epoch; 10% slack.
        fit = int((args.budget_s - probe_s - startup_s) / (1.1 * epoch_s))
        epochs = max(1, min(recipe("feredge-s")["epochs"], fit))
        info["probe"] = {"seconds": probe_s, "epoch_s": epoch_s, "startup_s": startup_s, "epochs_that_fit": fit}
    info["epochs_planned"] = epochs
    write_json(args.work / "steps" / "train.json", {**info, "status": "running"})
    shutil.rmtree(args.out, ignore_errors=True)
    result = train(_train_config(args, args.out, epochs=epochs, **tiny), overwrite=True)
    history = _history(args.out)
    seconds = sorted(row["seconds"] for row in history)
    info.update(status="pass", seconds=time.perf_counter() - t0, epochs_done=len(history),
                best_val_accuracy=result["best"], checkpoint=str(args.out / "best.safetensors"),
                median_epoch_s=seconds[len(seconds) // 2] if seconds else None,
                images_per_s=history[-1].get("images_per_s") if history else None,
                history=[{k: row.get(k) for k in ("epoch", "train_loss", "val_accuracy", "seconds")} for row in history])
    write_json(args.work / "steps" / "train.json", info)
    print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=2))
    return 0


def export_eval_step(args: argparse.Namespace) -> int:
    """FP32/FP16/INT8 ONNX (INT8 calibrated on the prepared train split), then each model, and the checkpoint
    itself, evaluated on the prepared 'val' split (FER2013 PublicTest) with ONNX Runtime CPU / torch."""
    from feredge.commands.evaluate import evaluate_checkpoints
    from feredge.commands.export import ExportOptions, export
    from feredge.errors import FeredgeError

    t0 = time.perf_counter()
    info: dict = {"checkpoint": str(args.checkpoint), "status": "pass"}
    # max_drop=100: this check measures the INT8 drop (reported) instead of refusing to publish the file.
    opts = ExportOptions(out=args.out, fp16=True, int8=True, calib_data=args.data, overwrite=True, max_drop=100.0)
    try:
        report = export(args.checkpoint, opts)
    except FeredgeError as exc:
        info.update(status="fail", export_error=str(exc))
        report_path = args.out / f"{args.checkpoint.stem}.export.json"
        report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    info["export_s"] = time.perf_counter() - t0
    info["export"] = {k: report.get(k) for k in ("files", "parity", "accuracy", "calibration", "int8_refused")}
    evaluated = {}
    models = {fmt: Path(p) for fmt, p in report.get("files", {}).items() if fmt in ("fp32", "fp16", "int8")}
    for name, path in {"checkpoint": args.checkpoint, **models}.items():
        t1 = time.perf_counter()
        try:
            device = args.device if name == "checkpoint" else "cpu"  # ONNX Runtime CPU for the ONNX files
            m, _ = evaluate_checkpoints([path], args.data, "val", device=device)
            evaluated[name] = {"accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"],
                               "n": int(sum(sum(r) for r in m["confusion_matrix"])), "size_bytes": path.stat().st_size,
                               "seconds": time.perf_counter() - t1}
        except Exception as exc:  # one format failing must not hide the others' numbers
            info["status"] = "fail"
            evaluated[name] = {"error": f"{type(exc).__name__}: {exc}"}
    missing = {"fp32", "fp16", "int8"} - set(models)
    if missing:
        info.update(status="fail", missing_formats=sorted(missing))
    info.update(evaluation={"split": "val (FER2013 PublicTest)", **evaluated}, seconds=time.perf_counter() - t0)
    write_json(args.work / "steps" / "export_eval.json", info)
    print(json.dumps(info, indent=2))
    return 0 if info["status"] == "pass" else 1


def _junit(path: Path) -> dict:
    """Counts and non-passing test names from a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    outcomes = {}
    for case in suite.iter("testcase"):
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcomes[f"{case.get('classname')}::{case.get('name')}"] = f"{kind}: {node.get('message', '')[:300]}"
    counts["not_passed"] = outcomes
    bad = counts["failures"] + counts["errors"]
    counts["status"] = "fail" if bad else "pass" if counts["passed"] else "skipped"
    return counts


def _bench(path: Path, api: str) -> dict:
    """Rows of benchmarks/preprocess.py --json (its 'no CUDA timing' notice, when there is one, comes first);
    'fail' when the script fell back to the other CUDA API than ``api``."""
    text = path.read_text()
    start = text.find("[")
    rows = json.loads(text[start:]) if start >= 0 else []
    notice = text[:start].strip() if start > 0 else ""
    used = {r.get("api") for r in rows if "kernel_us" in r}
    status = "fail" if not rows or used - {api} else "pass" if used else "cpu-only"
    return {"status": status, "api_used": sorted(used), "notice": notice, "rows": rows}


def _step_result(work: Path, name: str) -> dict:
    """One step's outcome: exit code and time box from the shell, details from the step's own file."""
    result: dict = {}
    skip = work / "steps" / f"{name}.skip"
    if skip.is_file():
        return {"status": "skipped", "reason": skip.read_text().strip()}
    rc_file = work / "steps" / f"{name}.rc"
    if not rc_file.is_file():
        return {"status": "not run"}
    rc, seconds, limit = (int(v) for v in rc_file.read_text().split())
    result.update(rc=rc, seconds=seconds, limit_s=limit)
    details = work / "steps" / f"{name}.json"
    if name.startswith("gpu_tests_") and (work / f"junit-{name[10:]}.xml").is_file():
        result.update(_junit(work / f"junit-{name[10:]}.xml"))
    elif name.startswith("bench_") and (work / f"bench-{name[6:]}.json").is_file():
        try:
            result.update(_bench(work / f"bench-{name[6:]}.json", name[6:].replace("_", "-")))
        except ValueError as exc:
            result.update(status="fail", error=f"unreadable benchmark output: {exc}")
    elif details.is_file():
        result.update(json.loads(details.read_text()))
    if rc in (124, 137):
        result["status"] = f"timeout after {limit} s"
    elif rc != 0 and result.get("status") in (None, "pass", "running"):
        result["status"] = "fail"
    result.setdefault("status", "pass" if rc == 0 else "fail")
    return result


STEPS = ("install", "env", "prepare", "gpu_tests_pycuda", "gpu_tests_cuda_python", "bench_pycuda",
         "bench_cuda_python", "train", "export_eval", "rtx")
#: The TensorRT-for-RTX step (benchmarks/gpu_check_rtx.py) answers whether it runs here: a recorded refusal
#: (a GPU it does not target) or its absence is an answer, not a failure.
ANSWERS = {"rtx": ("refused", "unavailable")}


def summary_step(args: argparse.Namespace) -> int:
    """gpu_check.json, gpu_check.log and the files worth bringing back (at most 8 in all) into ``out``."""
    work, out = args.work, args.out
    out.mkdir(parents=True, exist_ok=True)
    steps = {name: _step_result(work, name) for name in STEPS}
    bench = {name[6:]: steps[name].get("rows", []) for name in STEPS if name.startswith("bench_")}
    copies = {f"junit-{api}.xml": work / f"junit-{api}.xml" for api in ("pycuda", "cuda_python")}
    checkpoint = work / "train" / "best.safetensors"
    if checkpoint.is_file() and checkpoint.stat().st_size <= MAX_CHECKPOINT:
        copies.update({"best.safetensors": checkpoint, "best.safetensors.json": work / "train" / "best.safetensors.json"})
    for name, src in copies.items():
        if src.is_file():
            shutil.copyfile(src, out / name)
    write_json(out / "preprocess.json", bench)
    logs = []
    for log in sorted((work / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime):
        text = log.read_text(errors="replace")
        if not text:
            continue
        cut = f"[... {len(text) - LOG_TAIL} characters cut ...]\n" if len(text) > LOG_TAIL else ""
        logs.append(f"===== {log.stem} =====\n{cut}{text[-LOG_TAIL:]}\n")
    (out / "gpu_check.log").write_text("".join(logs))
    done = [s for s in steps.values() if s["status"] != "not run"]
    # Without a GPU (the dry run) GPU tests can only skip and the benchmark only time OpenCV; on a GPU that fails.
    fine = ("pass", "skipped", "cpu-only") if args.mode == "dry-run" else ("pass",)
    ok = len(done) == len(STEPS) and all(r["status"] in fine + ANSWERS.get(n, ()) for n, r in steps.items()
                                         if r["status"] != "not run")
    files = sorted(p.name for p in out.iterdir() if p.is_file()) + ["gpu_check.json"]
    summary = {"mode": args.mode, "wall_s": args.wall_s, "budget_s": args.budget_s, "ok": ok,
               "complete": len(done) == len(STEPS), "steps": steps, "files": sorted(set(files))}
    write_json(out / "gpu_check.json", summary)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    for name in ("env", "prepare", "train", "export-eval", "summary"):
        p = sub.add_parser(name)
        p.add_argument("--work", type=Path, required=True, help="the check's scratch folder")
    sub.choices["env"].add_argument("--gpu", action="store_true", help="fail when torch sees no CUDA device")
    sub.choices["prepare"].add_argument("--archive", type=Path, required=True)
    sub.choices["prepare"].add_argument("--out", type=Path, required=True)
    for name in ("train", "export-eval"):
        sub.choices[name].add_argument("--data", type=Path, required=True)
        sub.choices[name].add_argument("--out", type=Path, required=True)
        sub.choices[name].add_argument("--device", default="cuda")
    sub.choices["train"].add_argument("--budget-s", type=float, required=True)
    sub.choices["train"].add_argument("--tiny", action="store_true", help="CPU rehearsal: one short epoch")
    sub.choices["export-eval"].add_argument("--checkpoint", type=Path, required=True)
    sub.choices["summary"].add_argument("--out", type=Path, required=True)
    sub.choices["summary"].add_argument("--mode", default="gpu")
    sub.choices["summary"].add_argument("--wall-s", type=int, default=0)
    sub.choices["summary"].add_argument("--budget-s", type=int, default=0)
    args = parser.parse_args()
    run = {"env": env_step, "prepare": prepare_step, "train": train_step, "export-eval": export_eval_step,
           "summary": summary_step}[args.step]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
