"""`feredge-s`: feredge's edge model for 48×48 grayscale faces.

A compact pre-activation-free ResNet: a stride-2 stem takes 48→24 early (the full-resolution stage
is where FLOPs go), then four stages of two BasicBlocks. Only Conv/BN/ReLU/Add/GlobalAvgPool/Gemm,
so TensorRT fuses everything and INT8 Q/DQ placement is simple. ``widths``, ``depths`` and ``se`` (squeeze-
excitation, off by default: it adds Sigmoid/Mul) are the knobs the campaign's architecture proxies turn.
"""

from __future__ import annotations

import torch
from torch import nn

from feredge.models._registry import InputSpec, register_model

FER_GRAY = InputSpec(48, 1, (0.5,), (0.25,))


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]


class SqueezeExcite(nn.Module):
    """Channel gates from the block's own global average (SENet): cheap, and only Conv/ReLU/Sigmoid/Mul."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, se: int = 0):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, stride), nn.ReLU(inplace=True), *_conv_bn(cout, cout))
        nn.init.zeros_(self.body[-1].weight)  # each block starts as the identity (the gate of zeros is zeros)
        if se:
            self.body.append(SqueezeExcite(cout, se))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(*_conv_bn(cin, cout, stride, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _check_knobs(widths: tuple[int, ...], depths: tuple[int, ...], stem: int, drop: float, se: int) -> None:
    """Refuse knobs that would otherwise build a different network silently (zip drops unmatched stages)."""
    for name, values in {"widths": widths, "depths": depths}.items():
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise ValueError(f"{name} must be a non-empty list of positive integers, got {values!r}")
    if len(widths) != len(depths):
        raise ValueError(f"widths and depths must have one entry per stage, got {len(widths)} and {len(depths)}")
    for name, value, least in (("stem", stem, 1), ("se", se, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an integer >= {least} (se 0 is off), got {value!r}")
    if not 0 <= drop < 1:
        raise ValueError(f"drop must be in [0, 1), got {drop!r}")


class EdgeNet(nn.Module):
    def __init__(self, num_classes: int = 7, widths: tuple[int, ...] = (48, 96, 192, 256),
                 depths: tuple[int, ...] = (2, 2, 2, 2), stem: int = 32, drop: float = 0.3, in_chans: int = 1,
                 se: int = 0):
        super().__init__()
        _check_knobs(widths, depths, stem, drop, se)
        layers: list[nn.Module] = [*_conv_bn(in_chans, stem), nn.ReLU(inplace=True),
                                   *_conv_bn(stem, stem, 2), nn.ReLU(inplace=True)]
        cin = stem
        for i, (w, d) in enumerate(zip(widths, depths)):
            for j in range(d):
                layers.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1, se))
                cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model("feredge-s", FER_GRAY, description="feredge edge ResNet for 48x48 gray faces (TensorRT-friendly)")
def feredge_s(num_classes: int = 7, **kwargs) -> EdgeNet:
    return EdgeNet(num_classes, **kwargs)
