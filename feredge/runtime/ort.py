"""ONNX Runtime runner: CPU everywhere, CUDA execution provider when onnxruntime-gpu is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.runtime.base import Runner, TensorSpec


class OrtRunner(Runner):
    backend = "ort"

    def __init__(self, path: Path, device: str = "cpu", threads: int = 0, optimize: bool = True):
        """``optimize=False`` runs Q/DQ nodes as written (exact quantisation arithmetic in float) instead of
        fusing them into ONNX Runtime's int8 kernels, whose u8·s8 products saturate on x86 CPUs without VNNI."""
        super().__init__(path)
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if not optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        self.providers = self.session.get_providers()
        self._input = self.session.get_inputs()[0]
        from feredge.export.metadata import get_onnx_metadata

        raw = self.session.get_modelmeta().custom_metadata_map
        self.meta = get_onnx_metadata(_Props(raw))

    def input_spec(self) -> TensorSpec:
        return TensorSpec(self._input.name, tuple(self._input.shape), self._input.type)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self._input.name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return out.astype(np.float32, copy=False)

    def close(self) -> None:
        self.session = None


class _Props:
    """Adapts ORT's custom metadata map to the metadata_props list the ONNX helpers read."""

    def __init__(self, mapping: dict[str, str]):
        self.metadata_props = [type("P", (), {"key": k, "value": v}) for k, v in mapping.items()]
