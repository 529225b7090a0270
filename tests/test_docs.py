"""The documentation site cannot drift from the code: its CLI page is generated from the whole click app, and
every option of every command appears in what it generates."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from feredge.commands.cli import cli

ROOT = Path(__file__).resolve().parents[1]
CLI_PAGE = ROOT / "docs" / "reference" / "cli.md"


def commands(command: click.Command, path: tuple[str, ...] = ("feredge",)):
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from commands(sub, (*path, name))


def test_cli_page_generates_the_whole_app():
    text = CLI_PAGE.read_text()
    block = re.search(r"::: mkdocs-click\n((?:    :.*\n)+)", text)
    assert block, "docs/reference/cli.md has no mkdocs-click directive"
    options = dict(re.findall(r":(\w+): (.*)", block.group(1)))
    assert options["module"] == "feredge.commands.cli" and options["command"] == "cli"
    assert options.get("prog_name") == "feredge"
    assert "mkdocs-click" in (ROOT / "mkdocs.yml").read_text()


def test_every_option_of_every_command_is_on_the_cli_page():
    docs = pytest.importorskip("mkdocs_click._docs", reason="mkdocs-click is not installed (the docs extra)")
    lines = list(docs.make_command_docs(prog_name="feredge", command=cli, depth=1, style="table",
                                        list_subcommands=True))
    sections, current = {}, None
    for line in lines:  # each command's part of the page starts with its heading, "# feredge data prepare"
        heading = re.match(r"#+ (.+)$", line)
        current = heading.group(1).strip() if heading else current
        sections.setdefault(current, []).append(line)
    missing = []
    for path, command in commands(cli):
        name = " ".join(path) if len(path) > 1 else "feredge"
        body = "\n".join(sections.get(name, sections.get(path[-1], [])))
        assert body, f"{name}: no section on the CLI page (headings: {sorted(k for k in sections if k)})"
        for param in command.params:
            if isinstance(param, click.Option):
                missing += [f"{name} {opt}" for opt in param.opts + param.secondary_opts if opt not in body]
    assert missing == []


def test_built_site_has_every_option_when_built():
    page = ROOT / "site" / "reference" / "cli" / "index.html"
    if not page.is_file():
        pytest.skip("the site is not built here (python -m mkdocs build --strict)")
    if any(p.stat().st_mtime > page.stat().st_mtime for p in (ROOT / "feredge" / "commands").rglob("*.py")):
        pytest.skip("the built site is older than the commands: rebuild it (python -m mkdocs build --strict)")
    text = page.read_text()
    missing = [f"{' '.join(path)} {opt}" for path, command in commands(cli) for param in command.params
               if isinstance(param, click.Option) for opt in param.opts + param.secondary_opts if opt not in text]
    assert missing == []


def test_the_annotated_photo_shows_what_predict_answers_today(tmp_path):
    """docs/images/group.annotated.jpg comes from `benchmarks/docs_images.py`; its record must still match what
    the default `feredge predict` answers (the INT8 file where it is the default moves confidences by ≤ 0.05)."""
    import json

    from click.testing import CliRunner

    from feredge.config import DEFAULT_MODEL

    shown = json.loads((ROOT / "docs" / "images" / "group.annotated.json").read_text())
    result = CliRunner().invoke(cli, ["predict", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    now = json.loads(result.output)
    faces = now["results"][0]["faces"]
    stale = "docs/images is stale: run python benchmarks/docs_images.py"
    assert shown["model"].split(".")[0] == Path(now["model"]).name.split(".")[0] == DEFAULT_MODEL, stale
    assert [f["label"] for f in shown["faces"]] == [f["label"] for f in faces], stale
    for then, today in zip(shown["faces"], faces):
        assert abs(then["confidence"] - today["confidence"]) <= 0.06, stale
        assert max(abs(a - b) for a, b in zip(then["box"], today["box"])) <= 2, stale
