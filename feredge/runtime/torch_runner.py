"""torch runner for a feredge checkpoint: eager, or a captured CUDA graph for a fixed batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feredge._optional import require
from feredge.runtime.base import Runner, TensorSpec


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, path: Path, device: str = "cpu", cuda_graph: bool = False):
        super().__init__(path)
        self.torch = require("torch")
        from feredge.models.checkpoint import load_checkpoint
        from feredge.models.device import torch_device

        self.model, self.info = load_checkpoint(self.path)
        self.device = torch_device(device)
        self.model.to(self.device)
        self.cuda_graph = cuda_graph and self.device.type == "cuda"
        self._graphs: dict[int, tuple] = {}

    def input_spec(self) -> TensorSpec:
        s = self.info.input_spec
        return TensorSpec("input", (-1, s.channels, s.size, s.size), "float32")

    def _graph(self, shape: tuple):
        """Capture (once per batch size) a CUDA graph of the forward pass into static buffers."""
        torch = self.torch
        if shape[0] not in self._graphs:
            static_in = torch.zeros(shape, device=self.device)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(3):
                    self.model(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.no_grad():
                static_out = self.model(static_in)
            self._graphs[shape[0]] = (graph, static_in, static_out)
        return self._graphs[shape[0]]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.cuda_graph:
            graph, static_in, static_out = self._graph(tuple(x.shape))
            static_in.copy_(x, non_blocking=True)
            graph.replay()
            return static_out.float().cpu().numpy()
        with torch.no_grad():
            return self.model(x.to(self.device)).float().cpu().numpy()
