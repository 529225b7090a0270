"""Runtime: runners behind one interface, the predict path end to end, and no torch on that path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feredge.errors import FeredgeError
from feredge.runtime.loader import load_runner

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_onnx(tiny_checkpoint, tiny_export):
    return tiny_export / "best.onnx", tiny_checkpoint


def test_runners_agree(small_onnx):
    onnx_path, ckpt = small_onnx
    x = np.random.default_rng(0).normal(size=(3, 1, 48, 48)).astype(np.float32)
    with load_runner(onnx_path) as ort_runner, load_runner(ckpt) as torch_runner:
        assert ort_runner.backend == "ort" and torch_runner.backend == "torch"
        np.testing.assert_allclose(ort_runner.infer(x), torch_runner.infer(x), atol=1e-4)
        assert ort_runner.info.classes[0] == "angry" and ort_runner.info.kind == "onnx"
        assert torch_runner.info.classes == ort_runner.info.classes and torch_runner.info.kind == "checkpoint"
        assert ort_runner.warmup(2, 2) > 0


def test_ort_io_binding_matches_infer(small_onnx):
    """bind()/enqueue() (the GPU pipeline's entry) on runner-owned buffers give what infer() gives."""
    import ctypes

    from feredge.runtime.ort import OrtRunner

    x = np.random.default_rng(1).normal(size=(3, 1, 48, 48)).astype(np.float32)
    with OrtRunner(small_onnx[0], max_batch=4) as runner:
        assert not runner.gpu_io and not runner.capturable
        expected = runner.infer(x)
        inp, out = runner.bind(3)
        assert runner.bind(1) == (inp, out)  # buffers are sized once for max_batch: addresses never move
        runner.bind(3)
        ctypes.memmove(inp, x.ctypes.data, x.nbytes)
        runner.enqueue(None)
        logits = np.frombuffer((ctypes.c_float * (3 * runner.classes)).from_address(out), np.float32)
        np.testing.assert_allclose(logits.reshape(3, -1), expected, atol=1e-6)
        for bad in (0, 5):
            with pytest.raises(FeredgeError, match=rf"batch of {bad} is outside 1..4"):
                runner.bind(bad)


def test_ort_cuda_without_provider_is_an_error(small_onnx):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(FeredgeError, match="no CUDA execution provider"):
        load_runner(small_onnx[0], device="cuda")


def test_runner_errors(tmp_path):
    with pytest.raises(FeredgeError, match="cannot tell the backend"):
        load_runner(tmp_path / "model.bin")
    with pytest.raises(FeredgeError, match="model file not found"):
        load_runner(tmp_path / "missing.onnx")


def test_compact_onnx_halves_size_keeps_outputs(small_onnx, tmp_path):
    import onnx

    from feredge.export.compact import compact_fp16_storage
    from feredge.runtime.ort import OrtRunner

    proto = onnx.load(str(small_onnx[0]))
    assert compact_fp16_storage(proto) > 0
    onnx.save(proto, str(tmp_path / "c.onnx"))
    x = np.random.default_rng(1).normal(size=(2, 1, 48, 48)).astype(np.float32)
    a = OrtRunner(small_onnx[0]).infer(x)
    b = OrtRunner(tmp_path / "c.onnx").infer(x)
    np.testing.assert_allclose(a, b, atol=2e-2)
    assert (tmp_path / "c.onnx").stat().st_size < 0.7 * small_onnx[0].stat().st_size


def test_predict_runs_without_torch(small_onnx, tmp_path):
    """The inference path (detector, pre-processing, ONNX Runtime) must not import torch."""
    pytest.importorskip("cv2")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from feredge.commands.cli import main\n"
        f"sys.argv = ['feredge', 'predict', {str(ROOT / 'feredge' / 'media' / 'group.jpg')!r}, '--model', "
        f"{str(small_onnx[0])!r}, '--out', {str(tmp_path)!r}, '--json', '--tta', 'hflip']\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    faces = results[0]["faces"]
    assert len(faces) >= 3  # the bundled photo shows at least three people
    assert all(abs(sum(f["probabilities"].values()) - 1) < 1e-3 for f in faces)
    assert (tmp_path / "group.annotated.jpg").stat().st_size > 10_000


def test_help_without_optional_stacks():
    """Every --help works with torch, onnx and TensorRT hidden."""
    code = ("import sys\n"
            "for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt', 'pycuda', 'cv2'): sys.modules[m] = None\n"
            "from click.testing import CliRunner\nfrom feredge.commands.cli import cli\n"
            "for args in ([], ['data'], ['data', 'prepare'], ['train'], ['eval'], ['export'], ['models'],\n"
            "             ['predict']):\n"
            "    r = CliRunner().invoke(cli, [*args, '--help'])\n"
            "    assert r.exit_code == 0, (args, r.output)\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_bad_image_is_one_line_error(small_onnx, tmp_path):
    pytest.importorskip("cv2")
    from click.testing import CliRunner

    from feredge.commands.cli import cli

    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"nope")
    r = CliRunner().invoke(cli, ["predict", str(bad), "--model", str(small_onnx[0]), "--out", str(tmp_path)])
    assert r.exit_code != 0 and "x.jpg: cannot read image" in r.output


def test_eval_accepts_exported_onnx(small_onnx, prepared_fer, tmp_path):
    from click.testing import CliRunner

    from feredge.commands.cli import cli

    onnx_path, ckpt = small_onnx
    reports = {}
    for name, model in (("onnx", onnx_path), ("ckpt", ckpt)):
        r = CliRunner().invoke(cli, ["eval", "--model", str(model), "--data", str(prepared_fer), "--tta", "hflip",
                                     "--out", str(tmp_path / name), "--device", "cpu"])
        assert r.exit_code == 0, r.output
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert reports["onnx"]["confusion_matrix"] == reports["ckpt"]["confusion_matrix"]
    for name, model in (("onnx10", onnx_path), ("ckpt10", ckpt)):  # ten-crop: the one Classifier, any backend
        r = CliRunner().invoke(cli, ["eval", "--model", str(model), "--data", str(prepared_fer), "--tta", "ten-crop",
                                     "--out", str(tmp_path / name), "--device", "cpu"])
        assert r.exit_code == 0, r.output
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert reports["onnx10"]["confusion_matrix"] == reports["ckpt10"]["confusion_matrix"]
