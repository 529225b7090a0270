"""The seed projects' recipes as named presets (overrides of TrainConfig defaults)."""

from __future__ import annotations

from typing import Any

from feredge.errors import FeredgeError

RECIPES: dict[str, dict[str, Any]] = {
    # arXiv 2105.03588: SGD-Nesterov, RLRP on val accuracy, ten-crop training, 300 epochs, bs 64.
    "vgg-a": dict(model="vgg-a", optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4,
                  scheduler="plateau", plateau_factor=0.75, plateau_patience=5, epochs=300, batch_size=64,
                  label_smoothing=0.0, ten_crop=True, rotate=10.0, translate=0.2, scale=(0.8, 1.2), erasing=0.5),
    # Residual Masking Network: RAdam 1e-4, wd 1e-3, RLRP ×0.1 patience 2, ≤50 epochs, stop after 8 flat.
    "rmn": dict(model="resmasking", optimizer="radam", lr=1e-4, weight_decay=1e-3, scheduler="plateau",
                plateau_factor=0.1, plateau_patience=2, epochs=50, early_stop=8, batch_size=48,
                label_smoothing=0.0, rotate=30.0, translate=0.0, scale=(1.0, 1.0), erasing=0.0),
    # MMNet: SGD 0.01, wd 5e-3, StepLR(40, 0.1), 200 epochs, weighted sampler, loss 3·emo + age + race + gender.
    "mmnet": dict(model="mmnet", optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-3,
                  scheduler="step", step_size=40, step_gamma=0.1, epochs=200, batch_size=32, weighted_sampler=True,
                  emotion_weight=3.0, aux_weights={"age": 1.0, "race": 1.0, "gender": 1.0},
                  label_smoothing=0.0, rotate=30.0, translate=0.0, scale=(1.0, 1.0), erasing=0.0,
                  select_metric="mean_class_accuracy"),
    # arXiv 2110.15028: Adam 3e-4, RLRP ×0.2 patience 5, early stop 10, 50 epochs, bs 32, weights 2/0.1/1.5/4.
    "multitask-cnn": dict(model="multitask-cnn", optimizer="adamw", lr=3e-4, weight_decay=0.0, scheduler="plateau",
                          plateau_factor=0.2, plateau_patience=5, early_stop=10, epochs=50, batch_size=32,
                          emotion_weight=2.0, aux_weights={"gender": 0.1, "race": 1.5, "age": 4.0},
                          label_smoothing=0.0, hflip=False, rotate=0.0, translate=0.0, scale=(1.0, 1.0), erasing=0.0),
    # feredge-s: one-cycle SGD-Nesterov, label smoothing, affine + flip + erasing, FER+ soft labels when present.
    "feredge-s": dict(model="feredge-s", optimizer="sgd", lr=0.1, nesterov=True, weight_decay=5e-4,
                      scheduler="onecycle", epochs=60, batch_size=128, label_smoothing=0.1, soft_labels=False,
                      mixup=0.0, erasing=0.25),
    # feredge-n: as feredge-s with lighter regularisation (a 0.5 M-parameter net under-fits before it over-fits).
    "feredge-n": dict(model="feredge-n", optimizer="sgd", lr=0.1, nesterov=True, weight_decay=3e-4,
                      scheduler="onecycle", epochs=60, batch_size=128, label_smoothing=0.1, soft_labels=False,
                      mixup=0.0, erasing=0.15),
}


def recipe(name: str) -> dict[str, Any]:
    if name not in RECIPES:
        raise FeredgeError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    return dict(RECIPES[name])
