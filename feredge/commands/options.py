"""The pieces every `feredge` command shares, so each option means one thing everywhere: the error
boundary, multi-value options, and the --model / --device / --out / --overwrite / --json options."""

from __future__ import annotations

import re
from pathlib import Path

import click

from feredge._optional import missing_extra
from feredge.config import (
    ALIGN,
    DEFAULT_MODEL,
    DETECT_MAX_SIDE,
    DETECT_MIN_SIDE,
    DETECTOR,
    DETECTORS,
    DEVICE,
    DEVICES,
    MAX_FACES,
    PRECISION,
    PRECISIONS,
    THREADS,
    TTA,
    TTA_MODES,
)
from feredge.errors import FeredgeError

PATH = click.Path(path_type=Path)


class Group(click.Group):
    """Turns FeredgeError (bad user input) into a one-line message and a non-zero exit code; anything else
    is a bug in feredge and keeps its traceback, under a line that says so."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FeredgeError as exc:
            raise click.ClickException(str(exc)) from None
        except ModuleNotFoundError as exc:
            hint = missing_extra(exc)
            if hint is None:
                raise
            raise click.ClickException(hint) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            if ctx.parent is None:
                click.echo("feredge: internal error — a bug in feredge, not in your input; please report it "
                           "with the traceback below", err=True)
            raise


class Values(click.Option):
    """An option taking one or more values, written ``--batch 1 8 32``, ``--batch '1 8 32'`` or
    ``--batch 1,8,32``: unquoted values run up to the next token that starts with '-'."""

    def __init__(self, *args, item: type = str, **kwargs):
        self.item = item
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        option = parser._long_opt[self.opts[0]]  # click has no public hook for an open-ended value count
        store = option.process

        def process(value, state) -> None:
            values = [value]
            while state.rargs and not state.rargs[0].startswith("-"):
                values.append(state.rargs.pop(0))
            store(" ".join(values), state)

        option.process = process

    def type_cast_value(self, ctx: click.Context, value) -> tuple:
        items = str(value).replace(",", " ").split()
        try:
            return tuple(self.item(v) for v in items)
        except ValueError:
            kind = "integers" if self.item is int else f"{self.item.__name__} values"
            raise click.BadParameter(f"{value!r}: expected {kind}, e.g. {self.default}", ctx, self) from None


def values(name: str, dest: str, default: tuple, help: str, item: type = str):
    """A `Values` option whose default (a tuple from the owning module) is shown as the user types it."""
    return click.option(name, dest, cls=Values, item=item, default=" ".join(map(str, default)),
                        help=f"{help}; several as {name} A B or {name} A,B")


def model(what: str = "a .onnx / .engine / .safetensors file", multiple: bool = False, default: str = DEFAULT_MODEL):
    """--model: a shipped model's name or a file; repeatable where a command takes several."""
    note = "; repeat --model for several" if multiple else ""
    return click.option("--model", "models" if multiple else "model", multiple=multiple,
                        help=f"a shipped model's name or {what}{note} (default: {default})")


class Device(click.ParamType):
    """auto, cpu, cuda or cuda:N (and what a command adds, such as jetson): the API's spelling."""

    name = "device"

    def __init__(self, choices: tuple[str, ...]):
        self.choices = choices

    def get_metavar(self, param, ctx=None) -> str:
        return "[" + "|".join((*self.choices, "cuda:N")) + "]"

    def convert(self, value, param, ctx):
        if value in self.choices or re.fullmatch(r"cuda:\d+", str(value)):
            return value
        self.fail(f"{value!r}: expected one of {', '.join(self.choices)} or cuda:N", param, ctx)


def device(choices: tuple[str, ...] = DEVICES):
    """--device wherever a model runs: the same choices (bench adds jetson) and one default."""
    extra = "; jetson: on a Jetson, with its power and energy" if "jetson" in choices else ""
    return click.option("--device", type=Device(choices), default=DEVICE,
                        help=f"where the model runs (auto: cuda when the backend can run there, else cpu{extra})")


def tta(choices: tuple[str, ...] = TTA_MODES[:2]):
    """--tta: test-time augmentation, one spelling (ten-crop where a command classifies a dataset's images)."""
    return click.option("--tta", type=click.Choice(choices), default=TTA,
                        help="test-time augmentation: none, hflip (the mirrored face averaged in)"
                        + (", ten-crop (corners, centre and their mirrors)" if "ten-crop" in choices else ""))


def precision():
    """--precision where a model runs: which of a shipped model's files (a file keeps its own)."""
    return click.option("--precision", type=click.Choice(("auto", *PRECISIONS)), default=PRECISION,
                        help="which of a shipped model's files runs (auto: the fastest whose accuracy gate passed "
                        "for the device)")


def faces(command):
    """--detector, --detect-max-side, --max-faces, --align: how faces are found, spelt and defaulted alike on
    every command that finds them (predict, run-camera)."""
    for option in reversed((
        click.option("--detector", type=click.Choice(DETECTORS), default=DETECTOR,
                     help="face detector (haar: OpenCV 4.x only)"),
        click.option("--detect-max-side", type=int, default=DETECT_MAX_SIDE,
                     help=f"detector input: longer side in pixels (at least {DETECT_MIN_SIDE})"),
        click.option("--max-faces", type=int, default=MAX_FACES,
                     help="largest faces kept per picture or frame (0: every face)"),
        click.option("--align/--no-align", default=ALIGN, help="rotate each face so the eyes are level"),
    )):
        command = option(command)
    return command


def threads():
    """--threads: ONNX Runtime's intra-op threads."""
    return click.option("--threads", type=int, default=THREADS, help="ONNX Runtime intra-op threads (0: its choice)")


def max_batch(default: int):
    """--max-batch, one meaning everywhere: the largest batch one inference takes."""
    return click.option("--max-batch", type=int, default=default,
                        help="the largest batch one inference takes (engine profile, server batcher)")


def out(default: Path, what: str = "earlier results"):
    """--out of a command that picks a fresh folder by default (feredge.outputs.output_folder)."""
    def apply(f):
        f = click.option("--overwrite", is_flag=True, help="replace earlier results in an explicit --out")(f)
        return click.option("--out", type=PATH, default=None, help=f"output folder (default: {default}, or "
                            f"{default}-2, -3 … when that holds {what})")(f)
    return apply


as_json = click.option("--json", "as_json", is_flag=True,
                       help="print JSON to stdout instead of a table (files the command writes are still written)")


def table(title: str, columns: list[str], rows: list[list]) -> None:
    """A table under its title; the title is a line of its own, never wrapped inside a path or word. Columns of
    figures are right-aligned, so that their digits line up; columns of words read from the left."""
    from rich.console import Console
    from rich.table import Table

    grid = Table()
    for i, c in enumerate(columns):
        figures = i > 0 and all(re.match(r"[-+−—]?\d|—$|$", str(r[i])) for r in rows)
        grid.add_column(c, justify="right" if figures else "left")
    for r in rows:
        grid.add_row(*[str(v) for v in r])
    console = Console()
    if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(title, markup=False, highlight=False, soft_wrap=True)
    console.print(grid)
