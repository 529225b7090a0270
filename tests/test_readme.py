"""The README's Python examples run as written (in a folder holding the photo and video they name)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
ROOT = Path(__file__).resolve().parents[1]
GROUP = ROOT / "feredge" / "media" / "group.jpg"


def python_api_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_python_api_examples_run(tmp_path):
    examples = python_api_examples()
    assert len(examples) == 3
    shutil.copy(GROUP, tmp_path / "photo.jpg")
    frame = cv2.resize(cv2.imread(str(GROUP)), (640, 426))
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 426))
    for _ in range(4):
        writer.write(frame)
    writer.release()
    here, namespace, out = os.getcwd(), {}, io.StringIO()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out):
            for code in examples:  # one namespace: later examples use what earlier ones made, as a reader would
                exec(compile(code, "README.md", "exec"), namespace)
    finally:
        os.chdir(here)
    printed = out.getvalue()
    assert "'label':" in printed and "happy" in printed
    assert namespace["probs"].shape == (2, 7) and np.allclose(namespace["probs"].sum(1), 1, atol=1e-4)
    assert namespace["frames"].frames == 4 and namespace["frames"].stats.corrupt == 0
