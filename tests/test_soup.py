"""Weight soups: the average is what it claims, greedy never loses validation accuracy, BN is
re-estimated from the data, ingredients must share a start, and the model card tells the runs apart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from feredge.commands.cli import cli
from feredge.commands.package import _weights_line, training_stages
from feredge.config import config_from_dict
from feredge.errors import FeredgeError
from feredge.models import create_model
from feredge.models.checkpoint import load_checkpoint, read_meta
from feredge.train.soup import make_soup, recalibrate_bn
from feredge.train.trainer import train

NANO = {"widths": [8, 16, 16], "strides": [2, 2, 1]}


def _cfg(data, out, **kw):
    base = dict(data=str(data), out=str(out), model="feredge-n", model_kwargs=NANO, epochs=1, batch_size=16,
                lr=0.05, val_fraction=0.25, device="cpu")
    base.update(kw)
    return config_from_dict(base, "test")


@pytest.fixture(scope="module")
def runs(prepared_fer, tmp_path_factory):
    """A base run and three one-epoch fine-tunes of it with different learning rates / augmentation."""
    root = tmp_path_factory.mktemp("soup")
    train(_cfg(prepared_fer, root / "base", epochs=2))
    init = str(root / "base" / "best.safetensors")
    for name, kw in (("ft1", dict(lr=0.05)), ("ft2", dict(lr=0.01)), ("ft3", dict(lr=0.02, erasing=0.3))):
        train(_cfg(prepared_fer, root / name, init=init, **kw))
    return root


def _ingredients(runs):
    return [runs / n / "last.safetensors" for n in ("ft1", "ft2", "ft3")]


def test_uniform_soup_is_the_mean_of_the_weights(runs, tmp_path):
    paths = _ingredients(runs)
    result = make_soup(paths, tmp_path / "u.safetensors", greedy=False, progress=lambda _: None)
    soup = load_file(str(tmp_path / "u.safetensors"))
    states = [load_file(str(p)) for p in paths]
    for key in ("features.0.conv3.weight", "features.2.bn3.running_var", "head.3.bias"):
        torch.testing.assert_close(soup[key], sum(s[key] for s in states) / 3, msg=key)
    assert len(result["kept"]) == 3
    meta = read_meta(tmp_path / "u.safetensors")
    assert meta.details["soup"]["method"] == "uniform"
    assert [i["kept"] for i in meta.details["soup"]["ingredients"]] == [True, True, True]


def test_greedy_soup_is_no_worse_on_validation_than_its_best_ingredient(runs, tmp_path):
    lines: list[str] = []
    result = make_soup(_ingredients(runs), tmp_path / "g.safetensors", progress=lines.append)
    assert result["val_accuracy"] >= result["best_ingredient_val_accuracy"]
    alone = [i["val_accuracy"] for i in read_meta(tmp_path / "g.safetensors").details["soup"]["ingredients"]]
    assert result["best_ingredient_val_accuracy"] == max(alone)
    assert len(lines) == 3 + 2  # each ingredient scored, then each candidate after the best tried once
    model, meta = load_checkpoint(tmp_path / "g.safetensors")  # an ordinary checkpoint: loads, evaluates
    assert meta.details["metrics"]["val_accuracy"] == result["val_accuracy"]


def test_a_held_out_soup_chooses_on_one_part_of_the_carve_and_reports_on_the_other(runs, tmp_path):
    lines: list[str] = []
    result = make_soup(_ingredients(runs), tmp_path / "h.safetensors", holdout=0.5, progress=lines.append)
    assert result["choice_accuracy"] >= result["best_ingredient_choice_accuracy"]  # greedy's guarantee, on its part
    soup = read_meta(tmp_path / "h.safetensors").details["soup"]
    assert soup["holdout"] == 0.5 and soup["report_accuracy"] == result["report_accuracy"]
    reports = [i["report_accuracy"] for i in soup["ingredients"]]
    assert result["best_ingredient_report_accuracy"] == max(reports)
    # the two parts split the carve: its accuracy is their size-weighted mean, so it lies between them
    low, high = sorted((result["choice_accuracy"], result["report_accuracy"]))
    assert low - 1e-9 <= result["val_accuracy"] <= high + 1e-9
    assert all("held out:" in line for line in lines)
    with pytest.raises(FeredgeError, match="both parts need images"):  # a part too small to hold one image
        make_soup(_ingredients(runs), tmp_path / "e.safetensors", holdout=0.0001, progress=lines.append)


def test_a_soup_as_ingredient_counts_as_its_fine_tunes(runs, tmp_path):
    """Continuing a soup with a new fine-tune gives the soup of all the fine-tunes, not a half-and-half mix."""
    ft1, ft2, ft3 = _ingredients(runs)
    make_soup([ft1, ft2], tmp_path / "two.safetensors", greedy=False, progress=lambda _: None)
    lines: list[str] = []
    make_soup([tmp_path / "two.safetensors", ft3], tmp_path / "cont.safetensors", greedy=False, progress=lines.append)
    make_soup([ft1, ft2, ft3], tmp_path / "all.safetensors", greedy=False, progress=lambda _: None)
    cont, every = load_file(str(tmp_path / "cont.safetensors")), load_file(str(tmp_path / "all.safetensors"))
    for key in ("features.0.conv3.weight", "features.2.bn3.running_var", "head.3.bias"):
        torch.testing.assert_close(cont[key], every[key], msg=key)
    recorded = read_meta(tmp_path / "cont.safetensors").details["soup"]["ingredients"]
    assert [i["weight"] for i in recorded] == [2, 1]
    assert "counts as its 2 fine-tunes" in lines[0]
    stages = training_stages(tmp_path / "cont.safetensors")  # the card: the earlier soup's runs, then it, then ft3
    assert [s["run"] for s in stages] == ["base", "ft1", "ft2", "two", "ft3", "cont"]
    assert stages[-1]["recipe"]["ingredients_kept"] == "2 of 2" and stages[-1]["recipe"]["fine_tunes_averaged"] == 3
    assert "2 of 2 ingredients, 3 fine-tunes in all" in _weights_line(stages[-1], None)


def test_a_soup_of_a_shipped_file_is_stored_and_shipped_as_it_is_saved(runs, prepared_fer, tmp_path, monkeypatch):
    """A shipped ingredient's 'float16' storage note is not inherited by the fp32 soup, and packaging the
    soup (which writes its own note) works."""
    from feredge.commands import package as packaging

    shipped = tmp_path / "shipped.safetensors"
    shutil.copy(runs / "ft1" / "last.safetensors", shipped)
    sidecar = json.loads(Path(f"{runs / 'ft1' / 'last.safetensors'}.json").read_text())
    sidecar["details"]["weights_storage"] = "float16 (loaded as float32)"
    Path(f"{shipped}.json").write_text(json.dumps(sidecar))
    make_soup([shipped, runs / "ft2" / "last.safetensors"], tmp_path / "s.safetensors", greedy=False,
              progress=lambda _: None)
    assert "weights_storage" not in read_meta(tmp_path / "s.safetensors").details
    monkeypatch.setattr(packaging, "WEIGHTS_DIR", tmp_path / "weights")
    (tmp_path / "weights").mkdir()
    weights, onnx_path = packaging.package(tmp_path / "s.safetensors", prepared_fer, None)
    assert read_meta(weights).details["weights_storage"] == "float16 (loaded as float32)"
    assert onnx_path.is_file()


def test_soup_through_the_command_line_then_eval(runs, prepared_fer, tmp_path):
    out = tmp_path / "cli.safetensors"
    result = CliRunner().invoke(cli, ["soup", *map(str, _ingredients(runs)), "--out", str(out), "--recalibrate-bn"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["val_accuracy"] > 0
    assert read_meta(out).details["soup"]["bn_recalibrated"] is True
    result = CliRunner().invoke(cli, ["eval", "--model", str(out), "--data", str(prepared_fer), "--out",
                                      str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output


def test_recalibrated_bn_holds_the_data_statistics(prepared_fer):
    from feredge.data.store import load_split
    from feredge.models import model_info
    from feredge.train import tensor_ops as ops

    images = np.asarray(load_split(prepared_fer, "train").images)[:100]
    spec = model_info("feredge-n").input_spec
    model = create_model("feredge-n", **NANO)
    block = model.features[0]
    block.bn3.running_mean.fill_(5.0)
    recalibrate_bn(model, images, spec, batch_size=32)  # four batches of unequal size: a true average needed
    with torch.no_grad():
        y = block.conv3(ops.normalize(ops.to_float(torch.from_numpy(images.copy()), 1), spec))
    torch.testing.assert_close(block.bn3.running_mean, y.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(block.bn3.running_var, y.var((0, 2, 3)), rtol=0.05, atol=1e-4)
    assert block.bn3.momentum == 0.1
    assert not model.training


def test_ingredients_must_share_their_start(runs, prepared_fer, tmp_path):
    train(_cfg(prepared_fer, tmp_path / "other", init=str(runs / "ft1" / "best.safetensors")))
    with pytest.raises(FeredgeError, match="config field 'init'.*fine-tunes of one checkpoint"):
        make_soup([runs / "ft2" / "last.safetensors", tmp_path / "other" / "last.safetensors"],
                  tmp_path / "x.safetensors", progress=lambda _: None)
    assert not (tmp_path / "x.safetensors").exists()


def test_card_stages_of_a_soup(runs, tmp_path):
    out = runs / "soup" / "best.safetensors"
    out.parent.mkdir(exist_ok=True)
    make_soup(_ingredients(runs), out, progress=lambda _: None)
    stages = training_stages(out)
    assert [s["run"] for s in stages] == ["base", "ft1", "ft2", "ft3", "best"]
    assert all(s["warm_start_from"] == "base" for s in stages[1:4])
    kept = read_meta(out).details["soup"]["ingredients"]
    assert [s["kept_in_soup"] for s in stages[1:4]] == [i["kept"] for i in kept]
    assert [s["checkpoint"] for s in stages[1:4]] == ["last"] * 3  # which weights of each run went in
    assert stages[-1]["soup"] == "greedy" and stages[-1]["epochs_run"] == 0


@pytest.mark.parametrize("kept", ["shipped file", "copy outside the work tree", "earlier version with its card"])
def test_card_stages_continue_from_a_shipped_model(prepared_fer, tmp_path, kept):
    from feredge.commands.package import card_paths
    from feredge.weights import WEIGHTS_DIR

    shipped, card = WEIGHTS_DIR / "feredge-n.safetensors", json.loads(card_paths("feredge-n")["json"].read_text())
    if kept != "shipped file":  # as the campaign keeps them: another folder, no run log beside it
        (tmp_path / "teachers").mkdir()
        copy = tmp_path / "teachers" / "n2.safetensors"
        shutil.copy(shipped, copy)
        shutil.copy(f"{shipped}.json", f"{copy}.json")
        if kept == "earlier version with its card":  # its own card, found before any byte comparison
            card = {**card, "stages": card["stages"][:2]}
            (tmp_path / "teachers" / "n2.card.json").write_text(json.dumps(card))
        shipped = copy
    train(config_from_dict(dict(data=str(prepared_fer), out=str(tmp_path / "ft"), model="feredge-n", epochs=1,
                                batch_size=16, lr=0.001, val_fraction=0.25, device="cpu", init=str(shipped)), "test"))
    stages = training_stages(tmp_path / "ft" / "best.safetensors")
    assert stages[:-1] == card["stages"]
    label = "shipped feredge-n (n2)" if kept == "earlier version with its card" else "shipped feredge-n"
    assert stages[-1]["run"] == "ft" and stages[-1]["warm_start_from"] == label


def test_card_stages_of_an_unknown_file_are_refused(tmp_path):
    from feredge.weights import WEIGHTS_DIR

    stray = tmp_path / "stray.safetensors"
    shutil.copy(WEIGHTS_DIR / "feredge-s.safetensors", stray)
    stray.write_bytes(stray.read_bytes()[:-1] + b" ")  # other weights, no card, no run log
    sidecar = json.loads((WEIGHTS_DIR / "feredge-s.safetensors.json").read_text())
    sidecar["details"].pop("soup", None)  # nor a soup (whose ingredients would tell its stages)
    Path(f"{stray}.json").write_text(json.dumps(sidecar))
    with pytest.raises(FeredgeError, match="neither a shipped model.*nor a training run's checkpoint"):
        training_stages(stray)
