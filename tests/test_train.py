"""Trainer: learning on tiny data, exact resume, checkpoints, multi-task checks, DDP with gloo."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from feredge.commands.cli import cli
from feredge.config import config_from_dict
from feredge.errors import CheckpointError, FeredgeError
from feredge.models.checkpoint import load_checkpoint
from feredge.train.trainer import Trainer, train
from tests.support import SMALL, small_cfg


def test_two_epochs_lower_the_loss(prepared_fer, tmp_path):
    result = train(small_cfg(prepared_fer, tmp_path / "run", epochs=3, lr=0.1))
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert result["epochs"] == 3
    assert (tmp_path / "run" / "log.csv").read_text().startswith("epoch,train_loss")
    model, meta = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert meta.model == "feredge-s" and meta.classes[0] == "angry" and meta.kind == "checkpoint"
    assert meta.input_spec.size == 48 and "val_accuracy" in meta.details["metrics"]


def _with_votes(prepared, dst):
    """The prepared data with FER+-like votes: each image's split 0.4 its label, 0.6 neutral (as FER+'s
    annotators call many of FER2013's sad and angry faces neutral), so every majority is neutral."""
    import shutil

    shutil.copytree(prepared, dst)
    for split in ("train", "val"):
        labels = np.load(dst / split / "labels.npy")
        soft = np.zeros((len(labels), 7), np.float32)
        soft[np.arange(len(labels)), labels] = 0.4
        soft[:, 6] += 0.6
        np.save(dst / split / "soft.npy", soft)
    return dst


def test_soft_labels_share_the_target_and_ferplus_agreement_is_logged(prepared_fer, tmp_path):
    """soft_label_share blends the soft labels into the hard one; with votes, each epoch also logs top-1 and
    mean-class against their majority, and a run can pick its best epoch by them."""
    data = _with_votes(prepared_fer, tmp_path / "votes")
    cfg = small_cfg(data, tmp_path / "run", epochs=1, soft_labels=True, soft_label_share=0.25, label_smoothing=0.0,
                    select_metric="ferplus_accuracy")
    trainer = Trainer(cfg)
    idx = torch.arange(6)
    hard = torch.nn.functional.one_hot(trainer.train.labels[idx], 7).float()
    torch.testing.assert_close(trainer._targets(idx), 0.75 * hard + 0.25 * trainer.train.soft[idx])
    trainer.fit()
    row = json.loads((tmp_path / "run" / "log.json").read_text())[-1]
    # every majority is neutral: agreement is the share called neutral, the accuracy of the one class present
    assert row["val_ferplus_accuracy"] == pytest.approx(row["val_ferplus_mean_class_accuracy"])
    assert abs(row["val_ferplus_accuracy"] - row["val_accuracy"]) > 0.05  # the labels say otherwise
    meta = json.loads((tmp_path / "run" / "best.safetensors.json").read_text())
    assert meta["details"]["metrics"]["val_ferplus_accuracy"] == row["val_ferplus_accuracy"]
    from feredge.commands.package import training_stages

    recipe = training_stages(tmp_path / "run" / "best.safetensors")[-1]["recipe"]
    assert recipe["soft_label_share"] == 0.25 and recipe["select_metric"] == "ferplus_accuracy"
    from feredge.commands.evaluate import evaluate_checkpoints, table

    report, _ = evaluate_checkpoints([tmp_path / "run" / "best.safetensors"], data, "val", device="cpu")
    assert report["ferplus_accuracy"] == pytest.approx(report["ferplus_mean_class_accuracy"])
    assert "against the FER+ majority vote" in table(report)[0]
    from feredge.commands.package import _ferplus_row

    card = {f"{w}_ferplus_{k}": v for w in ("validation", "publictest")
            for k, v in (("accuracy", report["ferplus_accuracy"]), ("mean_class_accuracy", 0.5))}
    assert f"{report['ferplus_accuracy']:.4f}" in _ferplus_row(card)[0][1] and _ferplus_row({}) == []


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_matches_uninterrupted(prepared_fer, tmp_path, ema):
    train(small_cfg(prepared_fer, tmp_path / "full", epochs=2, ema=ema))
    train(small_cfg(prepared_fer, tmp_path / "split", epochs=2, ema=ema), stop_after=1)
    assert json.loads((tmp_path / "split" / "log.json").read_text())[-1]["epoch"] == 1
    train(small_cfg(prepared_fer, tmp_path / "split", epochs=2, ema=ema), resume=True)
    a = load_file(str(tmp_path / "full" / "last.safetensors"))
    b = load_file(str(tmp_path / "split" / "last.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert len(json.loads((tmp_path / "split" / "log.json").read_text())) == 2


@pytest.mark.parametrize("killed", ["write_state", "promote"])
def test_kill_during_a_save_resumes_to_the_uninterrupted_result(prepared_fer, tmp_path, monkeypatch, killed):
    """A kill after epoch 2's weights are written but before its state (write_state), or after its state but
    before the weights move into place (promote), leaves the files of one epoch; --resume ends bit for bit
    where an uninterrupted run does."""
    import feredge.train.run_folder as run_folder

    train(small_cfg(prepared_fer, tmp_path / "full", epochs=2))
    real, calls = getattr(run_folder, killed), []

    def kill_on_second_save(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    out = tmp_path / "split"
    monkeypatch.setattr(run_folder, killed, kill_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        train(small_cfg(prepared_fer, out, epochs=2))
    monkeypatch.setattr(run_folder, killed, real)
    assert (out / run_folder.STAGED).is_file()  # epoch 2's weights, not yet in place
    assert json.loads((out / "last.safetensors.json").read_text())["details"]["epoch"] == 1
    train(small_cfg(prepared_fer, out, epochs=2), resume=True)
    a, b = load_file(str(tmp_path / "full" / "last.safetensors")), load_file(str(out / "last.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert json.loads((out / "last.safetensors.json").read_text())["details"]["epoch"] == 2
    assert [r["epoch"] for r in json.loads((out / "log.json").read_text())] == [1, 2]
    assert not (out / run_folder.STAGED).exists()


def test_resume_refuses_weights_of_another_epoch(prepared_fer, tmp_path):
    """Epoch 2's weights beside epoch 1's state (what a kill mid-save left before saves were staged) would
    retrain epoch 2 from epoch-2 weights: refused, whether the state records the weights' sha256 or not."""
    out = tmp_path / "run"
    cfg = small_cfg(prepared_fer, out, epochs=2)
    train(cfg, stop_after=1)
    first_state = (out / "last_state.pt").read_bytes()
    train(cfg, resume=True)
    (out / "last_state.pt").write_bytes(first_state)
    refused = r"last.safetensors: weights \(epoch 2\) are not the ones last_state.pt \(epoch 1\) was saved with"
    with pytest.raises(FeredgeError, match=refused):
        train(cfg, resume=True)
    state = torch.load(out / "last_state.pt", weights_only=True)
    del state["weights_sha256"]  # as an older feredge wrote it: the epochs still tell
    torch.save(state, out / "last_state.pt")
    with pytest.raises(FeredgeError, match=refused):
        train(cfg, resume=True)


def test_ema_weights_are_validated_and_saved(prepared_fer, tmp_path):
    """With ema the saved weights are the running average, not the last step's, and validation scores them."""
    trainer = Trainer(small_cfg(prepared_fer, tmp_path / "run", epochs=2, ema=0.9, lr=0.1))
    trainer.fit()
    saved = load_file(str(tmp_path / "run" / "last.safetensors"))
    trained = trainer.model.state_dict()
    averaged = trainer.ema.module.state_dict()
    weights = [k for k in saved if saved[k].dtype.is_floating_point and saved[k].dim() > 1]
    assert all(torch.equal(saved[k], averaged[k].contiguous()) for k in weights)
    assert any(not torch.allclose(saved[k], trained[k]) for k in weights)
    assert trainer.validate()["accuracy"] == json.loads((tmp_path / "run" / "log.json").read_text())[-1]["val_accuracy"]


def test_warm_start_begins_from_the_checkpoint(prepared_fer, tmp_path):
    train(small_cfg(prepared_fer, tmp_path / "a", epochs=1))
    first = small_cfg(prepared_fer, tmp_path / "b", epochs=1, init=str(tmp_path / "a" / "best.safetensors"), lr=0.0)
    train(first)
    a = load_file(str(tmp_path / "a" / "best.safetensors"))
    b = load_file(str(tmp_path / "b" / "last.safetensors"))
    for k in a:
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(a[k], b[k], msg=k)


def test_warm_start_refuses_another_validation_carve(prepared_fer, tmp_path):
    train(small_cfg(prepared_fer, tmp_path / "a", epochs=1))
    with pytest.raises(FeredgeError, match="different validation carve.*seed=0"):
        Trainer(small_cfg(prepared_fer, tmp_path / "b", init=str(tmp_path / "a" / "best.safetensors"), seed=1))


def test_resume_without_state_is_an_error(prepared_fer, tmp_path):
    with pytest.raises(FeredgeError, match="nothing to resume"):
        train(small_cfg(prepared_fer, tmp_path / "none"), resume=True)


def test_multitask_recipe_needs_attributes(prepared_fer, tmp_path):
    cfg = small_cfg(prepared_fer, tmp_path / "mt", model="multitask-cnn", model_kwargs={},
                    aux_weights={"gender": 0.1, "race": 1.5, "age": 4.0})
    with pytest.raises(FeredgeError, match="no age/race/gender attributes"):
        Trainer(cfg)
    cfg.aux_weights = {"gender": 0.0, "race": 0.0, "age": 0.0}
    Trainer(cfg)  # zero auxiliary weights: single-task training is allowed


def test_multitask_training_with_attributes(prepared_fer, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(prepared_fer, data)
    n = len(np.load(data / "train" / "labels.npy"))
    rng = np.random.default_rng(0)
    attrs = np.stack([rng.integers(0, 5, n), rng.integers(0, 3, n), rng.integers(0, 3, n)], 1)
    attrs[::4] = -1  # unknown attributes are ignored, not guessed
    np.save(data / "train" / "attrs.npy", attrs)
    cfg = small_cfg(data, tmp_path / "mt", model="multitask-cnn", model_kwargs={}, epochs=1,
                    aux_weights={"gender": 0.1, "race": 1.5, "age": 4.0}, emotion_weight=2.0)
    assert train(cfg)["epochs"] == 1
    with pytest.raises(FeredgeError, match="crops must be smaller than the images"):
        Trainer(config_from_dict({**dataclasses.asdict(cfg), "ten_crop": True}, "test"))
    for split in ("train", "val"):
        images = np.load(data / split / "images.npy")
        np.save(data / split / "images.npy", np.pad(images, ((0, 0), (8, 8), (8, 8), (0, 0))))  # 64 px > 50 px input
    meta = json.loads((data / "meta.json").read_text())
    meta["image_shape"] = [64, 64, 1]
    (data / "meta.json").write_text(json.dumps(meta))
    cfg.ten_crop, cfg.out, cfg.max_steps_per_epoch = True, str(tmp_path / "mt10"), 2  # labels follow the crops
    assert train(cfg)["epochs"] == 1
    cfg.ten_crop, cfg.mixup = False, 0.2
    with pytest.raises(FeredgeError, match="cannot train with mixup/cutmix"):
        Trainer(cfg)


def test_config_errors_name_the_field():
    with pytest.raises(FeredgeError, match="unknown field 'epoch'"):
        config_from_dict({"epoch": 3}, "cfg.toml")
    with pytest.raises(FeredgeError, match="field 'epochs' is 'many', expected int"):
        config_from_dict({"epochs": "many"}, "cfg.toml")


def test_train_refuses_model_kwargs_that_do_not_fit(prepared_fer, tmp_path):
    for kwargs, why in (({"se": -2}, "se must be an integer >= 0"), ({"depth": [1]}, "unexpected keyword")):
        r = CliRunner().invoke(cli, ["train", "--data", str(prepared_fer), "--out", str(tmp_path / "run"),
                                     "--device", "cpu", "--set", f"model_kwargs={json.dumps(kwargs)}"])
        assert r.exit_code != 0 and "Traceback" not in r.output, r.output
        assert "model_kwargs" in r.output and why in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_checkpoint_mismatch_is_explained(prepared_fer, tmp_path):
    train(small_cfg(prepared_fer, tmp_path / "run", epochs=1))
    side = tmp_path / "run" / "best.safetensors.json"
    meta = json.loads(side.read_text())
    meta["model_kwargs"]["widths"] = [8, 16, 16, 32]
    side.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(tmp_path / "run" / "best.safetensors")
    with pytest.raises(CheckpointError, match="holds model 'feredge-s', expected 'vgg-a'"):
        load_checkpoint(tmp_path / "run" / "best.safetensors", expect_model="vgg-a")


def test_cli_train_eval_and_ensemble(prepared_fer, tmp_path):
    runner = CliRunner()
    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\nmodel = "feredge-s"\nepochs = 1\nbatch_size = 16\n'
                   'model_kwargs = { widths = [8, 16, 16, 16], depths = [1, 1, 1, 1], stem = 8 }\n')
    for name in ("a", "b"):
        r = runner.invoke(cli, ["train", "--config", str(cfg), "--data", str(prepared_fer), "--out",
                                str(tmp_path / name), "--device", "cpu", "--set", "val_fraction=0.25",
                                "--seed", "1" if name == "a" else "2"])
        assert r.exit_code == 0, r.output
    for tta in ("none", "hflip", "ten-crop"):
        r = runner.invoke(cli, ["eval", "--model", str(tmp_path / "a" / "best.safetensors"), "--data",
                                str(prepared_fer),
                                "--tta", tta, "--out", str(tmp_path / f"e_{tta}"), "--device", "cpu"])
        assert r.exit_code == 0, r.output
        rep = json.loads((tmp_path / f"e_{tta}" / "report.json").read_text())
        assert rep["n"] == 42 and rep["tta"] == tta
        assert (tmp_path / f"e_{tta}" / "confusion.png").stat().st_size > 1000
    ckpts = [a for n in ("a", "b") for a in ("--model", str(tmp_path / n / "best.safetensors"))]
    r = runner.invoke(cli, ["eval", *ckpts, "--data", str(prepared_fer), "--out", str(tmp_path / "e2")])
    assert r.exit_code != 0 and "--ensemble" in r.output
    r = runner.invoke(cli, ["eval", "--ensemble", *ckpts, "--data", str(prepared_fer), "--out", str(tmp_path / "e3"),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "e3" / "report.json").read_text())["ensemble"] == "mean softmax"


@pytest.mark.slow
def test_ddp_two_processes_gloo(prepared_fer, tmp_path):
    """torchrun with 2 CPU processes: rank-0-only outputs and accuracy comparable to one process."""
    common = ["--data", str(prepared_fer), "--device", "cpu", "--epochs", "4", "--batch-size", "16", "--lr", "0.1",
              "--set", "val_fraction=0.25", "--set", f"model_kwargs={json.dumps(SMALL)}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "feredge", "train", "--out", str(tmp_path / "ddp"), *common],
                         capture_output=True, text=True, env=env, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    single = train(config_from_dict({**json.loads(json.dumps(dict(
        data=str(prepared_fer), out=str(tmp_path / "one"), device="cpu", epochs=4, batch_size=16, lr=0.1,
        val_fraction=0.25, model_kwargs=SMALL)))}, "test"))
    log = json.loads((tmp_path / "ddp" / "log.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]  # one row per epoch: only rank 0 logs
    assert abs(log[-1]["val_accuracy"] - single["best"]) <= 0.25 or min(log[-1]["val_accuracy"], single["best"]) > 0.8


def test_distillation_from_a_teacher_with_another_input_spec(prepared_fer, tmp_path):
    """A multitask-cnn teacher (3×50×50, 0-255) distils into feredge-s (1×48×48) on the same batches."""
    teacher_cfg = small_cfg(prepared_fer, tmp_path / "teacher", model="multitask-cnn", model_kwargs={}, epochs=1)
    train(teacher_cfg)
    cfg = small_cfg(prepared_fer, tmp_path / "student", epochs=2,
                    teacher=str(tmp_path / "teacher" / "best.safetensors"),
                    distill_weight=0.7)
    trainer = Trainer(cfg)
    teacher = trainer.teachers[0]
    assert teacher.spec.size == 50 and not any(p.requires_grad for p in teacher.network.parameters())
    x = torch.rand(4, 1, 48, 48)
    logits = trainer.model(trainer._model_input(x, trainer.spec))
    assert trainer._distill(x, logits, None).item() >= 0
    assert trainer.fit()["epochs"] == 2
    pair = Trainer(dataclasses.replace(cfg, teacher=f"{cfg.teacher},{tmp_path / 'student' / 'best.safetensors'}"))
    with torch.no_grad():  # online ensemble: KL against the softmax of the two teachers' mean logits
        mean = torch.stack([t.network(pair._model_input(x, t.spec)) for t in pair.teachers]).mean(0)
        logits = pair.model(pair._model_input(x, pair.spec))
        t = cfg.distill_temperature
        expected = torch.nn.functional.kl_div(torch.log_softmax(logits / t, 1), torch.softmax(mean / t, 1),
                                              reduction="batchmean") * t * t
        torch.testing.assert_close(pair._distill(x, logits, None), expected)


def test_offline_ten_crop_teacher_is_computed_once_and_mixed_with_the_images(prepared_fer, tmp_path):
    """teacher_tta=ten-crop: each teacher's ten-crop logits of the clean training images are cached in the run
    folder (reused on resume and in an ensemble, computed for a new teacher), follow mixup like the labels,
    and an ensemble of teachers distils from their mean."""
    from feredge.artifact import file_sha256
    from feredge.runtime.classifier import Classifier
    from feredge.train.distill import TEACHER_CACHE

    for name, seed in (("t1", 0), ("t2", 1)):
        train(small_cfg(prepared_fer, tmp_path / name, epochs=1, seed=seed, val_fraction=0.25))
    out = tmp_path / "student"
    cfg = small_cfg(prepared_fer, out, epochs=2, teacher=str(tmp_path / "t1" / "best.safetensors"),
                    teacher_tta="ten-crop", mixup=0.4)
    t1, t2 = tmp_path / "t1" / "best.safetensors", tmp_path / "t2" / "best.safetensors"
    cache1, cache2 = (out / TEACHER_CACHE.format(file_sha256(t)[:16]) for t in (t1, t2))
    trainer = Trainer(cfg)
    assert trainer.teachers == []  # the networks are dropped once their logits exist
    with Classifier(t1, device="cpu", tta="ten-crop") as classifier:  # the runtime's ten-crop agrees with training's
        expected = classifier.logits(trainer.train.images.numpy())
    np.testing.assert_allclose(np.load(cache1), expected, atol=1e-5)
    x, target, soft = trainer._batch(torch.arange(8), torch.Generator().manual_seed(0))
    assert soft.shape == target.shape == (8, 7)
    torch.testing.assert_close(soft.sum(1), torch.ones(8))
    unmixed = torch.softmax(trainer.teacher_logits[:8] / cfg.distill_temperature, 1)
    assert not torch.allclose(soft, unmixed)  # mixup blended the teacher's targets with another image's
    train(cfg, stop_after=1)
    sidecar = json.loads((out / "last.safetensors.json").read_text())
    assert sidecar["details"]["teacher_sha256"] == {str(t1): file_sha256(t1)}
    stamp = os.stat(cache1).st_mtime_ns
    train(cfg, resume=True)
    assert os.stat(cache1).st_mtime_ns == stamp
    from feredge.commands.package import _weights_line, training_stages

    last = training_stages(out / "last.safetensors")[-1]
    assert last["recipe"]["teacher_sha256"] == file_sha256(t1)[:16]
    assert "last epoch" in _weights_line(last, 2) and "best validation" not in _weights_line(last, 2)
    Trainer(dataclasses.replace(cfg, teacher=str(t2)))
    assert cache2.is_file() and os.stat(cache1).st_mtime_ns == stamp
    stamps = (os.stat(cache1).st_mtime_ns, os.stat(cache2).st_mtime_ns)
    ensemble = Trainer(dataclasses.replace(cfg, teacher=f"{t1}, {t2}"))
    assert (os.stat(cache1).st_mtime_ns, os.stat(cache2).st_mtime_ns) == stamps  # both reused, none recomputed
    mean = (np.load(cache1) + np.load(cache2)) / 2
    np.testing.assert_allclose(ensemble.teacher_logits.numpy(), mean, atol=1e-6)
    with pytest.raises(FeredgeError, match="teacher_tta=ten-crop: needs a teacher"):
        Trainer(dataclasses.replace(cfg, teacher=""))


def test_resume_needs_only_the_run_folder(prepared_fer, tmp_path):
    """`feredge train --out RUN --resume` continues with the run's saved settings; a changed one is refused."""
    out = tmp_path / "run"
    first = CliRunner().invoke(cli, ["train", "--data", str(prepared_fer), "--out", str(out), "--device", "cpu",
                                     "--epochs", "2", "--batch-size", "16", "--stop-after", "1",
                                     "--set", "val_fraction=0.25", "--set", f"model_kwargs={json.dumps(SMALL)}"])
    assert first.exit_code == 0, first.output
    result = CliRunner().invoke(cli, ["train", "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in json.loads((out / "log.json").read_text())] == [1, 2]
    changed = CliRunner().invoke(cli, ["train", "--out", str(out), "--resume", "--batch-size", "8"])
    assert changed.exit_code != 0 and "batch_size 16 -> 8" in changed.output
