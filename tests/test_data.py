"""Dataset loaders: round trips, label mapping, and one test per bad-input case."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from feredge.commands.cli import cli
from feredge.data import prepare
from feredge.data.labels import CLASSES
from feredge.data.store import load, load_split
from feredge.errors import DataError
from tests.support import make_fer_images


def write_csv(path, images, labels, usages, header="emotion,pixels,Usage"):
    lines = [header]
    for img, lab, use in zip(images, labels, usages):
        lines.append(f"{lab},{' '.join(map(str, img.reshape(-1)))},{use}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def fer_csv(tmp_path):
    images, labels = make_fer_images(3)
    usages = ["Training"] * 14 + ["PublicTest"] * 4 + ["PrivateTest"] * 3
    return write_csv(tmp_path / "fer2013.csv", images, labels, usages), images, labels, usages


def test_csv_round_trip(fer_csv, tmp_path):
    path, images, labels, usages = fer_csv
    prepare("fer2013", path, tmp_path / "out")
    ds = load(tmp_path / "out")
    assert set(ds.splits) == {"train", "val", "test"}
    train = ds.splits["train"]
    assert train.images.shape == (14, 48, 48, 1) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.images, images[:14])
    np.testing.assert_array_equal(train.labels, labels[:14])
    np.testing.assert_array_equal(ds.splits["test"].labels, labels[18:])
    assert ds.meta["splits"]["val"]["count"] == 4


def test_folder_round_trip(fer_tree, prepared_fer):
    train = load_split(prepared_fer, "train")
    assert len(train) == 7 * 24
    assert np.bincount(train.labels).tolist() == [24] * 7
    # PNG is lossless: pixels come back exactly.
    first = np.array(Image.open(sorted((fer_tree / "train" / "angry").iterdir())[0]))
    np.testing.assert_array_equal(train.images[0, ..., 0], first)


def test_ferplus_soft_and_majority(fer_tree, tmp_path):
    votes = tmp_path / "votes.csv"
    rel = sorted(p.relative_to(fer_tree).as_posix() for p in (fer_tree / "train" / "angry").iterdir())
    votes.write_text("path,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
                     f"{rel[0]},2,0,0,0,8,0,0,0,0,0\n{rel[1]},0,9,0,0,1,0,0,0,0,0\n{rel[2]},0,0,0,0,0,0,0,10,0,0\n")
    ds, _ = prepare("fer2013", fer_tree, tmp_path / "soft", ferplus=votes)
    soft = ds.splits["train"].soft
    np.testing.assert_allclose(soft[0, [CLASSES.index("angry"), CLASSES.index("neutral")]], [0.8, 0.2])
    # Only contempt votes: no 7-class signal, so the FER2013 label is kept and counted as unmatched.
    assert soft[2, CLASSES.index("angry")] == 1.0
    assert ds.meta["ferplus_matched"] == 2
    ds2, _ = prepare("fer2013", fer_tree, tmp_path / "maj", ferplus=votes, ferplus_majority=True)
    assert ds2.splits["train"].labels[1] == CLASSES.index("happy")


@pytest.mark.parametrize("row, message", [
    ("0,1 2 3,Training", "field 'pixels' has 3 values, expected 2304"),
    ("9," + " ".join(["0"] * 2304) + ",Training", "field 'emotion' is '9'"),
    ("0," + " ".join(["x"] * 2304) + ",Training", "non-integer"),
    ("0," + " ".join(["0"] * 2304) + ",Validation", "field 'Usage' is 'Validation'"),
    ("0," + " ".join(["300"] * 2304) + ",Training", "outside 0-255"),
    ("0,1,2,3", "has 4 fields, expected 3"),
])
def test_bad_csv_rows(tmp_path, fer_csv, row, message):
    path = fer_csv[0]
    path.write_text(path.read_text() + row + "\n")
    with pytest.raises(DataError, match=message) as err:
        prepare("fer2013", path, tmp_path / "out")
    assert f"{path}: row 23" in str(err.value)
    _, problems = prepare("fer2013", path, tmp_path / "out2", skip_bad=True)
    assert len(problems.items) == 1 and problems.summary().startswith("skipped 1 bad records")


def test_bad_header(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("label,pixels\n")
    with pytest.raises(DataError, match="expected emotion,pixels,Usage"):
        prepare("fer2013", path, tmp_path / "out")


def test_undecodable_image_and_unknown_label(fer_tree, tmp_path):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(fer_tree, tree)
    (tree / "train" / "happy" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg: cannot decode image"):
        prepare("fer2013", tree, tmp_path / "o1")
    _, problems = prepare("fer2013", tree, tmp_path / "o2", skip_bad=True)
    assert len(problems.items) == 1
    (tree / "train" / "bored").mkdir()
    with pytest.raises(DataError, match="unknown emotion label 'bored'"):
        prepare("fer2013", tree, tmp_path / "o3", skip_bad=True)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        prepare("fer2013", tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="train: empty"):
        prepare("fer2013", tmp_path / "empty", tmp_path / "out")
    (tmp_path / "empty" / "train" / "happy").mkdir()
    with pytest.raises(DataError, match="happy: no images"):
        prepare("fer2013", tmp_path / "empty", tmp_path / "out")


def test_no_silent_overwrite(prepared_fer, fer_tree):
    with pytest.raises(DataError, match="already holds a prepared dataset"):
        prepare("fer2013", fer_tree, prepared_fer)


def _save(path, value, size=100, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3) if mode == "RGB" else (size, size), value, np.uint8)).save(path)


def test_rafdb(tmp_path):
    root = tmp_path / "basic"
    lines = []
    for i, (name, code) in enumerate([("train_00001", 1), ("train_00002", 4), ("test_0001", 6)]):
        _save(root / "Image" / "aligned" / f"{name}_aligned.jpg", 40 * i)
        lines.append(f"{name}.jpg {code}")
        attr = root / "Annotation" / "manual" / f"{name}_manu_attri.txt"
        attr.parent.mkdir(parents=True, exist_ok=True)
        attr.write_text("1\t2\n" * 5 + f"{i % 2}\n{i % 3}\n{i + 1}\n")
    (root / "EmoLabel").mkdir()
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    ds, _ = prepare("rafdb", tmp_path, tmp_path / "out")
    train = ds.splits["train"]
    assert [CLASSES[i] for i in train.labels] == ["surprise", "happy"]
    assert ds.splits["test"].labels.tolist() == [CLASSES.index("angry")]
    assert train.images.shape == (2, 100, 100, 3)
    assert train.attrs.tolist() == [[1, 0, 0], [2, 1, 1]]  # age, race, gender
    (root / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 9\n")
    with pytest.raises(DataError, match="line 1: expected '<name>.jpg <1-7>'"):
        prepare("rafdb", root, tmp_path / "out2")


def test_ckplus_contempt_and_subject_split(tmp_path):
    for emo, subjects in (("anger", range(10)), ("happy", range(10)), ("contempt", range(3))):
        for s in subjects:
            _save(tmp_path / "ck" / emo / f"S{s:03d}_001_0000001{s % 3}.png", s * 10, 64, "L")
    ds, _ = prepare("ckplus", tmp_path / "ck", tmp_path / "o1")
    assert ds.meta["contempt_dropped"] == 3 and ds.classes == CLASSES
    seen = [set(s.subjects.tolist()) for s in ds.splits.values()]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])  # no subject in two splits
    assert sum(len(s) for s in ds.splits.values()) == 20
    assert ds.splits["train"].images.shape[1:] == (48, 48, 1)
    ds8, _ = prepare("ckplus", tmp_path / "ck", tmp_path / "o2", contempt="class")
    assert ds8.classes[-1] == "contempt" and sum(len(s) for s in ds8.splits.values()) == 23
    with pytest.raises(DataError, match="contempt is not among the 7 classes"):
        prepare("ckplus", tmp_path / "ck", tmp_path / "o3", contempt="error")


def test_jaffe(tmp_path):
    for subj in ("KA", "KL", "KM", "KR", "MK"):
        for code in ("AN", "HA", "NE"):
            _save(tmp_path / "jaffe" / f"{subj}.{code}1.{len(code)}.tiff", 90, 64, "L")
    ds, _ = prepare("jaffe", tmp_path / "jaffe", tmp_path / "out")
    labels = np.concatenate([s.labels for s in ds.splits.values()])
    assert sorted(set(CLASSES[i] for i in labels)) == ["angry", "happy", "neutral"]
    _save(tmp_path / "jaffe" / "KA.XX1.9.tiff", 1, 64, "L")
    with pytest.raises(DataError, match="unknown emotion label 'XX'"):
        prepare("jaffe", tmp_path / "jaffe", tmp_path / "out2")


def test_cli_prepare_and_info(fer_tree, tmp_path):
    runner = CliRunner()
    out = tmp_path / "p"
    result = runner.invoke(cli, ["data", "prepare", "fer2013", str(fer_tree), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "train 168" in result.output
    info = runner.invoke(cli, ["data", "info", str(out), "--json"])
    assert info.exit_code == 0
    import json

    assert json.loads(info.output)["splits"]["val"]["class_counts"] == [6] * 7
    table = runner.invoke(cli, ["data", "info", str(out)])
    assert "angry" in table.output and "168" in table.output


def test_cli_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n0,1 2,Training\n")
    result = CliRunner().invoke(cli, ["data", "prepare", "fer2013", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "row 2" in lines[0] and "2304" in lines[0]
    assert "Traceback" not in result.output
