"""torch → ONNX (opset ≥ 17, dynamic batch, metadata) → onnxsim → parity check against PyTorch."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from feredge import artifact
from feredge._optional import require
from feredge.artifact import Artifact, file_sha256, onnx_properties
from feredge.errors import FeredgeError
from feredge.ort_session import session_options

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def torch_to_onnx(model, spec, batch: int | None, opset: int = OPSET) -> bytes:
    """Serialized ONNX of ``model``; ``batch=None`` makes the batch axis dynamic."""
    torch = require("torch")
    if opset < 17:
        raise FeredgeError(f"opset {opset}: feredge exports opset 17 or newer")
    from feredge.models.nano import fuse_for_deploy

    model = fuse_for_deploy(model).float().cpu()
    dummy = torch.zeros(batch or 1, spec.channels, spec.size, spec.size)
    buf = io.BytesIO()
    dynamic = None if batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    torch.onnx.export(model, (dummy,), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)
    return buf.getvalue()


def simplify(onnx_bytes: bytes):
    """onnxsim pass (constant folding, BN fusion leftovers, shape cleanup); returns an onnx.ModelProto."""
    onnx = require("onnx")
    onnxsim = require("onnxsim")
    model = onnx.load_from_string(onnx_bytes)
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise FeredgeError("onnxsim could not validate the simplified model against the original; not exporting it")
    return simplified


def ort_logits(path: Path, x: np.ndarray, exact_qdq: bool | None = None, chunk: int = 256) -> np.ndarray:
    """ONNX Runtime's logits for a float32 batch on the CPU, in chunks (padded to a fixed batch axis).
    The export checks its files with ONNX Runtime itself, beneath the runtime's runners (which run them
    afterwards and check their description again); ``exact_qdq`` as in ``feredge.ort_session``."""
    ort = require("onnxruntime")
    options = session_options(exact_qdq)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    fixed = source.shape[0] if isinstance(source.shape[0], int) and source.shape[0] > 0 else 0
    step, outs = fixed or chunk, []
    for start in range(0, len(x), step):
        part = x[start:start + step]
        padded = np.concatenate([part, np.zeros((step - len(part), *part.shape[1:]), part.dtype)]) if fixed else part
        outs.append(session.run(None, {source.name: np.ascontiguousarray(padded, np.float32)})[0][:len(part)])
    return np.concatenate(outs)


def parity(model, onnx_path: Path, images: np.ndarray, spec, atol: float = 1e-3) -> dict:
    """Compare PyTorch and ONNX Runtime logits on real images; beyond ``atol`` is an error."""
    torch = require("torch")
    from feredge.vision.preprocess import preprocess_faces

    x = preprocess_faces(images, spec)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    got = ort_logits(onnx_path, x)
    report = {"n": len(x), "max_abs_diff": float(np.abs(ref - got).max()),
              "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean())}
    if report["max_abs_diff"] > atol:
        raise FeredgeError(f"{onnx_path}: ONNX differs from PyTorch by {report['max_abs_diff']:.2e} "
                           f"(> {atol:.0e}) on {len(x)} images; top-1 agreement {report['top1_agreement']:.4f}")
    return report


def save_onnx(proto, out: Path, info: Artifact, check: bool = True) -> Path:
    """Stamp ``info`` into the ONNX metadata, check the graph, write the file and its sidecar atomically.

    ``check=False`` for graphs from ONNX Runtime's converters (fp16, Q/DQ), whose node order the strict
    checker rejects although ONNX Runtime and TensorRT load them."""
    onnx = require("onnx")
    del proto.metadata_props[:]
    for key, value in onnx_properties(info).items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    if check:
        onnx.checker.check_model(proto)
    artifact.atomic_write_bytes(Path(out), proto.SerializeToString())
    artifact.write(out, info)
    return Path(out)


def export_onnx(model, info: Artifact, out: Path, batch: int | None, simplify_graph: bool = True,
                source: Path | None = None) -> tuple[Path, Artifact]:
    """Write ``out`` (.onnx, fp32) described as made from checkpoint ``info``; returns its path and description."""
    onnx = require("onnx")
    raw = torch_to_onnx(model, info.input_spec, batch)
    proto = simplify(raw) if simplify_graph else onnx.load_from_string(raw)
    derived = info.derive("onnx", "fp32", sources={"checkpoint": file_sha256(source)} if source else {},
                          versions={"onnx_opset": str(OPSET)}, batch="dynamic" if batch is None else batch)
    return save_onnx(proto, out, derived), derived
