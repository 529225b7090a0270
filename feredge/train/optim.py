"""The optimiser and learning-rate schedule a TrainConfig names."""

from __future__ import annotations

import torch

from feredge.config import TrainConfig
from feredge.errors import FeredgeError


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Weight decay on weights only: decaying biases and BN scales only hurts."""
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "radam":
        return torch.optim.RAdam(groups, lr=cfg.lr, decoupled_weight_decay=True)
    raise FeredgeError(f"field 'optimizer' is {cfg.optimizer!r}, expected sgd, adamw or radam")


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps: int):
    """Per-step schedulers (onecycle, cosine) or per-epoch ones (plateau on val accuracy, step)."""
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps + 1,
                                                   pct_start=cfg.warmup_pct, div_factor=25, final_div_factor=1e3)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * steps, eta_min=cfg.lr * 1e-3)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "max", cfg.plateau_factor, cfg.plateau_patience,
                                                          min_lr=1e-6)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, cfg.step_size, cfg.step_gamma)
    raise FeredgeError(f"field 'scheduler' is {cfg.scheduler!r}, expected onecycle, cosine, plateau or step")
