"""Data and calibration inputs that must give the right result rather than an error: a FER+ vote file inside
the source tree, dataset permissions, a damaged calibration-set cache (rebuilt, saying so), 16-bit PNGs,
files a folder prepare does not use (reported), a CSV's BOM and bad rows, an interrupted prepare."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from feredge.calibration.dataset import calibration_set
from feredge.commands.cli import cli
from feredge.data import prepare
from tests.support import make_fer_images


def test_ferplus_votes_inside_the_source_folder_are_not_ignored(fer_tree, tmp_path):
    """The README keeps ferplus_votes.csv in the FER2013 folder: given as --ferplus, it is used, not 'ignored'."""
    src = shutil.copytree(fer_tree, tmp_path / "fer2013")
    rows = ["path,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"]
    rows += [f"{p.relative_to(src).as_posix()},1,9,0,0,0,0,0,0,0,0" for p in sorted(src.rglob("*.png"))]
    (src / "ferplus_votes.csv").write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(cli, ["data", "prepare", "fer2013", str(src), "--ferplus",
                                      str(src / "ferplus_votes.csv"),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "ignored" not in result.output and "ferplus matched" in result.output
    assert json.loads((tmp_path / "o" / "meta.json").read_text())["ignored"] == []


def test_prepared_dataset_has_the_permissions_of_any_new_folder(fer_tree, tmp_path):
    """Staged in a mkdtemp folder (owner-only), the dataset must come out with the umask's permissions."""
    old = os.umask(0o022)
    try:
        prepare("fer2013", fer_tree, tmp_path / "o")
    finally:
        os.umask(old)
    out = tmp_path / "o"
    assert out.stat().st_mode & 0o777 == 0o755
    assert all(p.stat().st_mode & 0o777 == 0o755 for p in out.rglob("*") if p.is_dir())
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.rglob("*") if p.is_file())


def test_an_out_that_is_a_link_gets_the_dataset_where_it_points(fer_tree, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    prepare("fer2013", fer_tree, tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "meta.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]  # no staging or old folder left


@pytest.mark.parametrize("damage", [lambda b: b[:len(b) // 2], lambda b: b"\x00" * 40, lambda b: b"PK\x03\x04garbage"])
def test_damaged_calibration_cache_is_rebuilt(prepared_fer, tmp_path, damage):
    """Truncated, zeroed or garbage-zip caches are rebuilt with the same draw, and one line says so."""
    first = calibration_set(prepared_fer, 14, seed=0, val_fraction=0.25, cache_dir=tmp_path)
    (cache,) = tmp_path.glob("*.npz")
    cache.write_bytes(damage(cache.read_bytes()))
    lines: list[str] = []
    again = calibration_set(prepared_fer, 14, seed=0, val_fraction=0.25, cache_dir=tmp_path, warn=lines.append)
    assert np.array_equal(again.indices, first.indices) and again.digest == first.digest
    assert len(lines) == 1 and str(cache) in lines[0] and "rebuilt it" in lines[0]
    calibration_set(prepared_fer, 14, seed=0, val_fraction=0.25, cache_dir=tmp_path, warn=lines.append)
    assert len(lines) == 1  # the rebuilt cache reads back clean


def test_calibration_cache_with_other_indices_is_rebuilt(prepared_fer, tmp_path):
    """A readable cache whose indices were changed is not trusted either."""
    first = calibration_set(prepared_fer, 14, seed=0, val_fraction=0.25, cache_dir=tmp_path)
    (cache,) = tmp_path.glob("*.npz")
    with np.load(cache) as npz:
        digest = npz["digest"]
    np.savez(cache, indices=first.indices[::-1].copy(), digest=digest)
    lines: list[str] = []
    again = calibration_set(prepared_fer, 14, seed=0, val_fraction=0.25, cache_dir=tmp_path, warn=lines.append)
    assert np.array_equal(again.indices, first.indices) and "checksum does not match" in lines[0]


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    return tiny_checkpoint


def test_int8_export_with_a_damaged_calibration_cache(checkpoint, prepared_fer, tmp_path, monkeypatch):
    """The exporter's cache (in the user's cache folder) damaged between two exports: the second still
    succeeds, says in one line that it rebuilt the cache, and leaves a sound one behind."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    argv = ["export", "--model", str(checkpoint), "--int8", "--calib-data", str(prepared_fer), "--calib-size", "14",
            "--max-drop", "100"]
    assert (first := CliRunner().invoke(cli, [*argv, "--out", "e1"])).exit_code == 0, first.output
    (cache,) = (tmp_path / "cache" / "feredge" / "calibration").glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:50])
    second = CliRunner().invoke(cli, [*argv, "--out", "e2"])
    assert second.exit_code == 0, second.output
    assert [line for line in second.output.splitlines() if "rebuilt it" in line] == \
        [f"calibration cache {cache}: not a readable calibration cache (BadZipFile); rebuilt it"]
    with np.load(cache) as npz:
        assert "indices" in npz.files and "digest" in npz.files


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    from feredge.data.images import decode

    ramp = (np.arange(48 * 48, dtype=np.uint32).reshape(48, 48) * 28).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    got = decode(tmp_path / "deep.png", None, 1)[..., 0]
    np.testing.assert_array_equal(got, (ramp // 257).astype(np.uint8))


def test_folder_prepare_reports_what_it_does_not_use(tmp_path):
    from PIL import Image

    root = tmp_path / "src"
    for split in ("train", "validation"):
        for emotion in ("happy", "sad"):
            (root / split / emotion).mkdir(parents=True)
            Image.new("L", (48, 48), 100).save(root / split / emotion / "a.png")
            Image.new("L", (48, 48), 100).save(root / split / emotion / "b.gif")
            Image.new("L", (48, 48), 100).save(root / split / emotion / "c.webp")
    (root / "train" / "happy" / "notes.txt").write_text("x")
    (root / "extra").mkdir()
    result = CliRunner().invoke(cli, ["data", "prepare", "fer2013", str(root), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "train 6" in result.output and "val 6" in result.output  # validation/ is PublicTest; gif and webp read
    assert "ignored 2 files/folders" in result.output and "notes.txt" in result.output
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert len(meta["ignored"]) == 2


def test_csv_bom_size_and_one_count_per_bad_row(tmp_path):
    from feredge.data.store import load_split

    images, labels = make_fer_images(2)
    rows = [f"{lab},{' '.join(map(str, img.reshape(-1)))},Training" for img, lab in zip(images, labels)]
    rows.append("9,1 2 3,Training")  # two bad fields, one bad row
    (tmp_path / "fer.csv").write_bytes(b"\xef\xbb\xbf" + ("emotion,pixels,Usage\n" + "\n".join(rows) + "\n").encode())
    ds, problems = prepare("fer2013", tmp_path / "fer.csv", tmp_path / "o", skip_bad=True, size=40)
    assert len(problems.items) == 1 and "field 'emotion'" in problems.items[0] and "field 'pixels'" in problems.items[0]
    assert load_split(tmp_path / "o", "train").images.shape == (14, 40, 40, 1)


def test_interrupted_prepare_keeps_the_old_dataset(prepared_fer, fer_tree, tmp_path, monkeypatch):
    import feredge.data.store as store

    out = shutil.copytree(prepared_fer, tmp_path / "p")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def interrupted(dataset, folder):
        (folder / "meta.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.save(store.load(out), out, overwrite=True)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["p"]  # no staging folder left behind
