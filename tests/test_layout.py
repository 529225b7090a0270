"""The layout tells the pipeline: no import circles between files (imports inside functions count), no room
importing a room above it, and no file under feredge/ over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "feredge"

#: Rooms from the ground up (the pipeline: data → models → train → export/calibration/engine → runtime →
#: recogniser → commands). A module may import its own room and those below, never one above, with no
#: exception listed here. The ground floor holds what every room shares: the artifact contract, errors,
#: the defaults table, metrics, output folders, the shipped models' resolver, the CUDA layer and the
#: vision building blocks (reading frames, finding faces, crop geometry, tracking, drawing).
ROOMS = [
    ("ground", ("_version", "errors", "_optional", "artifact", "metrics", "config", "outputs", "weights", "cuda",
                "vision")),
    ("data", ("data",)),
    ("models", ("models",)),
    ("train", ("train",)),
    ("export", ("export", "calibration", "engine")),
    ("runtime", ("runtime",)),
    ("recogniser", ("recognizer", "streaming")),
    ("commands", ("commands", "__main__")),
]
#: Rooms that share a floor but are folders of their own: neither may import the other (no circles
#: between folders either).
FOLDERS = ("export", "calibration", "engine", "data", "models", "train", "runtime", "vision", "cuda", "weights")
def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """feredge modules ``path`` imports anywhere in the file (module level, functions, TYPE_CHECKING)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(known)
            out |= subs if len(subs) == len(node.names) else subs | {node.module}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m in known}


def room(module: str) -> int:
    rel = module.removeprefix("feredge").removeprefix(".")
    best = None
    for level, (_, prefixes) in enumerate(ROOMS):
        for prefix in prefixes:
            if rel == prefix or rel.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (level, len(prefix))
    assert best is not None, f"{module} is in no room: add it to ROOMS"
    return best[0]


def test_no_import_circles_between_files():
    known = modules()
    graph = {m: imports(p, known) - {m} for m, p in known.items()}
    graph["feredge"] = set()  # the package only re-exports names lazily; a submodule import runs it anyway
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == []


def test_no_room_imports_a_room_above_it():
    known = modules()
    upward = [f"{m} ({ROOMS[room(m)][0]}) imports {d} ({ROOMS[room(d)][0]})"
              for m, p in known.items() if m != "feredge" for d in imports(p, known)
              if d != "feredge" and room(d) > room(m)]
    assert upward == []


def test_no_two_folders_import_each_other():
    known = modules()
    folder = {m: m.split(".")[1] for m in known if m.count(".") >= 1 and m.split(".")[1] in FOLDERS}
    pairs = {(folder[m], folder[d]) for m, p in known.items() if m in folder for d in imports(p, known)
             if d in folder and folder[d] != folder[m]}
    assert sorted((a, b) for a, b in pairs if (b, a) in pairs and a < b) == []


def test_no_file_over_400_lines_or_line_over_120_characters():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    wide = [f"{p.relative_to(PACKAGE)}:{i}" for p in PACKAGE.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if len(line) > 120]
    assert long == {} and wide == []


def test_no_test_imports_another_test():
    here = Path(__file__).resolve().parent
    tests = {p.stem for p in here.glob("test_*.py")}
    found = [f"{p.name} imports {name}" for p in here.glob("*.py") for node in ast.walk(ast.parse(p.read_text()))
             for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                          [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
             if name.split(".")[-1] in tests]
    assert found == []
