"""Start and stop a real Triton Inference Server: the ``tritonserver`` binary and Python backend that the
nvidia-pytriton wheel ships, driven directly with a model repository feredge writes.

Why not pytriton's own Python API: 0.7.0 fails to load a model under Python 3.11 (its tensor store's
multiprocessing uses ``_thread.RLock._recursion_count``), and its Python dependencies pin numpy < 2, which
OpenCV 5 and ONNX Runtime here need. The binary has neither problem, so feredge installs the wheel with
``--no-deps`` and only uses its files (pinned: nvidia-pytriton==0.7.0, Triton 2.59-era server).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from feredge.config import DEVICE
from feredge.errors import FeredgeError
from feredge.runtime.loader import backend_for, resolve_device

DEFAULT_WORKDIR = Path("runs/serve")
#: What `serve` writes in its work folder; either there means an earlier server's files (feredge.outputs).
WORKDIR_FILES = ("repository", "tritonserver.log")
LOAD_TIMEOUT_S = 180.0
HOST = "127.0.0.1"  # loopback: opening the server to the network is the user's explicit choice (--host 0.0.0.0)
INSTALL_HINT = ("pip install --no-deps nvidia-pytriton==0.7.0  (feredge uses only its tritonserver binary and "
                "Python backend; its Python dependencies would pin numpy < 2)")


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    def check(self, host: str) -> None:
        """Three different ports, each free on ``host`` now (another server on them would answer our
        readiness probe and hide a failed start)."""
        values = (self.http, self.grpc, self.metrics)
        if len(set(values)) != 3 or not all(0 < p < 65536 for p in values):
            raise FeredgeError(f"ports {values}: expected three different ports in 1..65535")
        for name, port in zip(("--http-port", "--grpc-port", "--metrics-port"), values):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, port))
                except OSError as exc:
                    raise FeredgeError(f"{name} {port}: cannot listen on {host}:{port} ({exc.strerror}); "
                                       "is another server running there?") from None


def triton_root() -> Path:
    """pytriton/tritonserver inside the installed wheel (found without importing pytriton)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise FeredgeError(f"feredge serve needs the Triton server binary: {INSTALL_HINT}")
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise FeredgeError(f"{root}: no bin/tritonserver in this nvidia-pytriton install; {INSTALL_HINT}")
    return root


def backend_dir(root: Path, workdir: Path) -> Path:
    """A backends/ folder with the Python backend and the stub built for *this* Python (the wheel keeps one
    stub per Python version aside; the backend expects it next to libtriton_python.so)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in (root / "python_backend_stubs").iterdir())
        raise FeredgeError(f"nvidia-pytriton ships Python-backend stubs for {', '.join(have)}, not Python {version}")
    target = Path(workdir) / "backends" / "python"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for item in (root / "backends" / "python").iterdir():
        (target / item.name).symlink_to(item)
    shutil.copy2(stub, target / "triton_python_backend_stub")
    return target.parent


class TritonServer:
    """``with TritonServer(repo, ports, …) as server:`` — started, ready, and stopped on exit."""

    def __init__(self, repository: Path, workdir: Path, ports: Ports = Ports(), host: str = HOST,
                 log: Path | None = None):
        ports.check(host)
        self.repository, self.ports, self.host = Path(repository), ports, host
        root = triton_root()
        backends = backend_dir(root, workdir)
        libs = root.parent.parent / "nvidia_pytriton.libs"
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
        cmd = [str(root / "bin" / "tritonserver"), f"--model-repository={self.repository}",
               f"--backend-directory={backends}", f"--http-address={host}", f"--http-port={ports.http}",
               f"--grpc-address={host}", f"--grpc-port={ports.grpc}", f"--metrics-address={host}",
               f"--metrics-port={ports.metrics}", "--allow-metrics=true", "--allow-gpu-metrics=false",
               "--exit-on-error=true", "--strict-readiness=true"]
        self.log_path = Path(log or Path(workdir) / "tritonserver.log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    @property
    def url(self) -> str:
        return f"{self.host}:{self.ports.http}"

    def wait_ready(self, timeout: float = LOAD_TIMEOUT_S) -> float:
        """Seconds until /v2/health/ready answers 200; a server that exits or times out is an error with its log."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise FeredgeError(f"tritonserver exited with code {self.proc.returncode} while loading; "
                                   f"last lines of {self.log_path}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.25)
        last = self.tail()  # before stop() closes the log
        self.stop()
        raise FeredgeError(f"tritonserver was not ready after {timeout:g} s; last lines of {self.log_path}: {last}")

    def counts(self, model: str = "fer") -> dict[str, float]:
        """``nv_inference_count`` (requests' items) and ``nv_inference_exec_count`` (executions) of ``model``
        from the Prometheus endpoint: their ratio is the mean batch Triton formed."""
        with urllib.request.urlopen(f"http://{self.host}:{self.ports.metrics}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith(("nv_inference_count{", "nv_inference_exec_count{")) and f'model="{model}"' in line:
                out[line.split("{")[0]] = float(line.rsplit(" ", 1)[1])
        return out

    def tail(self, n: int = 3) -> str:
        if not self._log.closed:
            self._log.flush()
        lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        return " | ".join(lines[-n:])

    def terminate(self) -> None:
        """Ask the server to shut down (safe from a signal handler: it does not wait)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (Triton finishes in-flight requests and unloads models), SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(model: Path, batching, ports: Ports = Ports(), host: str = HOST, workdir: Path | None = None,
          overwrite: bool = False, load_timeout: float = LOAD_TIMEOUT_S,
          echo: Callable[[str], None] = print, device: str = DEVICE) -> int:
    """`feredge serve`: write the repository for ``model`` into a fresh work folder (or, with ``overwrite``,
    the given one), run Triton until Ctrl-C or SIGTERM, stop it cleanly; returns its exit code."""
    from feredge.commands.serve.repository import write_python_repository
    from feredge.outputs import output_folder

    model = Path(model)
    if not load_timeout > 0:
        raise FeredgeError(f"--load-timeout {load_timeout}: expected a positive number of seconds")
    if model.suffix == ".safetensors":
        raise FeredgeError(f"{model}: serve an exported model (.onnx or .engine); export it with `feredge export`")
    triton_root()  # before anything is written: a missing server or a busy port leaves no half-used work folder
    ports.check(host)
    workdir = output_folder(workdir, DEFAULT_WORKDIR, WORKDIR_FILES, overwrite, "--workdir")
    repo = write_python_repository(workdir / "repository", model, batching, overwrite=overwrite,
                                   device=resolve_device(device, backend_for(model) or ""))
    server = TritonServer(repo, workdir, ports, host)
    previous = signal.signal(signal.SIGTERM, lambda *_: server.terminate())  # the wait returns once Triton stopped
    try:
        seconds = server.wait_ready(load_timeout)
        echo(f"Triton ready in {seconds:.1f} s: http://{host}:{ports.http}  grpc {host}:{ports.grpc}  "
             f"metrics http://{host}:{ports.metrics}/metrics  models: fer, fer_frame  log: {server.log_path}")
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        code = server.stop()
        signal.signal(signal.SIGTERM, previous)
    echo(f"Triton stopped (exit code {code})")
    return code
