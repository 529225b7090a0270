"""Parameter and multiply-accumulate counts, measured by running the model once."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of Conv/ConvTranspose/Linear layers for one input (batch 1).

    GFLOPs in the FER/ResNet literature are these MACs; ×2 gives arithmetic FLOPs.
    """
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def tconv_hook(m: nn.ConvTranspose2d, inp, _out):
        nonlocal total
        total += inp[0].numel() // inp[0].shape[0] * m.out_channels * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    hooks = {nn.Conv2d: conv_hook, nn.ConvTranspose2d: tconv_hook, nn.Linear: linear_hook}
    handles = [m.register_forward_hook(hooks[type(m)]) for m in model.modules() if type(m) in hooks]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def registry_rows(shipped: frozenset[str] | set[str] = frozenset()) -> list[dict]:
    """`feredge models` rows of every registered architecture, measured as exported (RepVGG branches folded).
    Built on the meta device: counts need shapes only, and skipping weight initialisation makes the listing
    about ten times faster (the same counts; tests/test_cli.py compares them with a real model)."""
    from feredge.models import create_model, list_models, model_info
    from feredge.models.nano import fuse_for_deploy

    rows = []
    for name in list_models():
        info = model_info(name)
        with torch.device("meta"):
            model = fuse_for_deploy(create_model(name))
        s = info.input_spec
        rows.append({"name": name, "input": f"{s.channels}x{s.size}x{s.size}", "params": count_params(model),
                     "gflops": count_macs(model, (s.channels, s.size, s.size)) / 1e9, "heads": info.heads,
                     "description": info.description, "shipped": name in shipped})
    return rows
