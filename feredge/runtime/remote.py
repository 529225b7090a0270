"""The model behind `feredge serve`, used from another process: pre-processed faces go to Triton's model
``fer`` over HTTP as one request. Pre-processing stays local, so the served model must match the local
file's description (same input, same classes)."""

from __future__ import annotations

import numpy as np

from feredge._optional import require
from feredge.artifact import Artifact
from feredge.errors import FeredgeError


def host_port(url: str) -> str:
    """``host:port`` of `feredge serve`'s HTTP endpoint; an ``http://`` prefix is accepted, other schemes not."""
    if url.startswith("http://"):
        url = url[len("http://"):].rstrip("/")
    if "://" in url or "/" in url or not url.rpartition(":")[2].isdigit():
        raise FeredgeError(f"server {url!r}: expected host:port of `feredge serve`'s HTTP endpoint, e.g. 127.0.0.1:8000")
    return url


class RemoteFer:
    def __init__(self, url: str, info: Artifact):
        th = require("tritonclient.http")
        url = host_port(url)
        try:
            self.th, self.client = th, th.InferenceServerClient(url)
            meta = self.client.get_model_metadata("fer")
            served = self.client.get_model_config("fer").get("parameters", {}).get("feredge_model", {})
        except Exception as exc:  # connection refused, DNS, HTTP errors: all say the server is not usable
            raise FeredgeError(f"server {url}: no `feredge serve` model 'fer' there ({str(exc)[:120]})") from None
        if served.get("string_value", info.model) != info.model:
            raise FeredgeError(f"server {url}: serves {served['string_value']}, but the local model is {info.model}; "
                               "pass the served model locally too (crops are made here for it)")
        s = info.input_spec
        dims = [int(d) for d in meta["inputs"][0]["shape"][1:]]
        width = int(meta["outputs"][0]["shape"][-1])
        if dims != [s.channels, s.size, s.size] or width != len(info.classes):
            raise FeredgeError(f"server {url}: serves input {dims} → {width} classes, but the local model expects "
                               f"{[s.channels, s.size, s.size]} → {len(info.classes)}; use the served model locally too")

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        inp = self.th.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(np.ascontiguousarray(x, np.float32))
        return self.client.infer("fer", [inp]).as_numpy("probabilities")
