"""MkDocs hook: pages and pictures that live elsewhere in the repository join the site as they are.

The model cards (written by model packaging beside the weights), the training record, the learning curves
and the benchmark chart stay where the project's own commands write them; the site reads them from there,
so it shows what the repository holds and never a stale copy.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]

#: site path -> repository path
FROM_REPOSITORY = {
    "training-record.md": "campaign/README.md",
    "models/feredge-s.md": "feredge/weights/feredge-s.card.md",
    "models/feredge-n.md": "feredge/weights/feredge-n.card.md",
    "models/feredge-s-fer2013.md": "feredge/weights/feredge-s-fer2013.card.md",
    "models/feredge-s-fer2013.confusion.png": "feredge/weights/feredge-s-fer2013.confusion.png",
    "models/feredge-s.confusion.png": "feredge/weights/feredge-s.confusion.png",
    "models/feredge-n.confusion.png": "feredge/weights/feredge-n.confusion.png",
    "images/curves.png": "campaign/curves.png",
    "images/latency_vs_accuracy.png": "benchmarks/results/bench-cpu/latency_vs_accuracy.png",
}


def on_files(files: Files, config, **kwargs) -> Files:
    for uri, source in FROM_REPOSITORY.items():
        path = ROOT / source
        if not path.is_file():
            raise FileNotFoundError(f"{source}: the documentation site shows it, and it is missing")
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    files.append(File.generated(config, "reference/defaults.md", content=defaults_page()))
    return files


def defaults_page() -> str:
    """The defaults table of feredge/config.py as a Markdown table: each name, its value and its comment."""
    import ast

    text = (ROOT / "feredge" / "config.py").read_text()
    lines = text.splitlines()
    rows = []
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef):
            break
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        comment, i = [], node.lineno - 2
        while i >= 0 and lines[i].startswith("#:"):
            comment.insert(0, lines[i][2:].strip())
            i -= 1
        value = ast.get_source_segment(text, node.value) or ""
        rows.append(f"| `{node.targets[0].id}` | `{value}` | {' '.join(comment).replace('|', '/')} |")
    return ("# Defaults\n\nGenerated from `feredge/config.py`, the one table every command, the Python API, the "
            "stream, the tracker, the export and the server read their defaults from.\n\n"
            "| name | value | meaning |\n|---|---|---|\n" + "\n".join(rows) + "\n")

