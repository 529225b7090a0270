"""Weight soups: fine-tunes of one checkpoint averaged into one model of the same size and speed.

Fine-tunes of one starting point with different hyper-parameters stay in one basin of the loss, and the
average of their weights is often more accurate than the best of them (Wortsman et al. 2022, "Model
soups") — accuracy a nano model can gain without paying a microsecond at inference. The greedy soup adds
ingredients best-first and keeps each only when validation accuracy does not drop, so a poor ingredient
cannot make the soup worse than its best member on validation. That guarantee is also a bias: the carve
that chose the ingredients flatters their soup. With ``holdout`` the choice is made on part of the carve and
the soup is also reported on the rest, images that chose nothing, for an honest ship decision.

A soup can itself be an ingredient: it counts as the fine-tunes it kept, so adding new fine-tunes to a
shipped soup continues that soup (the average of all its fine-tunes) instead of halving their weight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from feredge.artifact import Artifact, file_sha256, sidecar_path
from feredge.config import config_from_dict
from feredge.data.splits import stratified_holdout, train_val_splits
from feredge.errors import FeredgeError
from feredge.metrics import metrics
from feredge.models import create_model
from feredge.models.checkpoint import load_into, read_meta, read_state_dict
from feredge.train import tensor_ops as ops
from feredge.train.checkpoint import save_checkpoint
from feredge.train.inference import predict_logits
from feredge.train.run_folder import PATH_SETTINGS, same_files

# What every ingredient must share: the same network, the same starting point and the same validation carve.
SHARED_CONFIG = ("model", "model_kwargs", "init", "data", "val_fraction", "val_split", "seed", "limit_train")


def average(states: list[dict[str, torch.Tensor]], weights: list[int] | None = None) -> dict[str, torch.Tensor]:
    """Element-wise (weighted) mean of floating-point tensors; counters (BN's num_batches_tracked) take the
    largest."""
    w = torch.tensor([float(x) for x in weights or [1] * len(states)])
    w = w / w.sum()
    out = {}
    for key in states[0]:
        values = [s[key] for s in states]
        if values[0].dtype.is_floating_point:
            out[key] = torch.tensordot(w, torch.stack([v.float() for v in values]), dims=1)
        else:
            out[key] = torch.stack(values).max(0).values
    return out


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, images: np.ndarray, spec, batch_size: int = 256) -> None:
    """Re-estimate every BatchNorm's running mean/variance on ``images`` (uint8 NHWC).

    Averaged weights no longer match averaged running statistics exactly; a pass over clean training
    images gives the soup statistics of its own. Each batch is weighted by its size, so the mean is the
    images' exact mean (the variance: the size-weighted mean of the batches' variances).
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
    model.train()
    for start in range(0, len(images), batch_size):
        x = ops.to_float(torch.from_numpy(np.array(images[start:start + batch_size])), spec.channels)
        for m in norms:
            m.momentum = len(x) / (start + len(x))  # running = running·seen/total + batch·n/total
        model(ops.normalize(x, spec))
    for m in norms:
        m.momentum = 0.1  # PyTorch's default, for any later training of the soup
    model.eval()


def _same_setting(key: str, mine, theirs) -> bool:
    """Paths (runs saved before settings were stored absolute) are the same file however they were typed."""
    if key in PATH_SETTINGS and mine and theirs:
        return same_files(mine, theirs)
    return mine == theirs


def _check_ingredients(paths: list[Path]) -> list[Artifact]:
    metas = [read_meta(p) for p in paths]
    for path, meta in zip(paths, metas):
        if not isinstance(meta.details.get("config"), dict):
            raise FeredgeError(f"{sidecar_path(Path(path))}: missing field 'details.config' (the training "
                               "settings); soup ingredients must be checkpoints saved by `feredge train`")
    first = metas[0]
    for path, meta in zip(paths[1:], metas[1:]):
        if meta.classes != first.classes or meta.input_spec != first.input_spec:
            raise FeredgeError(f"{path}: classes or input differ from {paths[0]}'s; a soup needs one model")
        for key in SHARED_CONFIG:
            mine, theirs = meta.details["config"].get(key), first.details["config"].get(key)
            if not _same_setting(key, mine, theirs):
                raise FeredgeError(f"{path}: config field '{key}' is {mine!r}, {paths[0]} has {theirs!r}; soup "
                                   "ingredients must be fine-tunes of one checkpoint on one validation carve")
    return metas


def soup_weight(meta: Artifact) -> int:
    """How many fine-tunes a checkpoint stands for: a soup's kept ingredients (themselves counted), else 1."""
    soup = meta.details.get("soup")
    return sum(i.get("weight", 1) for i in soup["ingredients"] if i["kept"]) if soup else 1


def make_soup(paths: list[Path], out: Path, greedy: bool = True, bn: bool = False,
              data: Path | None = None, holdout: float = 0.0, progress: Callable[[str], None] = print) -> dict:
    """Average ``paths`` (greedily or all of them), validate on the ingredients' carve, save to ``out``.

    ``holdout`` (0 ≤ h < 1): the greedy pass sees only 1 − h of the carve (stratified, seeded); the rest
    reports the soup and each ingredient as ``report_accuracy``.
    """
    if len(paths) < 2:
        raise FeredgeError("a soup needs at least two checkpoints")
    if not 0 <= holdout < 1:
        raise FeredgeError(f"holdout: expected a fraction of the validation carve, 0 ≤ h < 1, got {holdout}")
    if len(set(map(Path.resolve, map(Path, paths)))) != len(paths):
        raise FeredgeError("the same checkpoint is named twice; each ingredient counts once")
    metas = _check_ingredients(paths)
    cfg_dict = dict(metas[0].details["config"])
    if data is not None:
        cfg_dict["data"] = str(data)
    cfg = config_from_dict({k: v for k, v in cfg_dict.items() if k != "out"}, str(paths[0]))
    train, val, _ = train_val_splits(cfg)
    spec, crop = metas[0].input_spec, metas[0].details.get("eval_crop")
    model = create_model(cfg.model, num_classes=len(metas[0].classes), **cfg.model_kwargs)
    train_images, val_images, val_labels = np.asarray(train.images), np.asarray(val.images), np.asarray(val.labels)
    classes = list(metas[0].classes)
    choice, report = stratified_holdout(val_labels, holdout, cfg.seed) if holdout else (np.arange(len(val_labels)),
                                                                                        None)
    if not len(choice) or (report is not None and not len(report)):
        raise FeredgeError(f"holdout {holdout}: leaves {len(choice)} of the carve's {len(val_labels)} images to choose "
                           f"and {len(val_labels) - len(choice)} to report on; both parts need images")

    def score(state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
        """Metrics of ``state`` on the whole carve, the part that chooses and the part that reports, and the
        weights they were measured on (BN re-estimated if asked)."""
        load_into(model, state, str(out))
        if bn:
            recalibrate_bn(model, train_images, spec)
        measured = {k: v.clone() for k, v in model.state_dict().items()}
        logits = predict_logits(model, val_images, spec, "none", crop)
        parts = {"carve": metrics(logits, val_labels, classes),
                 "choice": metrics(logits[choice], val_labels[choice], classes)}
        if report is not None:
            parts["report"] = metrics(logits[report], val_labels[report], classes)
        return parts, measured

    def shown(parts: dict) -> str:
        held_out = f" (held out: {parts['report']['accuracy']:.2%})" if "report" in parts else ""
        return f"{parts['choice']['accuracy']:.2%}{held_out}"

    states = [read_state_dict(p) for p in paths]  # average() computes in float32, whatever the files store
    weights = [soup_weight(m) for m in metas]

    def mix(chosen: list[int]) -> dict[str, torch.Tensor]:
        return average([states[i] for i in chosen], [weights[i] for i in chosen])

    scored = [score(s)[0] for s in states]
    alone = [parts["choice"]["accuracy"] for parts in scored]
    for p, parts, n in zip(paths, scored, weights):
        note = f" (a soup: counts as its {n} fine-tunes)" if n > 1 else ""
        progress(f"ingredient {p}: validation {shown(parts)}{note}")
    order = sorted(range(len(paths)), key=lambda i: -alone[i])
    kept = [order[0]] if greedy else order
    best, soup = score(mix(kept))
    if greedy:
        for i in order[1:]:
            trial, measured = score(mix(kept + [i]))
            accepted = trial["choice"]["accuracy"] >= best["choice"]["accuracy"]
            progress(f"+ {paths[i]}: soup of {len(kept) + 1} → {shown(trial)} ({'kept' if accepted else 'left out'})")
            if accepted:
                kept, best, soup = kept + [i], trial, measured
    model.load_state_dict(soup)  # the weights ``best`` was measured on: no second average or BN pass
    ingredients = [{"checkpoint": str(p), "sha256": file_sha256(Path(p)),
                    "val_accuracy": scored[i]["carve"]["accuracy"],
                    **({"report_accuracy": scored[i]["report"]["accuracy"]} if holdout else {}),
                    "kept": i in kept, "weight": weights[i]} for i, p in enumerate(paths)]
    carve = best["carve"]
    info = dataclasses.replace(metas[0], versions={**metas[0].versions, "torch": torch.__version__}, details={
        **metas[0].details, "epoch": None,
        "metrics": {"val_accuracy": carve["accuracy"], "val_mean_class_accuracy": carve["mean_class_accuracy"]},
        "soup": {"method": "greedy" if greedy else "uniform", "bn_recalibrated": bn, "ingredients": ingredients,
                 **({"holdout": holdout, "report_accuracy": best["report"]["accuracy"]} if holdout else {})}})
    save_checkpoint(model, Path(out), info)
    result = {"val_accuracy": carve["accuracy"], "val_mean_class_accuracy": carve["mean_class_accuracy"],
              "best_ingredient_val_accuracy": max(parts["carve"]["accuracy"] for parts in scored),
              "kept": [str(paths[i]) for i in kept]}
    if holdout:
        result.update(holdout=holdout, choice_accuracy=best["choice"]["accuracy"],
                      best_ingredient_choice_accuracy=max(alone),
                      report_accuracy=best["report"]["accuracy"],
                      best_ingredient_report_accuracy=max(parts["report"]["accuracy"] for parts in scored))
    return result
