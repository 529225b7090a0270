"""An exponential moving average of the trained weights, validated and saved instead of them (cfg.ema).

FER2013's noisy labels make single-step weights jumpy; their running average is steadier.
"""

from __future__ import annotations

import copy

import torch


class Ema:
    """A frozen copy of ``model`` whose weights follow the trained ones."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    def update(self, model: torch.nn.Module) -> None:
        """One step; the decay ramps up over the first updates so a fresh model is not averaged with noise."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for avg, now in zip(self.module.state_dict().values(), model.state_dict().values()):
                if avg.dtype.is_floating_point:
                    avg.lerp_(now, 1 - decay)
                else:
                    avg.copy_(now)
