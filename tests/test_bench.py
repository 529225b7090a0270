"""feredge bench: tegrastats variants, energy arithmetic, a real (short) CPU bench through the runtime,
reports in every format, Pareto front, compare, and the Jetson-only errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from feredge.commands.bench.report import compare, pareto
from feredge.commands.bench.tegrastats import parse_line, parse_log, summarize
from feredge.commands.cli import cli

LOG = Path(__file__).with_name("data") / "tegrastats_variants.log"


def test_every_tegrastats_variant_parses():
    orin6, orin72, thor, xavier = parse_log(LOG.read_text())
    assert (orin6.gpu_load_pct, orin6.gpu_freq_mhz, orin6.emc_freq_mhz) == (10.0, [1300], 2133)
    assert orin6.rails_mw == {"VDD_GPU_SOC": 2398, "VDD_CPU_CV": 799, "VIN_SYS_5V0": 3523}
    assert orin6.cpu_load_pct == [12.0, 5.0, 3.0, 0.0] and orin6.temps_c["tj"] == 53.2  # "off" cores left out
    assert (orin72.gpu_load_pct, orin72.gpu_freq_mhz) == (12.0, [1300, 1300])
    assert orin72.rails_mw["VIN_SYS_5V0"] == 4500  # inst of inst/avg/max
    assert orin72.t > 1.7e9  # the leading timestamp was read
    assert thor.gpu_load_pct is None and thor.gpu_freq_mhz == [1000, 1000, 1000]
    assert thor.rails_mw == {"VDD_GPU": 12000, "VDD_CPU_SOC_MSS": 8000, "VIN": 30000}
    assert xavier.rails_mw["GPU"] == 155 and xavier.rails_mw["SYS5V"] == 2356 and xavier.gpu_freq_mhz == [318]
    assert xavier.ram_used_mb == 1404 and "SWAP" not in xavier.rails_mw
    assert parse_line("tegrastats: banner") is None


def test_energy_per_inference_from_the_input_rail():
    samples = [parse_line("RAM 1/8MB GR3D_FREQ 50%@1300 VDD_GPU_SOC 2000mW/2000mW VIN_SYS_5V0 5000mW/5000mW"),
               parse_line("RAM 1/8MB GR3D_FREQ 70%@1300 VDD_GPU_SOC 4000mW/3000mW VIN_SYS_5V0 7000mW/6000mW")]
    s = summarize(samples, seconds=2.0, inferences=400)
    assert s["power_source"] == "VIN_SYS_5V0" and s["power_avg_w"] == pytest.approx(6.0)
    assert s["energy_per_inference_mj"] == pytest.approx(6.0 * 2.0 / 400 * 1000)  # 30 mJ
    assert s["gpu_energy_per_inference_mj"] == pytest.approx(3.0 * 2.0 / 400 * 1000)
    assert s["gpu_load_pct"] == pytest.approx(60.0)
    xavier = summarize([parse_log(LOG.read_text())[3]], 1.0, 10)
    assert xavier["power_source"] == "SYS5V"


def test_pareto_front():
    points = [(1.0, 60.0), (2.0, 65.0), (3.0, 64.0), (0.5, 50.0), (2.0, 60.0)]
    assert pareto(points) == [0, 1, 3]


@pytest.fixture(scope="module")
def small_onnx(tiny_checkpoint, tiny_export, tmp_path_factory):
    """The shared tiny model laid out as run/best.safetensors and exp/best.{onnx,fp16.onnx}."""
    import shutil

    out = tmp_path_factory.mktemp("bench")
    shutil.copytree(tiny_checkpoint.parent, out / "run")
    shutil.copytree(tiny_export, out / "exp")
    return out


def _bench(args, out):
    result = CliRunner().invoke(cli, ["bench", *args, "--warmup-ms", "10", "--duration-s", "0.05", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


def test_cpu_bench_through_the_runtime_with_replayed_telemetry(small_onnx, prepared_fer, tmp_path):
    exp = small_onnx / "exp"
    report = _bench(["--model", str(exp / "best.onnx"), "--model", str(exp / "best.fp16.onnx"), "--device", "jetson",
                     "--batch", "1", "4", "--faces", "2", "--data", str(prepared_fer), "--replay-tegrastats", str(LOG)],
                    tmp_path / "a")
    rows = report["rows"]
    assert [(r["precision"], r["measure"], r["batch"]) for r in rows] == [
        ("fp32", "model", 1), ("fp32", "model", 4), ("fp32", "e2e", 2),
        ("fp16", "model", 1), ("fp16", "model", 4), ("fp16", "e2e", 2)]
    for r in rows:
        assert r["runs"] >= 10 and 0 < r["min_ms"] <= r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert 0 <= r["accuracy"] <= 1 and r["size_mb"] > 0 and len(r["sha256"]) == 64
    model_rows = [r for r in rows if r["measure"] == "model"]
    assert all(r["telemetry"]["source"] == "replayed log" and r["telemetry"]["energy_per_inference_mj"] > 0
               for r in model_rows)
    assert "replayed" in report["semantics"]["telemetry"] and report["environment"]["cpu_cores"] >= 1
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"report.json", "report.csv", "report.md",
                                                            "latency_vs_accuracy.png"}
    assert "| environment |" in (tmp_path / "a" / "report.md").read_text()
    assert (tmp_path / "a" / "report.csv").read_text().count("\n") == len(rows) + 1


def test_checkpoint_is_exported_once_then_reused(small_onnx, tmp_path):
    ckpt = small_onnx / "run" / "best.safetensors"
    first = _bench(["--model", str(ckpt), "--precision", "fp32 fp16", "--batch", "1", "--faces", "1", "--device",
                    "cpu"],
                   tmp_path)
    assert [r["precision"] for r in first["rows"] if r["measure"] == "model"] == ["fp32", "fp16"]
    stamp = (tmp_path / "exports" / "best.onnx").stat().st_mtime_ns
    _bench(["--model", str(ckpt), "--precision", "fp32", "fp16", "--batch", "1", "--faces", "1", "--device", "cpu",
            "--overwrite"], tmp_path)
    assert (tmp_path / "exports" / "best.onnx").stat().st_mtime_ns == stamp


def test_a_shipped_model_is_benched_as_predict_runs_it(tmp_path):
    """--precision auto (the default) benches the file predict and the API pick here; a list adds others."""
    from feredge.runtime.loader import model_path

    report = _bench(["--model", "feredge-n", "--batch", "1", "--faces", "1", "--device", "cpu"], tmp_path / "a")
    runs = Path(model_path("feredge-n", precision="auto", device="cpu")).resolve()
    assert {Path(r["artifact"]).resolve() for r in report["rows"]} == {runs}
    both = _bench(["--model", "feredge-n", "--precision", "auto", "fp32", "--batch", "1", "--faces", "1", "--device",
                   "cpu"], tmp_path / "b")
    assert {Path(r["artifact"]).name for r in both["rows"]} == {runs.name, "feredge-n.onnx"}


def test_auto_precision_follows_the_device_the_bench_runs_on(tmp_path):
    """auto is the file predict picks for the device the bench runs on: never the CPU INT8 file on a GPU."""
    from feredge import artifact
    from feredge.commands.bench.run import BenchOptions, resolve_artifacts
    from feredge.runtime.loader import model_path

    opts = BenchOptions(artifacts=["feredge-n"], out=tmp_path)
    picked = {device: resolve_artifacts(opts, print, device) for device in ("cuda", "cpu")}
    for device, [path] in picked.items():
        assert path.resolve() == Path(model_path("feredge-n", precision="auto", device=device)).resolve()
    assert artifact.read(picked["cuda"][0]).precision in ("fp16", "fp32")


def test_compare_pairs_fp16_with_int8_rows():
    def rep(precisions, gpu):
        return {"environment": {"cpu": "x", "gpu": gpu}, "rows": [
            {"model": "m", "precision": p, "measure": "model", "batch": 1, "p50_ms": ms, "accuracy": 0.6}
            for p, ms in precisions]}
    header, rows = compare(rep([("fp16", 2.0)], "A"), rep([("int8", 1.0)], "B"))
    assert rows == [["m", "fp16/int8", "model", "1", "2.000", "1.000", "0.50x", "0.6000", "0.6000"]]
    assert "A p50 ms (A)" in header


@pytest.mark.parametrize("args", [["--batch", "1", "8", "32"], ["--batch", "1 8 32"], ["--batch", "1,8,32"],
                                  ["--batch=1,8", "32"]])
def test_multi_value_options_unquoted_quoted_or_comma_separated(args):
    from feredge.commands.cli import bench_cmd

    ctx = bench_cmd.make_context("bench", [*args, "--faces", "2", "4", "--precision", "fp32", "fp16", "--device",
                                           "cpu"])
    assert ctx.params["batches"] == (1, 8, 32) and ctx.params["faces"] == (2, 4)
    assert ctx.params["precisions"] == ("fp32", "fp16") and ctx.params["device"] == "cpu"


def test_multi_value_defaults_come_from_bench_options():
    from feredge.commands.bench.run import BenchOptions
    from feredge.commands.cli import bench_cmd

    params = bench_cmd.make_context("bench", []).params
    assert (params["batches"], params["faces"], params["precisions"]) == (BenchOptions.batches, BenchOptions.faces,
                                                                          BenchOptions.precisions)


@pytest.mark.parametrize("args, message", [
    (["--device", "jetson"], "this machine is not a Jetson"),
    (["--batch", "0"], "--batch 0: expected positive integers"),
    (["--batch", "one"], "expected integers"),
    (["--precision", "fp8"], "--precision fp8"),
    (["--compare", "nope.json", "nope.json"], "cannot read a bench report"),
    (["--batch", "1", "8", "extra"], "'1 8 extra': expected integers"),
])
def test_bench_errors_are_one_line(args, message, tmp_path, monkeypatch):
    import feredge.commands.bench.run as run

    monkeypatch.setattr(run, "is_jetson", lambda: False)  # CI machines are not Jetsons; make it certain
    result = CliRunner().invoke(cli, ["bench", *args, "--out", str(tmp_path)])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert message in result.output
