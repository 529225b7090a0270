"""Camera-like augmentation: reproducible from the generator, leaves the images it skips untouched, stays
in [0, 1], and changes what it is asked to change."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from feredge.train import tensor_ops as ops  # noqa: E402


def test_random_camera_is_seeded_bounded_and_selective():
    x = torch.rand(256, 1, 48, 48)
    a = ops.random_camera(x, 0.5, torch.Generator().manual_seed(3))
    b = ops.random_camera(x, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    changed = (a != x).flatten(1).any(1).float().mean().item()
    assert 0.4 < changed < 0.6  # about p of the images, each changed at least by exposure or contrast
    assert torch.equal(ops.random_camera(x, 0.0, torch.Generator().manual_seed(3)), x)


def test_random_camera_softens_edges_in_colour_images_too():
    edge = torch.zeros(64, 3, 48, 48)
    edge[:, 0, :, 24:] = 1.0  # a hard edge in the first channel only
    y = ops.random_camera(edge, 1.0, torch.Generator().manual_seed(0))
    assert y.shape == edge.shape
    sharpness = (y[:, 0, :, 24] - y[:, 0, :, 23]).abs().mean().item()
    assert sharpness < 0.9  # blurred or resized images soften the edge
