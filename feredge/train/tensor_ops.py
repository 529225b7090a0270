"""Batch pre-processing and augmentation as tensor ops, so they run on the GPU next to the data."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from feredge.artifact import InputSpec

_GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def to_float(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 NHWC → float NCHW in [0, 1] with ``channels`` channels (gray↔RGB converted)."""
    return match_channels(images.permute(0, 3, 1, 2).float().div_(255), channels)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Float NCHW gray → RGB (repeat) or RGB → gray (luma); unchanged when it already matches."""
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    w = torch.tensor(_GRAY_WEIGHTS, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def normalize(x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Resize to the model's input size (bilinear) and apply its mean/std."""
    if x.shape[-1] != spec.size or x.shape[-2] != spec.size:
        x = F.interpolate(x, size=(spec.size, spec.size), mode="bilinear", align_corners=False)
    mean = torch.tensor(spec.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def ten_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """Four corners + centre and their mirrors: (N, C, H, W) → (N·10, C, crop, crop), crops of one image adjacent."""
    h, w = x.shape[-2:]
    top, left = (h - crop) // 2, (w - crop) // 2
    boxes = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), (top, left)]
    crops = [x[..., i:i + crop, j:j + crop] for i, j in boxes]
    crops += [c.flip(-1) for c in crops]
    return torch.stack(crops, 1).flatten(0, 1)


def random_affine(x: torch.Tensor, rotate: float, translate: float, scale: tuple[float, float],
                  hflip: bool, gen: torch.Generator, views: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image random rotation/translation/scale/flip in one grid_sample (zero fill).

    ``views`` (N, 3: scale, x offset, y offset in normalised coordinates) first cut a square out of each
    image — the detector's crop — which the random transform then moves about."""
    n = x.shape[0]
    rnd = lambda lo, hi: torch.rand(n, generator=gen, device=x.device) * (hi - lo) + lo  # noqa: E731
    angle = rnd(-rotate, rotate) * math.pi / 180
    s = rnd(*scale)
    flip = (torch.where(torch.rand(n, generator=gen, device=x.device) < 0.5, -1.0, 1.0) if hflip
            else torch.ones(n, device=x.device))
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([
        torch.stack([cos * flip, -sin, rnd(-translate, translate) * 2], 1),
        torch.stack([sin * flip, cos, rnd(-translate, translate) * 2], 1),
    ], 1)
    if views is not None:  # input = view(theta · output): scale the whole map, then shift
        theta = theta * views[:, :1, None]
        theta[:, :, 2] += views[:, 1:]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_camera(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """What camera frames do to a face that FER2013's curated crops rarely show, on a fraction p of the
    images (float NCHW in [0, 1]), each effect drawn independently per image:
    exposure (gamma 0.6–1.6) and contrast (×0.6–1.4 about the mean), then with probability ½ each a blur
    (Gaussian σ 0.3–1.5 px), a low-resolution round trip (down to 40–80 % of the side, then back: what a
    small face in a wide frame gives) and sensor noise (σ 0–0.04). Blur and resolution draw one value per
    batch (a single convolution / resize), the rest one per image."""
    n, c, h, w = x.shape
    dev = x.device
    rnd = lambda lo, hi: torch.rand(n, generator=gen, device=dev) * (hi - lo) + lo  # noqa: E731
    coin = lambda q: torch.rand(n, generator=gen, device=dev) < q  # noqa: E731
    apply = coin(p)
    gamma, contrast = rnd(math.log(0.6), math.log(1.6)).exp(), rnd(0.6, 1.4)
    sigma, shrink, noise = rnd(0.3, 1.5), rnd(0.4, 0.8), rnd(0.0, 0.04)
    blur, lowres, noisy = apply & coin(0.5), apply & coin(0.5), apply & coin(0.5)
    view = lambda t: t.view(-1, 1, 1, 1)  # noqa: E731
    y = x.clamp(0, 1).pow(view(torch.where(apply, gamma, torch.ones_like(gamma))))
    mean = y.mean((1, 2, 3), keepdim=True)
    y = (mean + (y - mean) * view(torch.where(apply, contrast, torch.ones_like(contrast)))).clamp(0, 1)
    if blur.any():  # separable Gaussian, 7 taps, one σ per batch: a plain convolution, cheap on a CPU too
        idx = blur.nonzero()[:, 0]
        taps = torch.arange(-3, 4, device=dev, dtype=x.dtype)
        k = torch.exp(-taps ** 2 / (2 * float(sigma[idx].mean()) ** 2))
        k = (k / k.sum()).repeat(c, 1)
        part = F.pad(y[idx], (3, 3, 3, 3), mode="replicate")
        part = F.conv2d(part, k.view(c, 1, 1, 7), groups=c)
        y[idx] = F.conv2d(part, k.view(c, 1, 7, 1), groups=c)
    if lowres.any():  # one size per batch keeps it a single resize
        idx = lowres.nonzero()[:, 0]
        side = max(4, round(h * float(shrink[idx].mean())))
        small = F.interpolate(y[idx], size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        y[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    if noisy.any():
        idx = noisy.nonzero()[:, 0]
        grain = torch.randn(y[idx].shape, generator=gen, device=dev, dtype=y.dtype) * view(noise[idx])
        y[idx] = (y[idx] + grain).clamp(0, 1)
    return torch.where(view(apply), y, x)  # the others exactly as they came


def random_erase(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Zero one random rectangle (2–33 % of the area, aspect 0.3–3.3) in a fraction p of the images."""
    n, _, h, w = x.shape
    dev = x.device
    area = (torch.rand(n, generator=gen, device=dev) * 0.31 + 0.02) * h * w
    log_r = torch.rand(n, generator=gen, device=dev) * (math.log(3.3) - math.log(0.3)) + math.log(0.3)
    eh = (area * log_r.exp()).sqrt().clamp(1, h)
    ew = (area / log_r.exp()).sqrt().clamp(1, w)
    y0 = torch.rand(n, generator=gen, device=dev) * (h - eh)
    x0 = torch.rand(n, generator=gen, device=dev) * (w - ew)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1))
              & (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + ew).view(-1, 1, 1)))
    apply = (torch.rand(n, generator=gen, device=dev) < p).view(-1, 1, 1)
    return x.masked_fill((inside & apply).unsqueeze(1), 0.0)


def mix(x: torch.Tensor, target: torch.Tensor, mixup: float, cutmix: float,
        gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp or CutMix (chosen at random when both are on) on inputs and soft targets."""
    if mixup <= 0 and cutmix <= 0:
        return x, target
    use_cut = cutmix > 0 and (mixup <= 0 or torch.rand(1, generator=gen, device=x.device).item() < 0.5)
    alpha = cutmix if use_cut else mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0], generator=gen, device=x.device)
    if use_cut:
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = (torch.randint(0, h, (1,), generator=gen, device=x.device).item(),
                  torch.randint(0, w, (1,), generator=gen, device=x.device).item())
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = lam * x + (1 - lam) * x[perm]
    return x, lam * target + (1 - lam) * target[perm]
