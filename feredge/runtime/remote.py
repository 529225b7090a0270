"""The model behind `feredge serve`, used from another process: pre-processed faces go to Triton's model
``fer`` over HTTP as one request. Pre-processing stays local (in the `Classifier`), so the served model must
match the local file's description (same model, input and classes), which is read from its sidecar."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge import artifact
from feredge._optional import require
from feredge.errors import FeredgeError
from feredge.runtime.base import Runner, TensorSpec


def host_port(url: str) -> str:
    """``host:port`` of `feredge serve`'s HTTP endpoint; an ``http://`` prefix is accepted, other schemes not."""
    if url.startswith("http://"):
        url = url[len("http://"):].rstrip("/")
    if "://" in url or "/" in url or not url.rpartition(":")[2].isdigit():
        raise FeredgeError(f"server {url!r}: expected host:port of `feredge serve`'s HTTP endpoint, "
                           "e.g. 127.0.0.1:8000")
    return url


class RemoteRunner(Runner):
    """A Runner whose model runs in `feredge serve`. The served model answers probabilities; ``infer``
    returns their logarithm, which differs from the logits by one constant per face, so the Classifier's
    averaging of views and its softmax give the same numbers as a local runner."""

    backend = "remote"

    def __init__(self, path: Path, url: str):
        super().__init__(path)
        self.info = artifact.read(self.path)
        th = require("tritonclient.http")
        self.url = url = host_port(url)
        try:
            self.th, self.client = th, th.InferenceServerClient(url)
            meta = self.client.get_model_metadata("fer")
            config = self.client.get_model_config("fer")
        except Exception as exc:  # connection refused, DNS, HTTP errors: all say the server is not usable
            raise FeredgeError(f"server {url}: no `feredge serve` model 'fer' there ({str(exc)[:120]})") from None
        served = config.get("parameters", {}).get("feredge_model", {})
        info = self.info
        if served.get("string_value", info.model) != info.model:
            raise FeredgeError(f"server {url}: serves {served['string_value']}, but the local model is {info.model}; "
                               "pass the served model locally too (crops are made here for it)")
        s = info.input_spec
        dims = [int(d) for d in meta["inputs"][0]["shape"][1:]]
        width = int(meta["outputs"][0]["shape"][-1])
        if dims != [s.channels, s.size, s.size] or width != len(info.classes):
            raise FeredgeError(f"server {url}: serves input {dims} → {width} classes, but the local model expects "
                               f"{[s.channels, s.size, s.size]} → {len(info.classes)}; use the served model "
                               "locally too")
        self.max_batch = int(config.get("max_batch_size") or self.max_batch)

    def input_spec(self) -> TensorSpec:
        s = self.info.input_spec
        return TensorSpec("input", (-1, s.channels, s.size, s.size), "float32")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        inp = self.th.InferInput("input", list(batch.shape), "FP32")
        inp.set_data_from_numpy(np.ascontiguousarray(batch, np.float32))
        probs = self.client.infer("fer", [inp]).as_numpy("probabilities")
        return np.log(np.maximum(probs, np.finfo(np.float32).tiny)).astype(np.float32)

    def close(self) -> None:
        self.client.close()
