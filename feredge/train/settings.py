"""A run's settings from every source at once, so the command line only gathers options: the saved run,
the recipe, the config file, --set pairs and explicit options, each overriding the ones before it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feredge.config import TrainConfig, config_from_dict, load_config_file, parse_set
from feredge.train.distill import teacher_paths
from feredge.train.recipes import recipe as get_recipe
from feredge.train.run_folder import PATH_SETTINGS, run_config


def train_config(options: dict[str, Any], recipe: str | None = None, config_file: Path | None = None,
                 sets: Sequence[str] = (), resume: bool = False) -> TrainConfig:
    """A run's settings from every source, each overriding the ones before it: the run's saved settings
    (with ``resume``), the recipe, the config file, ``--set`` pairs, then the options given explicitly
    (``options``: TrainConfig fields, None for options not given)."""
    values: dict[str, Any] = {}
    if resume and options.get("out"):
        values.update(run_config(Path(options["out"])))
    values.update(get_recipe(recipe) if recipe else {})
    if config_file:
        values.update(load_config_file(config_file))
    pairs = parse_set(sets)
    config_from_dict(pairs, "--set")  # each pair checked, also one that an explicit option then replaces
    values.update(pairs)
    values.update({k: str(v) if isinstance(v, Path) else v for k, v in options.items() if v is not None})
    for key in PATH_SETTINGS:
        if values.get(key):
            values[key] = ",".join(str(Path(p).absolute()) for p in teacher_paths(str(values[key])))
    return config_from_dict(values, str(config_file or "options"))
