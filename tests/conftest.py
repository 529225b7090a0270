"""Shared fixtures and markers: gpu/trt tests skip with a reason where the hardware is missing."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from tests.support import SMALL, make_fer_images

SHARED = Path(os.environ.get("FEREDGE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FER_TARBALL = SHARED / "data" / "fer2013-images.tar.gz"


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _importable(*names: str) -> bool:
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in names)


def pytest_collection_modifyitems(config, items):
    gpu = _has_gpu()
    trt = _importable("tensorrt")
    rtx = _importable("tensorrt_rtx", "tensorrt_rtx_bindings")
    for item in items:
        if "gpu" in item.keywords and not gpu:
            item.add_marker(pytest.mark.skip(reason="no NVIDIA GPU on this machine"))
        if "trt" in item.keywords and not trt:
            item.add_marker(pytest.mark.skip(reason="TensorRT is not installed"))
        if "rtx" in item.keywords and not rtx:
            item.add_marker(pytest.mark.skip(reason="TensorRT for RTX is not installed (pip install 'feredge[rtx]')"))


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


#: A model small enough to train in seconds on a CPU (exports and engines of it are tested).


@pytest.fixture(scope="session")
def tiny_checkpoint(prepared_fer, tmp_path_factory) -> Path:
    """feredge-s at the tiny widths (tests/support.py), 4 CPU epochs on the synthetic faces: trained once per
    test run and shared by the export tests."""
    from feredge.config import config_from_dict
    from feredge.train.trainer import train

    out = tmp_path_factory.mktemp("ckpt")
    train(config_from_dict(dict(data=str(prepared_fer), out=str(out), model_kwargs=SMALL, epochs=4, batch_size=16,
                                lr=0.1, val_fraction=0.25, device="cpu"), "test"))
    return out / "best.safetensors"


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint exported once per test run (fp32 and fp16 ONNX): shared by the runtime and bench tests."""
    from feredge.commands.export import ExportOptions, export

    out = tmp_path_factory.mktemp("tiny_export")
    export(tiny_checkpoint, ExportOptions(out=out, fp16=True))
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
