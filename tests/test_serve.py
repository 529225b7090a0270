"""feredge serve: a real Triton Inference Server (the binary from nvidia-pytriton) started on loopback ports,
queried over HTTP and gRPC, its dynamic batching and queue limit exercised, stopped with SIGTERM; every
config.pbtxt parsed with Triton's own protobuf schema."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from feredge.commands.serve.repository import write_python_repository
from feredge.export.triton import Batching, write_export_repository
from feredge.metrics import softmax
from feredge.weights import shipped

GROUP = Path(__file__).resolve().parents[1] / "feredge" / "media" / "group.jpg"


def _free_ports(n: int = 3) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _parse(config: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(config.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("tritonclient.http")
    from feredge.commands.serve.triton import Ports, TritonServer, triton_root
    from feredge.errors import FeredgeError

    try:
        triton_root()
    except FeredgeError as exc:
        pytest.skip(str(exc))
    work = tmp_path_factory.mktemp("serve")
    repo = write_python_repository(work / "repo", shipped("feredge-s"), Batching(max_batch=8, max_queue_size=4))
    srv = TritonServer(repo, work, Ports(*_free_ports()))
    srv.wait_ready(180)
    yield srv
    srv.stop()


def test_configs_parse_with_tritons_schema(tmp_path):
    repo = write_python_repository(tmp_path / "py", shipped("feredge-s"), Batching(max_batch=32, instances=2))
    fer = _parse(repo / "fer" / "config.pbtxt")
    assert (fer.name, fer.backend, fer.max_batch_size) == ("fer", "python", 32)
    assert list(fer.input[0].dims) == [1, 48, 48] and list(fer.output[0].dims) == [7]
    assert fer.output[0].name == "probabilities" and fer.instance_group[0].count == 2
    assert fer.dynamic_batching.default_queue_policy.max_queue_size == 256
    frame = _parse(repo / "fer_frame" / "config.pbtxt")
    assert frame.max_batch_size == 0 and list(frame.input[0].dims) == [-1]
    files = write_export_repository(tmp_path / "triton", shipped("feredge-s"), Batching(max_batch=16))
    exported = _parse(files["config"])
    assert (exported.backend, exported.max_batch_size, exported.output[0].name) == ("onnxruntime", 16, "logits")
    assert files["model"].read_bytes() == shipped("feredge-s").read_bytes()
    ds = dict(line.split("=", 1) for line in files["deepstream"].read_text().splitlines() if "=" in line)
    assert float(ds["net-scale-factor"]) == pytest.approx(1 / (255 * 0.25))  # feredge-s: (x/255 − 0.5) / 0.25
    assert float(ds["offsets"]) == pytest.approx(127.5) and ds["infer-dims"] == "1;48;48"
    assert ds["model-color-format"] == "2" and ds["network-type"] == "1"


def test_http_and_grpc_give_the_runtime_probabilities(server):
    import tritonclient.grpc as tg
    import tritonclient.http as th

    from feredge.runtime.ort import OrtRunner

    x = np.random.default_rng(0).normal(size=(5, 1, 48, 48)).astype(np.float32)
    with OrtRunner(shipped("feredge-s")) as runner:
        expected = softmax(runner.infer(x))
    http = th.InferenceServerClient(server.url)
    assert http.is_server_ready() and http.is_model_ready("fer") and http.is_model_ready("fer_frame")
    inp = th.InferInput("input", x.shape, "FP32")
    inp.set_data_from_numpy(x)
    np.testing.assert_allclose(http.infer("fer", [inp]).as_numpy("probabilities"), expected, atol=1e-6)
    grpc = tg.InferenceServerClient(f"127.0.0.1:{server.ports.grpc}")
    ginp = tg.InferInput("input", x.shape, "FP32")
    ginp.set_data_from_numpy(x)
    np.testing.assert_allclose(grpc.infer("fer", [ginp]).as_numpy("probabilities"), expected, atol=1e-6)


def test_frame_model_matches_predict(server, tmp_path):
    import tritonclient.http as th

    from feredge.commands.predict import predict_images

    data = np.frombuffer(GROUP.read_bytes(), np.uint8)
    inp = th.InferInput("image", data.shape, "UINT8")
    inp.set_data_from_numpy(data)
    faces = json.loads(th.InferenceServerClient(server.url).infer("fer_frame",
                                                                  [inp]).as_numpy("faces").tobytes())["faces"]
    local = predict_images([GROUP], shipped("feredge-s"), out=tmp_path)["results"][0]["faces"]
    assert [f["label"] for f in faces] == [f["label"] for f in local]
    bad = th.InferInput("image", [4], "UINT8")
    bad.set_data_from_numpy(np.zeros(4, np.uint8))
    with pytest.raises(Exception, match="cannot decode the bytes"):
        th.InferenceServerClient(server.url).infer("fer_frame", [bad])


@pytest.mark.parametrize("payload", [b"\x00\x00\x00\x00", b"GIF89a not really", b"\xff\xd8\xff\xe0 cut"],
                         ids=["zeros", "fake GIF header", "JPEG header only"])
def test_undecodable_bytes_are_the_clients_error_400_with_the_reason(server, payload):
    """Bytes that are no picture are bad client input: HTTP 400 with the reason, not a 500."""
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    bad = th.InferInput("image", [len(payload)], "UINT8")
    bad.set_data_from_numpy(np.frombuffer(payload, np.uint8).copy())
    with pytest.raises(InferenceServerException) as caught:
        th.InferenceServerClient(server.url).infer("fer_frame", [bad])
    assert caught.value.status() == "400" and "cannot decode the bytes" in caught.value.message()


def test_dynamic_batching_forms_batches_and_the_queue_limit_rejects_loudly(server):
    import tritonclient.http as th

    client = th.InferenceServerClient(server.url, concurrency=64)
    small, full = np.zeros((1, 1, 48, 48), np.float32), np.zeros((8, 1, 48, 48), np.float32)
    pending = []
    for x in [small] * 16 + [full] * 48:  # single faces first (batched together), then full batches (queue fills)
        inp = th.InferInput("input", x.shape, "FP32")
        inp.set_data_from_numpy(x)
        pending.append(client.async_infer("fer", [inp]))
    ok, rejected, other = 0, 0, []
    for p in pending:
        try:
            p.get_result()
            ok += 1
        except Exception as exc:  # tritonclient raises InferenceServerException with the server's message
            if "queue" in str(exc).lower():
                rejected += 1
            else:
                other.append(str(exc))
    assert ok + rejected == 64 and not other  # every request answered: served, or refused with a reason
    assert ok > 0 and rejected > 0  # 64 at once against max_queue_size 4: the limit is reached
    assert client.is_server_live() and client.is_server_ready()
    metrics = server.counts()
    assert metrics["nv_inference_exec_count"] < metrics["nv_inference_count"]  # requests were batched together


def test_wrong_input_shape_is_an_error_and_the_server_stays_up(server):
    import tritonclient.http as th

    client = th.InferenceServerClient(server.url)
    x = np.zeros((1, 1, 40, 40), np.float32)
    inp = th.InferInput("input", x.shape, "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(Exception, match="unexpected shape|expected"):
        client.infer("fer", [inp])
    assert client.is_server_ready()


def test_sigterm_stops_cleanly(tmp_path):
    pytest.importorskip("tritonclient.http")
    from feredge.commands.serve.triton import Ports, TritonServer
    from feredge.errors import FeredgeError

    repo = write_python_repository(tmp_path / "repo", shipped("feredge-s"), Batching())
    try:
        srv = TritonServer(repo, tmp_path, Ports(*_free_ports()))
    except FeredgeError as exc:
        pytest.skip(str(exc))
    srv.wait_ready(180)
    assert srv.stop() == 0
    with pytest.raises(FeredgeError, match="cannot listen|expected three different"):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        try:
            port = busy.getsockname()[1]
            TritonServer(repo, tmp_path, Ports(port, *_free_ports(2)))
        finally:
            busy.close()


def _serve_until_ready(workdir: Path, *extra: str) -> tuple[int, str]:
    """`feredge serve` as a user runs it: started, waited for until ready, stopped with SIGTERM."""
    import signal
    import subprocess
    import sys
    import time

    http, grpc, metrics = _free_ports()
    argv = [sys.executable, "-m", "feredge", "serve", "--model", "feredge-n", "--workdir", str(workdir),
            "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics), *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, deadline = [], time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Triton ready" in line or not line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    return proc.returncode, "".join(lines) + rest


def test_serve_refuses_an_earlier_workdir_without_overwrite(tmp_path):
    """The real server, twice in one work folder: the second start is refused before anything is written
    or started, and --overwrite replaces the folder."""
    pytest.importorskip("tritonclient.http")
    from click.testing import CliRunner

    from feredge.commands.cli import cli
    from feredge.commands.serve.triton import triton_root
    from feredge.errors import FeredgeError

    try:
        triton_root()
    except FeredgeError as exc:
        pytest.skip(str(exc))
    work = tmp_path / "work"
    code, output = _serve_until_ready(work)
    assert code == 0 and "Triton ready" in output and "Triton stopped (exit code 0)" in output, output
    before = {p: p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}
    again = CliRunner().invoke(cli, ["serve", "--model", "feredge-n", "--workdir", str(work), "--http-port",
                                     str(_free_ports(1)[0])])
    assert again.exit_code != 0 and "pass --overwrite" in again.output and "Traceback" not in again.output
    assert {p: p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()} == before
    code, output = _serve_until_ready(work, "--overwrite")
    assert code == 0 and "Triton ready" in output, output


def test_run_camera_through_the_server_matches_local(server, tmp_path):
    from click.testing import CliRunner

    from feredge.commands.cli import cli

    runs = {}
    for name, extra in (("local", []), ("remote", ["--server", server.url])):
        out = tmp_path / f"{name}.jsonl"
        result = CliRunner().invoke(cli, ["run-camera", "--source", str(GROUP.parent), "--jsonl", str(out),
                                          "--model", "feredge-s", *extra])
        assert result.exit_code == 0, result.output
        runs[name] = [json.loads(line) for line in out.read_text().splitlines()]
    local, remote = runs["local"][0]["faces"], runs["remote"][0]["faces"]
    assert [f["label"] for f in local] == [f["label"] for f in remote] and len(local) == 3
    for a, b in zip(local, remote):
        assert max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in a["probabilities"]) <= 1e-3
    busy = _free_ports(1)[0]
    result = CliRunner().invoke(cli, ["run-camera", "--source", str(GROUP.parent), "--server", f"127.0.0.1:{busy}"])
    assert result.exit_code != 0 and "no `feredge serve` model 'fer' there" in result.output


def test_a_served_model_other_than_the_local_one_is_refused(server):
    from feredge.errors import FeredgeError
    from feredge.recognizer import Recognizer

    with pytest.raises(FeredgeError, match="serves feredge-s, but the local model is feredge-n"):
        Recognizer("feredge-n", server=f"http://{server.url}")  # the scheme is accepted too
