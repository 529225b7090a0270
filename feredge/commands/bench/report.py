"""Bench reports as people and machines read them: a terminal table, JSON, CSV, Markdown, a chart, and
two reports side by side (fp16 vs int8, or two boards)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from feredge import artifact
from feredge.errors import FeredgeError

#: What `write` puts in a bench folder; any of them there means earlier results (feredge.outputs).
FILES = ("report.json", "report.csv", "report.md", "latency_vs_accuracy.png")
#: The fields `compare` pairs rows on and divides.
_COMPARED = ("model", "precision", "measure", "batch", "p50_ms")

COLUMNS = [  # (header, key, format)
    ("artifact", "name", "{}"), ("backend", "backend", "{}"), ("precision", "precision", "{}"),
    ("measure", "measure", "{}"), ("batch/faces", "batch", "{}"), ("p50 ms", "p50_ms", "{:.3f}"),
    ("p90 ms", "p90_ms", "{:.3f}"), ("p99 ms", "p99_ms", "{:.3f}"), ("mean ms", "mean_ms", "{:.3f}"),
    ("per s", "throughput_per_s", "{:.0f}"), ("top-1", "accuracy", "{:.4f}"), ("MB", "size_mb", "{:.2f}"),
    ("mJ/inf", "energy_per_inference_mj", "{:.2f}"),
]


def _flat(row: dict) -> dict:
    flat = {**row, "name": Path(row["artifact"]).name}
    flat.update({k: v for k, v in (row.get("telemetry") or {}).items() if not isinstance(v, dict)})
    return flat


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    return "—" if value is None else fmt.format(value)


def rows_text(report: dict) -> list[list[str]]:
    return [[_cell(_flat(r), key, fmt) for _, key, fmt in COLUMNS] for r in report["rows"]]


def table(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows for the terminal, without columns that no row fills (e.g. energy off a Jetson)."""
    rows = rows_text(report)
    keep = [i for i in range(len(COLUMNS)) if any(r[i] != "—" for r in rows)]
    return [COLUMNS[i][0] for i in keep], [[r[i] for i in keep] for r in rows]


def to_csv(report: dict) -> str:
    keys = sorted({k for r in report["rows"] for k, v in _flat(r).items() if not isinstance(v, (dict, list))})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, keys)
    writer.writeheader()
    for r in report["rows"]:
        writer.writerow({k: v for k, v in _flat(r).items() if k in keys})
    return buf.getvalue()


def to_markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# feredge bench ({report['device']})", "",
             "| environment | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items() if v is not None and not isinstance(v, dict)]
    lines += [f"| {k} | {v} |" for k, v in (env.get("jetson") or {}).items()]
    lines += ["", "Measurement semantics:", ""]
    lines += [f"- **{k}**: {v}" for k, v in report["semantics"].items() if v is not None]
    lines += ["", "| " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows_text(report)]
    return "\n".join(lines) + "\n"


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not beaten on both axes (lower latency x, higher accuracy y)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return front


def write(report: dict, out: Path) -> dict[str, Path]:
    """report.json, report.csv, report.md and (with accuracy) latency_vs_accuracy.png under ``out``."""
    out = artifact.check_folder(out)
    files = {"json": artifact.atomic_write_text(out / "report.json", json.dumps(report, indent=2)),
             "csv": artifact.atomic_write_text(out / "report.csv", to_csv(report)),
             "md": artifact.atomic_write_text(out / "report.md", to_markdown(report))}
    model_rows = [r for r in report["rows"] if r["measure"] == "model" and r.get("accuracy") is not None]
    if model_rows:
        from feredge.commands.plots import latency_vs_accuracy

        labels = [f"{Path(r['artifact']).name} b{r['batch']}" for r in model_rows]
        points = [(r["mean_ms"] / r["batch"], 100 * r["accuracy"]) for r in model_rows]
        files["png"] = latency_vs_accuracy(points, labels, pareto(points), out / "latency_vs_accuracy.png",
                                           "feredge bench on "
                                           f"{report['environment'].get('gpu') or report['environment']['cpu']}")
    return files


def load(path: Path) -> dict:
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeredgeError(f"{path}: cannot read a bench report ({exc.__class__.__name__})") from None
    if not isinstance(report, dict) or report.get("format") != "feredge-bench-v1":
        raise FeredgeError(f"{path}: not a feredge bench report (field 'format' should be 'feredge-bench-v1')")
    rows = report.get("rows")
    if not isinstance(rows, list) or not rows:
        raise FeredgeError(f"{path}: field 'rows' holds no measurements; expected a report of a finished bench")
    for i, row in enumerate(rows):
        missing = [k for k in _COMPARED if not isinstance(row, dict) or k not in row]
        if missing:
            raise FeredgeError(f"{path}: rows[{i}] has no field '{missing[0]}'")
        p50 = row["p50_ms"]
        if isinstance(p50, bool) or not isinstance(p50, (int, float)) or not p50 > 0:
            raise FeredgeError(f"{path}: rows[{i}] field 'p50_ms' is {p50!r}, expected a latency > 0 ms")
    if not isinstance(report.get("environment"), dict):
        raise FeredgeError(f"{path}: field 'environment' is missing or not an object")
    return report


def compare_files(a: Path, b: Path) -> tuple[str, list[str], list[list[str]]]:
    """`bench --compare A B`: a title, the header and the rows of the two reports side by side."""
    header, rows = compare(load(a), load(b))
    return f"A = {a}   B = {b}", header, rows


def compare(a: dict, b: dict) -> tuple[list[str], list[list[str]]]:
    """Rows present in both reports, side by side with the ratio: matched on (model, measure, batch), and on
    precision too when a report holds several precisions of one model (so fp16 vs int8 reports pair up)."""
    def short(r: dict) -> tuple:
        return (r["model"], r["measure"], r["batch"])

    several = any(len({short(r) for r in rep["rows"]}) < len(rep["rows"]) for rep in (a, b))

    def key(r: dict) -> tuple:
        return short(r) + ((r["precision"],) if several else ())

    def where(rep: dict) -> str:
        env = rep["environment"]
        return (env.get("jetson") or {}).get("board") or env.get("gpu") or env.get("cpu", "?")

    index_b = {key(r): r for r in b["rows"]}
    header = ["model", "A/B precision", "measure", "batch/faces", f"A p50 ms ({where(a)})", f"B p50 ms ({where(b)})",
              "B/A", "A top-1", "B top-1"]
    rows = []
    for ra in a["rows"]:
        rb = index_b.get(key(ra))
        if rb is None:
            continue
        rows.append([ra["model"], f"{ra['precision']}/{rb['precision']}", ra["measure"], str(ra["batch"]),
                     f"{ra['p50_ms']:.3f}",
                     f"{rb['p50_ms']:.3f}", f"{rb['p50_ms'] / ra['p50_ms']:.2f}x",
                     _cell(ra, "accuracy", "{:.4f}"), _cell(rb, "accuracy", "{:.4f}")])
    if not rows:
        raise FeredgeError("the two reports share no (model, measure, batch) rows to compare")
    return header, rows
