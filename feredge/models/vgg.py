"""`vgg-a`: the 4-stage VGG of arXiv 2105.03588 (usef-kh/fer) on 40×40 ten-crops."""

from __future__ import annotations

import torch
from torch import nn

from feredge.models._registry import InputSpec, register_model


def _stage(cin: int, cout: int) -> nn.Sequential:
    layers = []
    for c in (cin, cout):
        layers += [nn.Conv2d(c, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2, 2))


class VggA(nn.Module):
    """Conv→BN→ReLU pairs over 64/128/256/512 channels, then a 2048→4096→4096 head.

    Dropout sits before ReLU in the head, as in the reference code, and p=0.2 is its effective value.
    """

    def __init__(self, num_classes: int = 7, drop: float = 0.2):
        super().__init__()
        self.features = nn.Sequential(_stage(1, 64), _stage(64, 128), _stage(128, 256), _stage(256, 512))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(512 * 2 * 2, 4096), nn.Dropout(drop), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.Dropout(drop), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("vgg-a", InputSpec(40, 1), description="VGG variant, 40x40 ten-crops (arXiv 2105.03588)")
def vgg_a(num_classes: int = 7, **kwargs) -> VggA:
    return VggA(num_classes, **kwargs)
