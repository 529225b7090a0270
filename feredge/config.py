"""Settings as dataclasses; every default is defined here and nowhere else."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feredge.errors import FeredgeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

# ---------------------------------------------------------------------------------------------------------
# The defaults table. Every command, the Python API, the stream, the tracker, the export and the server read
# their defaults here; nothing restates one. Choices that an option offers are listed beside its default.
# ---------------------------------------------------------------------------------------------------------

#: What every command and `Recognizer()` run when no model is named: the model for real faces (photos and
#: cameras, what predict and run-camera are for): on the real photos' check half it reads 73.78 % top-1 against
#: feredge-s's 66.60 %, at about a sixth of the cost (README, "Which model to use"). feredge-s scores higher
#: on FER2013's own labels (67.82 against 65.28 % on PublicTest).
DEFAULT_MODEL = "feredge-n"
#: --device wherever a model runs: auto = cuda when the backend can run there, else cpu (also cuda:N).
DEVICE = "auto"
DEVICES = ("auto", "cpu", "cuda")
#: The precisions a checkpoint is exported and built at (export, bench --precision, engine plans). An exported
#: file's own description uses `feredge.artifact.ARTIFACT_PRECISIONS` (int8 there says how: Q/DQ or cache).
PRECISIONS = ("fp32", "fp16", "int8")
#: Which of a shipped model's files runs (predict, run-camera, bench, the API): auto = the fastest whose
#: accuracy gate passed for the device (`feredge.runtime.loader.pick_precision`), or one of PRECISIONS.
PRECISION = "auto"
#: Test-time augmentation: none, the mirrored face averaged in, or ten crops (datasets' equal-sized images).
TTA = "none"
TTA_MODES = ("none", "hflip", "ten-crop")
#: The channel order of colour frames and crops handed to the API.
COLOR = "bgr"
COLORS = ("bgr", "rgb")
#: Face detection: the detector, and how often a stream runs it (tracking between).
DETECTOR = "yunet"
DETECTORS = ("yunet", "haar")
#: The detector sees frames scaled so their longer side is at most this. YuNet's cost grows with the
#: pixel count (~68 ms for 1280×853 at full size, ~12 ms at 480 px wide on 2 cores) while its anchors
#: find faces down to ~10 px, so a 40 px face in a 720p frame is still ~20 px here; at full resolution
#: a multi-megapixel photo's faces are larger than YuNet's largest anchors and are lost.
DETECT_MAX_SIDE = 640
#: The smallest detector input that can find anything: on a close-up that a face fills, YuNet finds the
#: face with the longer side scaled to 40 px and loses it at 32 px.
DETECT_MIN_SIDE = 48
#: A video or camera runs the detector on every Nth frame; in between each face's box moves on at its track's
#: last velocity (a folder of photos is detected photo by photo). Measured on 2 cores (benchmarks/detector_cost.py,
#: benchmarks/results/detector_cost-amd-epyc-vnni.json): a 720p panning clip with 3 faces runs at 59 / 128 / 139
#: steady FPS at N = 1 / 2 / 3 with every true face found; a clip of the real photos' tune half scores top-1 70.3 /
#: 70.7 / 71.5 %. The input size stays 640: a smaller one loses small faces (40 px in 720p: 34 % found at 640, 25 %
#: at 480). The cost: a new face or a cut is seen up to N − 1 frames late (docs/guides/camera.md).
DETECT_EVERY = 3
#: Context added around the detector's box, as a fraction of its side (runtime, training's detector crops,
#: explain). Chosen by benchmarks/in_the_wild.py on 1,500 faces of training's validation carve pasted into
#: frames at 80–220 px, ±20°, found by YuNet: accuracy on found faces with margin 0 / 0.05 / 0.1 — feredge-s
#: 66.5 / 65.7 / 65.3 %, feredge-n 66.4 / 66.1 / 63.5 % (benchmarks/results/in_the_wild-holdout.json).
FACE_MARGIN = 0.0
#: Rotate each face so the eyes are level before it is classified (off: the models were trained on unrotated
#: crops, and the GPU pipeline crops unrotated).
ALIGN = False
#: Largest faces kept per frame; 0 keeps every face (a crowd is treated alike by predict, run-camera, the API).
MAX_FACES = 0
#: Tracks in a stream: the weight of the newest frame in the smoothed probabilities (1 = no smoothing), how
#: many detections a track may go unseen before it ends, and the overlap that continues a track.
SMOOTH = 0.4
TRACK_MAX_UNSEEN = 10
TRACK_IOU = 0.3
#: Frames a stream reads before it stops; 0 reads until the source ends.
MAX_FRAMES = 0
#: The largest batch one inference takes: an engine's optimisation profile, ONNX Runtime's bound buffers and
#: the served model's batcher (one meaning wherever --max-batch appears).
MAX_BATCH = 32
#: INT8 calibration: class-balanced images from the training split (minus the validation carve), the range
#: method (measured best on FER2013: benchmarks/export_accuracy.py), and the accuracy INT8 may lose (points).
CALIB_SIZE = 512
CALIB_METHOD = "percentile"
CALIB_METHODS = ("entropy", "minmax", "percentile")
MAX_DROP = 1.0
#: The validation carve of the training split (seeded, stratified): training, calibration and the gate share it.
VAL_FRACTION = 0.1
SEED = 0
#: ONNX Runtime's intra-op threads; 0 lets it choose.
THREADS = 0
#: The split eval, bench and explain judge a prepared dataset on (FER2013: val = PublicTest).
SPLIT = "val"
#: How many confident mistakes explain shows per true class.
PER_CLASS = 6

SELECT_METRICS = ("accuracy", "mean_class_accuracy", "ferplus_accuracy", "ferplus_mean_class_accuracy")


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved next to each checkpoint."""

    model: str = "feredge-s"  # the architecture trained when none is named (the recipes name theirs)
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
    soft_labels: bool = False  # train on soft.npy (FER+ vote distributions; prepare with --ferplus)
    # with soft_labels: the soft labels' share of the label target, the rest the hard label
    soft_label_share: float = 1.0
    mixup: float = 0.0  # Beta(a, a) mixing strength; 0 disables
    cutmix: float = 0.0
    hflip: bool = True
    rotate: float = 10.0  # degrees
    translate: float = 0.1  # fraction of the side
    scale: tuple[float, float] = (0.9, 1.1)
    erasing: float = 0.25  # probability of one random-erasing rectangle
    camera_augment: float = 0.0  # share of images given camera-like exposure, contrast, blur, low resolution, noise
    detector_crops: float = 0.0  # share of images cut to the face detector's crop (needs `feredge data face-boxes`)
    ten_crop: bool = False  # train on all ten crops folded into the batch (vgg-a recipe)
    weighted_sampler: bool = False
    aux_weights: dict[str, float] = field(default_factory=dict)  # multi-task loss weights, emotion is 1
    emotion_weight: float = 1.0
    init: str = ""  # checkpoint whose weights start the run (fine-tuning / warm restart); "" = random init
    teacher: str = ""  # checkpoint(s) to distil from, comma-separated: an ensemble of their mean logits ("" = none)
    distill_weight: float = 0.5  # share of the loss given to matching the teacher (with a teacher)
    distill_temperature: float = 4.0
    # none: the teacher sees each augmented batch; ten-crop: its ten-crop logits of the clean images, computed once
    teacher_tta: str = "none"
    ema: float = 0.0  # decay of an exponential moving average of the weights, validated and saved instead; 0 = off
    val_fraction: float = VAL_FRACTION  # carved from the training split, seeded and stratified
    val_split: str = ""  # use a prepared split for validation instead of carving one
    select_metric: str = "accuracy"  # one of SELECT_METRICS: which validation figure picks the best epoch
    early_stop: int = 0  # stop after this many epochs without improvement; 0 = never
    seed: int = SEED
    deterministic: bool = False
    amp: bool = True  # only on CUDA
    # bf16 autocast on the CPU: off by default (it changes the arithmetic of a recipe); CPUs with AMX run the
    # model's step faster in bf16 (README, "Training")
    cpu_bf16: bool = False
    # NHWC; measured faster on CUDA and on AVX2 CPUs (feredge-s: 93 -> 109 img/s, benchmarks/train_throughput.py)
    channels_last: bool = True
    device: str = ""  # "" = auto (cuda when available, else cpu); --device auto is stored as ""
    max_steps_per_epoch: int = 0  # 0 = full epochs; >0 for smoke tests
    limit_train: int = 0  # use only the first N (stratified) training images; 0 = all


#: Range checks per field: (test, what was expected). A value outside would fail deep in torch or, worse,
#: train something other than what was asked for.
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: v >= 1, "a positive integer"),
    "batch_size": (lambda v: v >= 1, "a positive integer"),
    "lr": (lambda v: v >= 0, "a number ≥ 0"),
    "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, "a number ≥ 0"),
    "warmup_pct": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "label_smoothing": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "mixup": (lambda v: v >= 0, "a number ≥ 0"),
    "cutmix": (lambda v: v >= 0, "a number ≥ 0"),
    "erasing": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "camera_augment": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "detector_crops": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "val_fraction": (lambda v: 0 < v < 1, "a fraction in (0, 1)"),
    "distill_weight": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "ema": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "distill_temperature": (lambda v: v > 0, "a positive number"),
    "early_stop": (lambda v: v >= 0, "an integer ≥ 0"),
    "max_steps_per_epoch": (lambda v: v >= 0, "an integer ≥ 0"),
    "limit_train": (lambda v: v >= 0, "an integer ≥ 0"),
    "plateau_factor": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "scale": (lambda v: len(v) == 2 and 0 < v[0] <= v[1], "two numbers [low, high] with 0 < low ≤ high"),
    "optimizer": (lambda v: v in ("sgd", "adamw", "radam"), "sgd, adamw or radam"),
    "scheduler": (lambda v: v in ("onecycle", "cosine", "plateau", "step"), "onecycle, cosine, plateau or step"),
    "teacher_tta": (lambda v: v in ("none", "ten-crop"), "none or ten-crop"),
    "select_metric": (lambda v: v in SELECT_METRICS, " or ".join(SELECT_METRICS)),
    "soft_label_share": (lambda v: 0 <= v <= 1, "a share in [0, 1]"),
    "device": (lambda v: re.fullmatch(r"|auto|cpu|cuda(:\d+)?", v) is not None, "auto, cpu, cuda or cuda:N"),
}


def _coerce(default: Any, value: Any) -> Any:
    """``value`` as the type of ``default``; TypeError/ValueError when it is not one (1.5 is no integer)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError
        return value
    if isinstance(value, bool):
        raise TypeError
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return tuple(float(v) for v in value)
    if isinstance(default, int):
        if isinstance(value, float) and not value.is_integer() or isinstance(value, str):
            raise ValueError
        return int(value)
    if isinstance(default, float):
        if isinstance(value, str):
            raise ValueError
        return float(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise TypeError
        return value
    if isinstance(value, (dict, list)):
        raise TypeError
    return str(value)


def config_from_dict(values: dict[str, Any], where: str) -> TrainConfig:
    """Build a TrainConfig, naming ``where`` and the field when a key, type or range is wrong."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig()
    for key, value in values.items():
        if key not in fields:
            raise FeredgeError(f"{where}: unknown field '{key}' (known: {', '.join(sorted(fields))})")
        default = getattr(cfg, key)
        try:
            value = _coerce(default, value)
        except (TypeError, ValueError):
            raise FeredgeError(f"{where}: field '{key}' is {value!r}, expected {type(default).__name__}") from None
        check = _RANGES.get(key)
        if check and not check[0](value):
            raise FeredgeError(f"{where}: field '{key}' is {value!r}, expected {check[1]}")
        if key == "device" and value == DEVICE:
            value = ""  # the trainer resolves "" (cuda when available), so a saved run keeps one spelling
        setattr(cfg, key, value)
    return cfg


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file: a [train] table, or TrainConfig fields at the top level (not both)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise FeredgeError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise FeredgeError(f"{path}: is a folder, expected a TOML file") from None
    except UnicodeDecodeError:
        raise FeredgeError(f"{path}: not UTF-8 text (expected a TOML file)") from None
    except tomllib.TOMLDecodeError as exc:
        raise FeredgeError(f"{path}: invalid TOML ({exc})") from None
    if "train" not in data:
        tables = [k for k, v in data.items() if isinstance(v, dict) and k not in ("model_kwargs", "aux_weights")]
        if tables:
            raise FeredgeError(f"{path}: table [{tables[0]}] is not known; TrainConfig fields go in a [train] table "
                               "or at the top level")
        return data
    if not isinstance(data["train"], dict):
        raise FeredgeError(f"{path}: 'train' is {type(data['train']).__name__}, expected a table ([train])")
    others = [k for k in data if k != "train"]
    if others:
        raise FeredgeError(f"{path}: '{others[0]}' is outside the [train] table; put every field inside [train]")
    return data["train"]


def parse_set(pairs: Sequence[str]) -> dict[str, Any]:
    """--set key=value pairs; values parsed as JSON when they can be (numbers, booleans, lists)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise FeredgeError(f"--set {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """One wording for an option outside its choices, for the API and the commands alike."""
    if value not in choices:
        raise FeredgeError(f"{name} {value!r}: expected one of {', '.join(choices)}")


#: The runtime's range checks, written once: the API, the stream and the commands all call `check_ranges`.
RUNTIME_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "detect_every": (lambda v: v >= 1, "a positive integer"),
    "detect_max_side": (lambda v: v >= DETECT_MIN_SIDE,
                        f"at least {DETECT_MIN_SIDE} pixels (a smaller detector input finds no face)"),
    "max_faces": (lambda v: v >= 0, "0 (every face) or a positive integer"),
    "smooth": (lambda v: 0 < v <= 1, "0 < smooth ≤ 1 (1 = no smoothing)"),
    "track_max_unseen": (lambda v: v >= 0, "an integer ≥ 0"),
    "max_frames": (lambda v: v >= 0, "0 (until the source ends) or a positive count"),
    "margin": (lambda v: 0 <= v <= 1, "0 ≤ margin ≤ 1 (the share of the box added on each side)"),
    "max_batch": (lambda v: v >= 1, "a positive integer"),
    "calib_size": (lambda v: v >= 1, "a positive number of images"),
    "max_drop": (lambda v: v >= 0, "percentage points ≥ 0 (how much top-1 INT8 may lose)"),
    "threads": (lambda v: 0 <= v <= (os.cpu_count() or 1),
                f"0 (ONNX Runtime chooses) up to {os.cpu_count() or 1}, this machine's cores"),
}
#: Options that count something: 1.5 of them is refused rather than rounded or passed to a library.
RUNTIME_INTEGERS = ("detect_every", "detect_max_side", "max_faces", "track_max_unseen", "max_frames", "max_batch",
                    "calib_size", "threads")


def check_ranges(cli: bool = False, **values: Any) -> None:
    """Refuse a runtime option outside its range, named as the caller spells it (``--max-faces`` on the
    command line, ``max_faces`` in Python)."""
    for name, value in values.items():
        ok, expected = RUNTIME_RANGES[name]
        number = int if name in RUNTIME_INTEGERS else (int, float)
        if isinstance(value, bool) or not isinstance(value, number) or not ok(value):
            if name in RUNTIME_INTEGERS and not isinstance(value, int):
                expected = f"an integer, {expected}"
            shown = "--" + name.replace("_", "-") if cli else name
            raise FeredgeError(f"{shown} {value!r}: expected {expected}")
