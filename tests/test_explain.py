"""feredge explain: Grad-CAM maps of the right shape and range, and the image and split grids written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from feredge.commands.cli import cli
from tests.support import SMALL

GROUP = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"


def test_grad_cam_maps_and_target_layer():
    import torch

    from feredge.commands.explain import grad_cam, target_layer
    from feredge.models import create_model

    torch.manual_seed(0)
    for name in ("feredge-s", "feredge-n"):
        model = create_model(name)
        assert target_layer(model) is model.features[-1]
        cams, logits = grad_cam(model, torch.randn(3, 1, 48, 48))
        assert cams.shape == (3, 48, 48) and logits.shape == (3, 7)
        peaks = cams.max((1, 2))
        assert cams.min() >= 0 and np.all(np.isclose(peaks, 1.0, atol=1e-5) | (peaks == 0))  # normalised per map


def test_cli_explain_image_and_split(prepared_fer, tmp_path):
    from feredge.config import config_from_dict
    from feredge.train.trainer import train

    train(config_from_dict(dict(data=str(prepared_fer), out=str(tmp_path / "run"), epochs=1, batch_size=16,
                                model_kwargs=SMALL,
                                val_fraction=0.25, device="cpu"), "test"))
    ckpt = tmp_path / "run" / "best.safetensors"
    result = CliRunner().invoke(cli, ["explain", str(GROUP), "--model", str(ckpt), "--data", str(prepared_fer),
                                      "--per-class", "2", "--out", str(tmp_path / "ex")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "ex").iterdir()) == ["group.gradcam.png", "mistakes-val.png"]


@pytest.mark.parametrize("args, message", [
    ([], "give images to explain, or a prepared dataset"),
    ([str(GROUP), "--model", "feredge/weights/feredge-s.onnx"], "Grad-CAM needs a torch checkpoint"),
])
def test_explain_errors(args, message):
    result = CliRunner().invoke(cli, ["explain", *args])
    assert result.exit_code != 0 and message in result.output
