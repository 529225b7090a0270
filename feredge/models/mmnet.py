"""`mmnet`: 17-conv VGG backbone with per-stage multi-level aggregation and four heads (MMNet)."""

from __future__ import annotations

import torch
from torch import nn

from feredge.models._registry import InputSpec, register_model

IMAGENET = InputSpec(224, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
STAGES = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
FUSIONS = ("add", "avg", "max", "none")


def _fuse(raws: list[torch.Tensor], mode: str) -> torch.Tensor:
    """Combine a stage's raw (pre-BN) conv outputs."""
    if mode == "none":
        return raws[-1]
    if mode == "max":
        out = raws[0]
        for r in raws[1:]:
            out = torch.maximum(out, r)
        return out
    total = torch.stack(raws).sum(0)
    return total / len(raws) if mode == "avg" else total


class Stage(nn.Module):
    """k conv3×3 (no bias); intermediates feed on through BN→ReLU, the fused raw outputs replace the last."""

    def __init__(self, cin: int, cout: int, n: int, fuse: str):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False) for i in range(n))
        self.bns = nn.ModuleList(nn.BatchNorm2d(cout) for _ in range(n))
        self.fuse = fuse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raws = []
        for i, conv in enumerate(self.convs):
            raw = conv(x)
            raws.append(raw)
            if i < len(self.convs) - 1:
                x = torch.relu(self.bns[i](raw))
        return torch.max_pool2d(torch.relu(self.bns[-1](_fuse(raws, self.fuse))), 2)


def _head(n: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(512, 512, bias=False), nn.Dropout(0.5), nn.ReLU(inplace=True),
        nn.Linear(512, 256, bias=False), nn.Dropout(0.5), nn.ReLU(inplace=True),
        nn.Linear(256, n, bias=False),
    )


class MMNet(nn.Module):
    def __init__(self, num_classes: int = 7, fuse: str = "add", aux: dict[str, int] | None = None):
        super().__init__()
        if fuse not in FUSIONS:
            raise ValueError(f"fuse must be one of {FUSIONS}, got {fuse!r}")
        stages, cin = [], 3
        for n, cout in STAGES:
            stages.append(Stage(cin, cout, n, fuse))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.conv17 = nn.Sequential(nn.Conv2d(512, 512, 3, padding=1, bias=False), nn.BatchNorm2d(512),
                                    nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        sizes = {"emotion": num_classes, **(aux or {"age": 5, "race": 3, "gender": 3})}
        self.heads = nn.ModuleDict({k: _head(n) for k, n in sizes.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv17(self.stages(x))

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.features(x)
        return {k: head(z) for k, head in self.heads.items()}

    def forward(self, x: torch.Tensor, all_heads: bool = False):
        """Emotion logits; every head's logits with ``all_heads`` (a kwarg so DDP's forward syncs them)."""
        return self.forward_all(x) if all_heads else self.heads["emotion"](self.features(x))


@register_model("mmnet", IMAGENET, heads={"emotion": 7, "age": 5, "race": 3, "gender": 3},
                description="MMNet multi-level aggregation, multi-task (lucasxlu/MMNet)")
def mmnet(num_classes: int = 7, **kwargs) -> MMNet:
    return MMNet(num_classes, **kwargs)
