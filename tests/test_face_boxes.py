"""Detector crops for training: YuNet boxes on pasted faces, and the training crop equals the runtime's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from feredge.commands.cli import cli
from feredge.config import FACE_MARGIN
from feredge.data.face_boxes import FILE, crop_views
from feredge.data.store import Dataset, Split, load_split, save
from feredge.train import tensor_ops as ops
from feredge.vision.preprocess import preprocess_frame_cv2

GROUP = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"


def _smooth_face(seed: int = 0) -> np.ndarray:
    """A 48×48 gray image without sharp edges, so two bilinear samplers agree closely."""
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (6, 6), dtype=np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("margin", [FACE_MARGIN, 0.1])
@pytest.mark.parametrize("box", [(5.0, -0.5, 38.0, 49.0), (10.0, 12.0, 24.0, 20.0), (0.0, 0.0, 48.0, 40.0)])
def test_training_cuts_the_same_crop_as_the_runtime(box, margin):
    """ops.random_affine with crop_views and no random motion reproduces preprocess_frame_cv2's crop."""
    import cv2

    face = _smooth_face()
    runtime = preprocess_frame_cv2(cv2.cvtColor(face, cv2.COLOR_GRAY2BGR), np.array([box]), 48, 1, (0.0,), (1.0,),
                                   margin)[0, 0]
    x = ops.to_float(torch.from_numpy(face[None, :, :, None]), 1)
    views = torch.from_numpy(crop_views(np.array([box]), 48, margin))
    trained = ops.random_affine(x, 0.0, 0.0, (1.0, 1.0), False, torch.Generator().manual_seed(0), views)[0, 0].numpy()
    assert np.abs(trained - runtime)[2:-2, 2:-2].max() < 0.03  # both zero-fill outside the image
    identity = ops.random_affine(x, 0.0, 0.0, (1.0, 1.0), False, torch.Generator().manual_seed(0))[0, 0].numpy()
    assert np.abs(identity - trained).mean() > 0.01  # the crop moved the face


def _faces_dataset(root: Path) -> Path:
    """The bundled group photo's three faces as 48×48 crops, plus one image of noise."""
    import cv2

    from feredge.vision.detector import YuNetDetector

    frame = cv2.imread(str(GROUP))
    boxes, _ = YuNetDetector().detect(frame)
    crops = preprocess_frame_cv2(frame, boxes, 48, 1, (0.0,), (1.0,), 0.2)[:, 0]
    noise = np.random.default_rng(0).integers(0, 256, (1, 48, 48)).astype(np.float32) / 255
    images = (np.concatenate([crops, noise]) * 255).round().astype(np.uint8)[..., None]
    split = Split(images, np.arange(len(images)) % 7)
    save(Dataset("fer2013", tuple(f"c{i}" for i in range(7)), {"train": split}), root)
    return root


def test_face_boxes_command_finds_the_faces_and_never_replaces_silently(tmp_path):
    root = _faces_dataset(tmp_path / "faces")
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "face-boxes", str(root)])
    assert result.exit_code == 0, result.output
    boxes = load_split(root, "train").face_boxes
    assert boxes.shape == (4, 4) and boxes.dtype == np.float32
    assert np.isfinite(boxes[:3]).all() and np.isnan(boxes[3]).all()  # three faces found, the noise not
    centres = boxes[:3, :2] + boxes[:3, 2:] / 2
    assert (np.abs(centres - 24) < 10).all() and (boxes[:3, 2:] > 20).all()  # the face fills the crop
    again = runner.invoke(cli, ["data", "face-boxes", str(root)])
    assert again.exit_code != 0 and f"{FILE}: already exists" in again.output


def test_a_malformed_face_boxes_file_is_named(tmp_path):
    root = _faces_dataset(tmp_path / "faces")
    np.save(root / "train" / FILE, np.zeros((4, 3), np.float32))
    with pytest.raises(Exception, match="face_boxes.npy: float32 array of shape \\[4, 3\\]"):
        load_split(root, "train")


def test_detector_crops_train_on_the_stored_boxes(prepared_fer, tmp_path):
    import shutil

    from feredge.config import config_from_dict
    from feredge.errors import FeredgeError
    from feredge.train.trainer import Trainer, train

    data = tmp_path / "data"
    shutil.copytree(prepared_fer, data)
    base = dict(data=str(data), model="feredge-s", model_kwargs={"widths": [8, 8, 8, 8], "depths": [1, 1, 1, 1],
                "stem": 8}, epochs=1, batch_size=16, val_fraction=0.25, device="cpu", detector_crops=1.0,
                rotate=0.0, translate=0.0, scale=[1.0, 1.0], hflip=False, erasing=0.0)
    with pytest.raises(FeredgeError, match="has no face boxes; run `feredge data face-boxes"):
        Trainer(config_from_dict({**base, "out": str(tmp_path / "a")}, "test"))
    n = len(load_split(data, "train"))
    boxes = np.tile(np.array([[10.0, 8.0, 28.0, 30.0]], np.float32), (n, 1))
    boxes[::2] = np.nan  # the detector missed every other face: those stay whole
    np.save(data / "train" / FILE, boxes)
    trainer = Trainer(config_from_dict({**base, "out": str(tmp_path / "b")}, "test"))
    whole = Trainer(config_from_dict({**base, "out": str(tmp_path / "c"), "detector_crops": 0.0}, "test"))
    idx = torch.arange(len(trainer.train))
    cut = trainer._batch(idx, torch.Generator().manual_seed(0))[0]
    plain = whole._batch(idx, torch.Generator().manual_seed(0))[0]
    moved = (cut - plain).abs().flatten(1).mean(1) > 1e-3
    kept_whole = (trainer.views == torch.tensor([1.0, 0.0, 0.0])).all(1)  # the faces the detector missed
    assert 0 < int(kept_whole.sum()) < len(idx)
    assert torch.equal(moved, ~kept_whole)
    assert train(config_from_dict({**base, "out": str(tmp_path / "d")}, "test"))["epochs"] == 1
