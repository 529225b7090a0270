"""The wheel carries what works offline (default model, its ONNX, YuNet, demo photo, kernel source and fatbin),
and `pip install ".[runtime]"` is enough for `feredge predict`: no torch."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> dict[str, list[str]]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}


def test_runtime_extra_pulls_no_torch():
    extras = _extras()
    runtime = _names(extras["runtime"])
    assert {"onnxruntime", "opencv-python-headless"} <= runtime
    assert not runtime & {"torch", "torchvision", "safetensors", "matplotlib"}
    for name in ("train", "export", "camera", "serve", "gpu"):
        assert name in extras, name
    self_extra = next(r for r in extras["dev"] if r.startswith("feredge["))  # dev pulls everything the tests need
    assert {"runtime", "train", "export", "camera", "serve"} <= set(self_extra[8:].split("]")[0].split(","))


@pytest.mark.slow
def test_wheel_ships_runtime_assets(tmp_path):
    pytest.importorskip("setuptools")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           str(ROOT), "-w", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("feredge-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("weights/feredge-s.safetensors", "weights/feredge-s.safetensors.json", "weights/feredge-s.onnx",
                  "weights/feredge-s.onnx.json", "weights/feredge-s.int8-cpu.onnx",
                  "weights/feredge-s.int8-cpu.onnx.json", "weights/face_detection_yunet_2023mar.onnx",
                  "weights/feredge-s.card.md", "weights/feredge-s.confusion.png", "media/group.jpg",
                  "cuda/kernels/preprocess.cu", "cuda/kernels/feredge_preprocess.fatbin"):
        assert f"feredge/{asset}" in names, asset
    # 20 MB, plus the CPU INT8 files (4.4 MB, about 4 MB deflated) and the FER2013 model (one fp16 ONNX, 7.7 MB)
    assert wheel.stat().st_size < 33e6


def test_predict_needs_only_the_runtime_extra(tmp_path):
    """`pip install ".[runtime]" && feredge predict`: every package outside core + runtime made unimportable."""
    pytest.importorskip("cv2")
    pytest.importorskip("onnxruntime")
    hidden = ("torch", "torchvision", "safetensors", "matplotlib", "onnx", "onnxsim", "tritonclient", "tensorrt")
    code = (f"import sys\nfor m in {hidden!r}: sys.modules[m] = None\n"
            "from feredge.commands.cli import main\n"
            f"sys.argv = ['feredge', 'predict', '--out', {str(tmp_path / 'p')!r}, '--json']\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "p" / "results.json").is_file() and (tmp_path / "p" / "group.annotated.jpg").is_file()
