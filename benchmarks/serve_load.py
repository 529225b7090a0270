"""Load on `feredge serve`: 1, 4, 16 and 64 concurrent clients, each sending one-face requests to model
``fer`` on a Triton server on 127.0.0.1 for a bounded time and count. Reports throughput, p50/p99 latency,
the mean batch size Triton formed (from its metrics) and errors; then floods a server with a small queue
to show that requests past the limit are refused with an error, none lost, and the server stays up.

    python benchmarks/serve_load.py [--seconds 5] [--max-requests 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from feredge.commands.serve.repository import write_python_repository  # noqa: E402
from feredge.commands.serve.triton import Ports, TritonServer  # noqa: E402
from feredge.export.triton import Batching  # noqa: E402
from feredge.weights import resolve  # noqa: E402


def load(url: str, clients: int, seconds: float, max_requests: int, faces: int = 1) -> dict:
    import tritonclient.http as th

    x = np.zeros((faces, 1, 48, 48), np.float32)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    budget = [max_requests]
    end = time.perf_counter() + seconds

    def worker() -> None:
        client = th.InferenceServerClient(url)
        inp = th.InferInput("input", x.shape, "FP32")
        inp.set_data_from_numpy(x)
        while time.perf_counter() < end:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            t0 = time.perf_counter()
            try:
                client.infer("fer", [inp])
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1000)
            except Exception as exc:  # the server's refusal (queue full) or a transport error
                with lock:
                    errors.append(str(exc)[:120])

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return {"clients": clients, "requests": len(latencies) + len(errors), "ok": len(latencies), "errors": len(errors),
            "error_examples": sorted(set(errors))[:2], "throughput_per_s": len(latencies) / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=20000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = resolve(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = write_python_repository(Path(tmp) / "repo", model, Batching(max_batch=64, max_queue_delay_us=500))
        ports = Ports(18200, 18201, 18202)
        with TritonServer(repo, Path(tmp), ports) as server:
            print(f"Triton ready in {server.wait_ready():.1f} s")
            for clients in (1, 4, 16, 64):
                before = server.counts()
                row = load(server.url, clients, args.seconds, args.max_requests)
                after = server.counts()
                execs = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
                row["mean_batch"] = (after["nv_inference_count"] - before["nv_inference_count"]) / max(execs, 1)
                rows.append(row)
                print(f"{clients:3d} clients: {row['throughput_per_s']:7.1f} req/s  p50 {row['p50_ms']:6.2f} ms  "
                      f"p99 {row['p99_ms']:7.2f} ms  mean batch {row['mean_batch']:5.2f}  errors {row['errors']}", flush=True)
        repo = write_python_repository(Path(tmp) / "small", model, Batching(max_batch=8, max_queue_size=4))
        with TritonServer(repo, Path(tmp), Ports(18210, 18211, 18212)) as server:
            server.wait_ready()
            flood = load(server.url, 64, args.seconds, args.max_requests, faces=8)
            alive = urllib.request.urlopen(f"http://{server.url}/v2/health/ready").status == 200
            flood.update(queue_limit=4, server_ready_after=alive)
            print(f"flood (64 clients x 8 faces, queue limit 4): {flood['ok']} served, {flood['errors']} refused "
                  f"({flood['error_examples'][:1]}), {flood['requests']} sent; server ready after: {alive}")
    if args.json:
        args.json.write_text(json.dumps({"model": str(model), "rows": rows, "flood": flood}, indent=2))


if __name__ == "__main__":
    main()
