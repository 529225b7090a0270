"""`feredge-n`: the nano model for CPUs and small Jetsons, chosen by measured ONNX Runtime latency.

Plain 3×3 convolutions and ReLU only — the fastest ops per MAC in ONNX Runtime's CPU kernels and in
TensorRT — downsampling 48→24→12 in the first two convolutions, so the rest run at 12×12 and 6×6.
Each convolution trains as a RepVGG block (3×3 + 1×1 + identity branches, each with BN) for the
optimisation benefit of a multi-branch net, and is folded into one 3×3 convolution with bias before
export (`fuse_for_deploy`), so inference pays for a plain conv stack. Widths came from
`benchmarks/nano_latency.py` (2-core AVX2, ORT batch 1).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from feredge.models._registry import register_model
from feredge.models.edge import FER_GRAY


def _fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv kernel (no bias) followed by ``bn`` as one kernel and bias."""
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepBlock(nn.Module):
    """3×3 conv + 1×1 conv + identity (when shapes allow), each with BN, summed, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride
        self.conv3 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn_id = nn.BatchNorm2d(cout) if stride == 1 and cin == cout else None
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return torch.relu(self.fused(x))
        y = self.bn3(self.conv3(x)) + self.bn1(self.conv1(x))
        if self.bn_id is not None:
            y = y + self.bn_id(x)
        return torch.relu(y)

    @torch.no_grad()
    def fuse(self) -> None:
        """Replace the branches by the one 3×3 conv with bias that computes the same (eval-mode BN)."""
        k3, b3 = _fold_bn(self.conv3.weight, self.bn3)
        k1, b1 = _fold_bn(nn.functional.pad(self.conv1.weight, [1, 1, 1, 1]), self.bn1)
        kernel, bias = k3 + k1, b3 + b1
        if self.bn_id is not None:
            ident = torch.zeros_like(self.conv3.weight)
            ident[torch.arange(self.cout), torch.arange(self.cin), 1, 1] = 1.0
            ki, bi = _fold_bn(ident, self.bn_id)
            kernel, bias = kernel + ki, bias + bi
        conv = nn.Conv2d(self.cin, self.cout, 3, self.stride, 1, bias=True).to(kernel.device)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        self.fused = conv
        del self.conv3, self.bn3, self.conv1, self.bn1, self.bn_id


class NanoNet(nn.Module):
    def __init__(self, num_classes: int = 7, widths: tuple[int, ...] = (32, 64, 64, 64, 128, 128, 128),
                 strides: tuple[int, ...] = (2, 2, 1, 1, 2, 1, 1), drop: float = 0.1, in_chans: int = 1):
        super().__init__()
        if len(widths) != len(strides):
            raise ValueError(f"widths {widths} and strides {strides} differ in length")
        blocks, cin = [], in_chans
        for w, s in zip(widths, strides):
            blocks.append(RepBlock(cin, w, s))
            cin = w
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def fuse_for_deploy(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every RepBlock folded; other models come back as an eval-mode copy."""
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        if isinstance(m, RepBlock) and m.fused is None:
            m.fuse()
    return model


@register_model("feredge-n", FER_GRAY, description="feredge nano: RepVGG-trained plain 3x3 convs, fastest on CPU")
def feredge_n(num_classes: int = 7, **kwargs) -> NanoNet:
    return NanoNet(num_classes, **kwargs)
