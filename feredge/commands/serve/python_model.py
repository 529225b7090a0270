"""The Triton Python-backend model behind `feredge serve` (imported by the generated model.py inside the
server's Python stub; ``triton_python_backend_utils`` exists only there).

Triton's dynamic batcher hands ``execute`` several requests at once: their faces are concatenated into one
batch for one inference, then split back per request, which is where serving many cameras gains.

Numeric tensors cross the stub through DLPack, not ``as_numpy``/``Tensor(name, array)``: the stub in
nvidia-pytriton 0.7.0 was built against NumPy 1 and misreads NumPy 2 arrays ("output tensor shape does not
match size"), while DLPack carries shape and dtype itself.
"""

from __future__ import annotations

import json

import numpy as np

from feredge.errors import FeredgeError


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        from feredge.commands.serve.backend import FerModel, FrameModel

        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.kind = params["feredge_kind"]
        threads, device = int(params.get("threads", "1")), params.get("device", "cpu")
        model = FerModel if self.kind == "fer" else FrameModel
        self.model = model(params["artifact"], threads, device)

    def execute(self, requests):
        import triton_python_backend_utils as pb

        if self.kind == "frame":
            return [self._frame(pb, r) for r in requests]
        arrays = [np.from_dlpack(pb.get_input_tensor_by_name(r, "input")) for r in requests]
        try:
            probs = self.model(np.concatenate(arrays))
        except FeredgeError as exc:
            return [pb.InferenceResponse(error=client_error(pb, exc)) for _ in requests]
        bounds = np.cumsum([0] + [len(a) for a in arrays])
        return [pb.InferenceResponse([pb.Tensor.from_dlpack("probabilities", np.ascontiguousarray(probs[a:b]))])
                for a, b in zip(bounds[:-1], bounds[1:])]

    def _frame(self, pb, request):
        """``image``: the encoded file's bytes as UINT8 [n]; ``faces``: UTF-8 JSON as UINT8 [m] (BYTES tensors
        would need ``as_numpy`` on object arrays, which this stub cannot do under NumPy 2)."""
        encoded = np.from_dlpack(pb.get_input_tensor_by_name(request, "image")).tobytes()
        try:
            out = np.frombuffer(self.model(encoded).encode(), np.uint8).copy()
        except FeredgeError as exc:
            return pb.InferenceResponse(error=client_error(pb, exc))
        return pb.InferenceResponse([pb.Tensor.from_dlpack("faces", out)])


def client_error(pb, exc: FeredgeError):
    """A request the model cannot use (bytes that are no picture, a wrong shape) is the client's error: Triton
    answers INVALID_ARG as HTTP 400 / gRPC INVALID_ARGUMENT with the reason, where a plain error is a 500."""
    code = getattr(pb.TritonError, "INVALID_ARG", None)  # stubs before Triton 23.06 take no code
    return pb.TritonError(str(exc)) if code is None else pb.TritonError(str(exc), code)
