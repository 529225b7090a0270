"""`resmasking`: ResNet-34 with four U-Net masking blocks, x·(1+M(x)) (Residual Masking Network)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from feredge.errors import CheckpointError
from feredge.models._registry import InputSpec, register_model
from feredge.models.checkpoint import load_into, read_state_dict


class Block(nn.Module):
    """ResNet BasicBlock with a 1×1 projection shortcut; its last BN starts at zero."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, stride=2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Mask(nn.Module):
    """U-Net of depth d over channels C·2^i; the output is a softmax over channels."""

    def __init__(self, channels: int, depth: int):
        super().__init__()
        f = [channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(Block(f[i], f[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(_up(f[i + 1], f[i]) for i in range(depth - 1, 0, -1))
        self.merge = nn.ModuleList(Block(f[i + 1], f[i]) for i in range(depth - 1, 0, -1))
        self.out = Block(f[1], f[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else torch.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.ups, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], 1))
        return torch.softmax(self.out(x), dim=1)


class ResMasking(nn.Module):
    def __init__(self, num_classes: int = 7, pretrained: str | Path | None = None, drop: float = 0.4):
        super().__init__()
        from torchvision.models import resnet34

        trunk = resnet34(weights=None)
        if pretrained is not None:
            load_trunk(trunk, Path(pretrained))
        self.stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool)
        self.layers = nn.ModuleList([trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4])
        self.masks = nn.ModuleList(Mask(c, d) for c, d in ((64, 4), (128, 3), (256, 2), (512, 1)))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer, mask in zip(self.layers, self.masks):
            x = layer(x)
            x = x * (1 + mask(x))
        return self.head(x)


def load_trunk(trunk: nn.Module, path: Path) -> None:
    """Load ImageNet ResNet-34 weights from a local file (safetensors, or a state dict read weights-only)."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    state.update({k: v for k, v in trunk.state_dict().items() if k.startswith("fc.")})
    try:
        load_into(trunk, state, str(path))
    except CheckpointError as exc:
        raise CheckpointError(f"not a torchvision resnet34 state dict: {exc}") from None


@register_model("resmasking", InputSpec(224, 3, (0.0,) * 3, (1.0,) * 3),
                description="Residual Masking Network, ResNet-34 trunk (ICPR 2020); --pretrained FILE for ImageNet")
def resmasking(num_classes: int = 7, **kwargs) -> ResMasking:
    return ResMasking(num_classes, **kwargs)
