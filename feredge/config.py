"""Settings as dataclasses; every default is defined here and nowhere else."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feredge.errors import FeredgeError

DEFAULT_MODEL = "feredge-s"


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved next to each checkpoint."""

    model: str = DEFAULT_MODEL
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    out: str = "runs/train"
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adamw | radam
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    scheduler: str = "onecycle"  # onecycle | cosine | plateau | step
    plateau_factor: float = 0.75
    plateau_patience: int = 5
    step_size: int = 40
    step_gamma: float = 0.1
    warmup_pct: float = 0.15
    label_smoothing: float = 0.1
    soft_labels: bool = False  # train on soft.npy (FER+ vote distributions) when present
    mixup: float = 0.0  # Beta(a, a) mixing strength; 0 disables
    cutmix: float = 0.0
    hflip: bool = True
    rotate: float = 10.0  # degrees
    translate: float = 0.1  # fraction of the side
    scale: tuple[float, float] = (0.9, 1.1)
    erasing: float = 0.25  # probability of one random-erasing rectangle
    ten_crop: bool = False  # train on all ten crops folded into the batch (vgg-a recipe)
    weighted_sampler: bool = False
    aux_weights: dict[str, float] = field(default_factory=dict)  # multi-task loss weights, emotion is 1
    emotion_weight: float = 1.0
    init: str = ""  # checkpoint whose weights start the run (fine-tuning / warm restart); "" = random init
    teacher: str = ""  # checkpoint of a larger model to distil from ("" = no distillation)
    distill_weight: float = 0.5  # share of the loss given to matching the teacher (with a teacher)
    distill_temperature: float = 4.0
    val_fraction: float = 0.1  # carved from the training split, seeded and stratified
    val_split: str = ""  # use a prepared split for validation instead of carving one
    select_metric: str = "accuracy"  # accuracy | mean_class_accuracy
    early_stop: int = 0  # stop after this many epochs without improvement; 0 = never
    seed: int = 0
    deterministic: bool = False
    amp: bool = True  # only on CUDA
    channels_last: bool = True  # NHWC; measured faster on CUDA and on AVX2 CPUs (feredge-s: 93 -> 109 img/s, benchmarks/train_throughput.py)
    device: str = ""  # "" = cuda when available, else cpu
    max_steps_per_epoch: int = 0  # 0 = full epochs; >0 for smoke tests
    limit_train: int = 0  # use only the first N (stratified) training images; 0 = all


def config_from_dict(values: dict[str, Any], where: str) -> TrainConfig:
    """Build a TrainConfig, naming ``where`` and the field when a key or type is wrong."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig()
    for key, value in values.items():
        if key not in fields:
            raise FeredgeError(f"{where}: unknown field '{key}' (known: {', '.join(sorted(fields))})")
        default = getattr(cfg, key)
        try:
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise TypeError
            elif isinstance(default, tuple):
                value = tuple(float(v) for v in value)
            elif isinstance(default, (int, float)) and not isinstance(value, bool):
                value = type(default)(value) if not (isinstance(default, int) and float(value) != int(value)) else int(value)
            elif isinstance(default, dict) and not isinstance(value, dict):
                raise TypeError
            elif isinstance(default, str):
                value = str(value)
        except (TypeError, ValueError):
            raise FeredgeError(f"{where}: field '{key}' is {value!r}, expected {type(default).__name__}") from None
        setattr(cfg, key, value)
    return cfg


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file (a [train] table or top-level keys)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FeredgeError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise FeredgeError(f"{path}: invalid TOML ({exc})") from None
    return data.get("train", data)
