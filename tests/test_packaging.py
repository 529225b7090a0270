"""The wheel carries what works offline: default model, its ONNX, YuNet, demo photo, kernel source and fatbin."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_runtime_assets(tmp_path):
    pytest.importorskip("setuptools")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           str(ROOT), "-w", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("feredge-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("weights/feredge-s.safetensors", "weights/feredge-s.safetensors.json", "weights/feredge-s.onnx",
                  "weights/feredge-s.onnx.json", "weights/face_detection_yunet_2023mar.onnx", "weights/feredge-s.card.md",
                  "weights/feredge-s.confusion.png", "media/group.jpg",
                  "kernels/preprocess.cu", "kernels/feredge_preprocess.fatbin"):
        assert f"feredge/{asset}" in names, asset
    assert wheel.stat().st_size < 20e6
