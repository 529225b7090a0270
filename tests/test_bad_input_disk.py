"""A full disk, a killed save and two runs in one folder, each with its exact input: a file-size limit
(RLIMIT_FSIZE, what a full disk does to a write) under `data prepare --overwrite` and a checkpoint save; the
hidden temporary file a kill -9 leaves; the leftovers of a first save killed before its state; a truncated
last.safetensors; a second `feredge train` into a folder a running one writes."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from feredge.commands.cli import cli

SMALL = {"widths": [8, 16, 16, 16], "depths": [1, 1, 1, 1], "stem": 8}


def _train_args(data: Path, out: Path, *more: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--batch-size", "16", "--device", "cpu",
            "--set", "val_fraction=0.25", "--set", f"model_kwargs={json.dumps(SMALL)}", *more]


def _feredge(args: list[str], fsize: int | None = None, **popen) -> subprocess.CompletedProcess:
    """`feredge ARGS` in its own process, its files limited to ``fsize`` bytes (writes beyond fail with EFBIG)."""
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([sys.executable, "-m", "feredge", *args], capture_output=True, text=True,
                          preexec_fn=limit, timeout=300, **popen)


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


@pytest.fixture(scope="module")
def finished(prepared_fer, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("disk") / "run"
    result = CliRunner().invoke(cli, _train_args(prepared_fer, out, "--epochs", "2", "--stop-after", "1"))
    assert result.exit_code == 0, result.output
    return out


def test_prepare_overwrite_on_a_full_disk_is_one_line_and_keeps_the_old_dataset(fer_tree, prepared_fer, tmp_path):
    """`data prepare --overwrite --size 64` with files limited to 50,000 bytes: was an internal-error traceback
    (OSError … requested and … written)."""
    out = shutil.copytree(prepared_fer, tmp_path / "prepared")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    done = _feredge(["data", "prepare", "fer2013", str(fer_tree), "--out", str(out), "--overwrite", "--size", "64"],
                    fsize=50_000)
    assert done.returncode != 0
    line = _one_error_line(done.stderr)
    assert f"{out}: cannot write" in line and "bytes" in line and "free some space" in line
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no staging folder left beside it


def test_a_killed_prepares_staging_folder_is_removed_by_the_next(fer_tree, prepared_fer, tmp_path):
    """kill -9 during `data prepare` leaves `.<out>.staging-<random>/` (a dataset's worth of arrays) beside --out."""
    out = shutil.copytree(prepared_fer, tmp_path / "prepared")
    stale = tmp_path / ".prepared.staging-k1ll9x"
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "images.npy").write_bytes(b"\0" * 10_000)
    done = _feredge(["data", "prepare", "fer2013", str(fer_tree), "--out", str(out), "--overwrite"])
    assert done.returncode == 0, done.stderr
    assert "removed 1 folder(s) an interrupted prepare left (.prepared.staging-k1ll9x)" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]


def test_a_checkpoint_save_on_a_full_disk_is_one_line_and_the_log_waits_for_the_weights(prepared_fer, tmp_path):
    """Files limited to 72,000 bytes: the weights (≈71 kB) fit, the optimiser state (≈75 kB) does not. Was a
    traceback (Errno 27 File too large) with log.json/log.csv already holding the epoch."""
    out = tmp_path / "run"
    done = _feredge(_train_args(prepared_fer, out, "--epochs", "1"), fsize=72_000)
    assert done.returncode != 0
    line = _one_error_line(done.stderr)
    assert f"{out / 'last_state.pt'}: cannot write" in line and "File too large" in line
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []  # a failed first run leaves no folder
    assert not [n for n in left if n.startswith(("log.", "last", "best", "."))], left  # nothing of the failed epoch
    again = CliRunner().invoke(cli, _train_args(prepared_fer, out, "--epochs", "1"))  # a plain re-run just works
    assert again.exit_code == 0, again.output


def test_a_killed_saves_temporary_file_is_removed_by_the_next_run(finished, prepared_fer, tmp_path):
    """kill -9 inside an atomic write leaves `.last.safetensors.<random>.tmp` (up to 15 MB); resume never removed it."""
    run = shutil.copytree(finished, tmp_path / "run")
    stale = run / ".last.safetensors.k1ll9x.tmp"
    stale.write_bytes(b"\0" * 50_000)
    result = CliRunner().invoke(cli, _train_args(prepared_fer, run, "--epochs", "2", "--resume"))
    assert result.exit_code == 0, result.output
    assert not stale.exists() and "removed 1 temporary file(s) an interrupted save left" in result.output
    assert _hidden(run) == []


def test_a_first_save_killed_before_its_state_can_be_started_again(finished, prepared_fer, tmp_path):
    """Only last.next.safetensors (+ sidecar) and best: `--resume` said "nothing to resume", a plain run said
    "pass --resume" — a loop only --overwrite left."""
    run = tmp_path / "run"
    run.mkdir()
    for src, dst in (("last.safetensors", "last.next.safetensors"), ("best.safetensors", "best.safetensors")):
        shutil.copy(finished / src, run / dst)
        shutil.copy(finished / f"{src}.json", run / f"{dst}.json")
    resumed = CliRunner().invoke(cli, _train_args(prepared_fer, run, "--epochs", "1", "--resume"))
    assert resumed.exit_code != 0 and "no epoch finished saving" in resumed.output
    assert "run the same command without --resume" in resumed.output
    plain = CliRunner().invoke(cli, _train_args(prepared_fer, run, "--epochs", "1"))
    assert plain.exit_code == 0, plain.output
    assert "starting it again and replacing those" in plain.output
    assert not (run / "last.next.safetensors").exists() and (run / "last_state.pt").is_file()


def test_resume_from_a_truncated_last_says_truncated_and_offers_another_file(finished, prepared_fer, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    last = run / "last.safetensors"
    last.write_bytes(last.read_bytes()[:30_000])
    result = CliRunner().invoke(cli, _train_args(prepared_fer, run, "--epochs", "2", "--resume"))
    assert result.exit_code != 0
    assert "last.safetensors: truncated (30,000 of the" in result.output
    assert f"init={last}" not in result.output and f"init={run / 'best.safetensors'}" in result.output


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_first(prepared_fer, tmp_path):
    """Two `feredge train` into one --out both exited 0, leaving one run's best beside the other's last weights."""
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "feredge", *_train_args(prepared_fer, out, "--epochs", "50")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(out.iterdir())) and time.monotonic() < deadline:  # it has begun
            time.sleep(0.1)
        second = CliRunner().invoke(cli, _train_args(prepared_fer, out, "--epochs", "1", "--overwrite"))
        assert second.exit_code != 0
        assert f"another feredge train (pid {first.pid}) is writing this run folder" in second.output
    finally:
        os.kill(first.pid, signal.SIGKILL)  # kill -9: no cleanup runs in it
        first.wait()
    from feredge.train.run_folder import locked

    with locked(out):  # the lock ended with its process
        pass


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    cv2 = pytest.importorskip("cv2")
    folder = tmp_path_factory.mktemp("photos") / "photos"
    folder.mkdir()
    group = cv2.imread(str(Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"))
    for i, width in enumerate((960, 800, 640)):
        cv2.imwrite(str(folder / f"{i}.jpg"), cv2.resize(group, (width, width * 2 // 3)))
    return folder


@pytest.mark.parametrize("option, name, fsize, message", [
    ("--jsonl", "f.jsonl", 1024, "f.jsonl: cannot write"),
    ("--record", "r.avi", 20_000, "r.avi: the recording of 3 frames did not fit"),
    ("--record", "r.mp4", 20_000, "r.mp4: the recording of 3 frames did not fit"),
])
def test_run_camera_outputs_on_a_full_disk_are_one_line(photos, tmp_path, option, name, fsize, message):
    """The JSONL was a traceback (Errno 27); the recording was cut without a word and reported as complete."""
    target = tmp_path / name
    target.write_bytes(b"an earlier recording")
    done = _feredge(["run-camera", "--source", str(photos), option, str(target), "--overwrite"], fsize=fsize)
    assert done.returncode != 0
    assert message in _one_error_line(done.stderr)
    if option == "--record":  # the earlier file stays; what did fit is kept beside it, named in the error
        assert target.read_bytes() == b"an earlier recording" and _hidden(tmp_path) == []
        kept = f"r.incomplete{target.suffix}"
        assert f"are in {kept}" in done.stderr and (tmp_path / kept).is_file()
    else:
        assert all(json.loads(line)["faces"] for line in target.read_text().splitlines())  # whole lines only


def test_ctrl_c_in_the_first_save_leaves_a_run_that_starts_again(prepared_fer, tmp_path, monkeypatch):
    """Ctrl-C while the first epoch's state is written (its weights staged): the next plain run starts over."""
    import feredge.train.run_folder as run_folder

    def interrupted(*args):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    monkeypatch.setattr(run_folder, "write_state", interrupted)
    first = CliRunner().invoke(cli, _train_args(prepared_fer, out, "--epochs", "1"))
    assert first.exit_code == 130 and (out / "last.next.safetensors").is_file()
    monkeypatch.undo()
    resumed = CliRunner().invoke(cli, _train_args(prepared_fer, out, "--epochs", "1", "--resume"))
    assert resumed.exit_code != 0 and "run the same command without --resume" in resumed.output
    again = CliRunner().invoke(cli, _train_args(prepared_fer, out, "--epochs", "1"))
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("last")) == [
        "last.safetensors", "last.safetensors.json", "last_state.pt"]
