"""Shared fixtures and markers: gpu/trt tests skip with a reason where the hardware is missing."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from tests.support import make_fer_images

SHARED = Path(os.environ.get("FEREDGE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FER_TARBALL = SHARED / "data" / "fer2013-images.tar.gz"


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    gpu = _has_gpu()
    try:
        import tensorrt  # noqa: F401

        trt = True
    except ImportError:
        trt = False
    for item in items:
        if "gpu" in item.keywords and not gpu:
            item.add_marker(pytest.mark.skip(reason="no NVIDIA GPU on this machine"))
        if "trt" in item.keywords and not trt:
            item.add_marker(pytest.mark.skip(reason="TensorRT is not installed"))


@pytest.fixture(scope="session")
def fer_tree(tmp_path_factory) -> Path:
    """A tiny FER2013 image-folder tree (train/val × 7 emotions) of synthetic JPEG-free PNGs."""
    from PIL import Image

    from feredge.data.labels import CLASSES

    root = tmp_path_factory.mktemp("fer_tree")
    for split, n, seed in (("train", 24, 0), ("val", 6, 1)):
        images, labels = make_fer_images(n, seed)
        for i, (img, lab) in enumerate(zip(images, labels)):
            d = root / split / CLASSES[lab]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[..., 0]).save(d / f"{split}_{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def prepared_fer(fer_tree, tmp_path_factory) -> Path:
    from feredge.data import prepare

    out = tmp_path_factory.mktemp("prepared") / "fer"
    prepare("fer2013", fer_tree, out)
    return out


@pytest.fixture(scope="session")
def real_fer_prepared(tmp_path_factory):
    from feredge.data import prepare

    if not FER_TARBALL.is_file():
        pytest.skip(f"{FER_TARBALL} not present (FER2013 is not shipped with the project)")
    root = tmp_path_factory.mktemp("fer_real")
    with tarfile.open(FER_TARBALL) as tar:
        tar.extractall(root, filter="data")
    out = root / "prepared"
    prepare("fer2013", root / "fer2013", out, ferplus=root / "fer2013" / "ferplus_votes.csv")
    return out
