"""Pictures stand upright as their EXIF orientation says (phones store portrait photos sideways), through
every reader: files (predict, explain, image folders) and encoded bytes (the `fer_frame` server model)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

import feredge
from feredge.vision.images import EXIF_ORIENTATION, decode_image, read_image

GROUP = Path(feredge.__file__).parent / "media" / "group.jpg"


def _tagged(pixels: Image.Image, orientation: int, path: Path) -> Path:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    pixels.save(path, exif=exif)  # PNG: lossless, so what each reader turns can be compared exactly
    return path


@pytest.mark.parametrize("suffix", [".png", ".tiff", ".jpg"])  # OpenCV turns TIFF itself: not twice
@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_orientation_turns_as_pillow_does(tmp_path, orientation, suffix):
    rgb = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / f"tagged{suffix}"
    Image.fromarray(rgb).save(path, exif=exif, **({"quality": 100} if suffix == ".jpg" else {}))
    with Image.open(path) as img:
        expected = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))[..., ::-1].astype(int)
    assert expected.shape[:2] == ((7, 5) if orientation >= 5 else (5, 7))
    tolerance = 3 if suffix == ".jpg" else 0  # two JPEG decoders round differently; lossless formats agree exactly
    for got in (read_image(path), decode_image(path.read_bytes())):
        assert got.shape == expected.shape and np.abs(got.astype(int) - expected).max(initial=0) <= tolerance * 8
        assert np.abs(got.astype(int) - expected).mean() <= tolerance


def test_a_sideways_phone_photo_gives_the_faces_of_the_upright_one(tmp_path):
    upright = cv2.imread(str(GROUP))
    stored = Image.fromarray(np.rot90(upright, 1)[..., ::-1].copy())  # stored turned left; 6 says turn right
    path = _tagged(stored, 6, tmp_path / "phone.png")
    with feredge.Recognizer() as rec:
        want, got = rec(upright), rec(read_image(path))
    assert len(want) == 3
    assert [f.to_dict() for f in got] == [f.to_dict() for f in want]


def test_a_png_with_a_faulty_colour_profile_reads_silently_and_the_same(tmp_path, capfd):
    """libpng warns on stderr itself about a faulty profile; the chunks that do not change pixels are
    dropped before OpenCV decodes, so the pixels stay as they were and nothing leaks."""
    with Image.open(GROUP) as img:
        profile = img.info["icc_profile"]  # an RGB profile: libpng refuses it on a gray PNG, with a warning
        img.convert("L").resize((64, 48)).save(tmp_path / "gray.png", icc_profile=profile)
    with Image.open(tmp_path / "gray.png") as img:
        want = np.asarray(img.convert("RGB"))[..., ::-1]
    capfd.readouterr()
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), want)
    np.testing.assert_array_equal(decode_image((tmp_path / "gray.png").read_bytes()), want)
    assert capfd.readouterr().err == ""
    cv2.imread(str(tmp_path / "gray.png"))  # the check can see a warning: OpenCV on the whole file prints one
    assert "libpng warning" in capfd.readouterr().err


def test_predict_checks_every_image_first_then_holds_one_frame_at_a_time(tmp_path, monkeypatch):
    from feredge.commands.predict import predict_images
    from feredge.recognizer import Recognizer
    from feredge.vision.images import CheckedImage

    events = []
    read, detect = CheckedImage.read, Recognizer.detect
    monkeypatch.setattr(CheckedImage, "read", lambda self: events.append("read") or read(self))
    monkeypatch.setattr(Recognizer, "detect", lambda self, frame: events.append("detect") or detect(self, frame))
    predict_images([GROUP, GROUP, GROUP], out=tmp_path / "p")
    assert events == ["read", "detect"] * 3

    cut = tmp_path / "cut.jpg"
    cut.write_bytes(GROUP.read_bytes()[:5000])
    with pytest.raises(feredge.FeredgeError, match="truncated"):
        predict_images([GROUP, cut], out=tmp_path / "q")
    assert not (tmp_path / "q").exists() or not any((tmp_path / "q").iterdir())


def test_every_input_gets_its_own_annotated_file():
    from feredge.commands.predict import output_names

    names = output_names([Path("a/group.jpg"), Path("b/group.jpg"), Path("group-2.jpg"), Path("c/group.png")])
    assert names == ["group.annotated.jpg", "group-2.annotated.jpg", "group-2-2.annotated.jpg",
                     "group-3.annotated.jpg"]


@pytest.mark.parametrize("side", [10100, 20000])  # over feredge's 100 MP; over twice Pillow's own limit
def test_encoded_bytes_of_a_huge_picture_are_refused_before_decoding(tmp_path, side):
    from tests.broken_inputs import huge_png

    data = huge_png(tmp_path / "huge.png", side).read_bytes()
    with pytest.raises(feredge.FeredgeError, match="frame.png: .*more than 100 MP"):
        decode_image(data, "frame.png")
