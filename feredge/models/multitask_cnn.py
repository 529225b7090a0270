"""`multitask-cnn`: the 50×50 multi-task CNN of arXiv 2110.15028 (emotion, gender, race, age)."""

from __future__ import annotations

import torch
from torch import nn

from feredge.models._registry import InputSpec, register_model


def _conv(cin: int, cout: int, k: int) -> list[nn.Module]:
    """conv → ELU → BN, the reference order (BN after the activation)."""
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.ELU(inplace=True), nn.BatchNorm2d(cout, eps=1e-3)]


class MultitaskCNN(nn.Module):
    def __init__(self, num_classes: int = 7, aux: dict[str, int] | None = None):
        super().__init__()
        self.features = nn.Sequential(
            *_conv(3, 64, 5), *_conv(64, 64, 5), nn.MaxPool2d(2), nn.Dropout(0.6),
            *_conv(64, 128, 3), *_conv(128, 128, 3), nn.MaxPool2d(2), nn.Dropout(0.5),
            *_conv(128, 256, 3), *_conv(256, 256, 3), nn.MaxPool2d(2), nn.Dropout(0.4),
            nn.Flatten(), nn.Linear(256 * 6 * 6, 128), nn.ELU(inplace=True), nn.BatchNorm1d(128, eps=1e-3),
            nn.Dropout(0.4),
        )
        sizes = {"emotion": num_classes, **(aux or {"gender": 3, "race": 3, "age": 5})}
        self.heads = nn.ModuleDict({k: nn.Linear(128, n) for k, n in sizes.items()})

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.features(x)
        return {k: head(z) for k, head in self.heads.items()}

    def forward(self, x: torch.Tensor, all_heads: bool = False):
        """Emotion logits; every head's logits with ``all_heads`` (a kwarg so DDP's forward syncs them)."""
        return self.forward_all(x) if all_heads else self.heads["emotion"](self.features(x))


@register_model("multitask-cnn", InputSpec(50, 3, (0.0,) * 3, (1 / 255,) * 3),
                heads={"emotion": 7, "gender": 3, "race": 3, "age": 5},
                description="multi-task Keras CNN of arXiv 2110.15028, raw 0-255 input")
def multitask_cnn(num_classes: int = 7, **kwargs) -> MultitaskCNN:
    return MultitaskCNN(num_classes, **kwargs)
