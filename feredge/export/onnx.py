"""torch → ONNX (opset ≥ 17, dynamic batch, metadata) → onnxsim; the file stamped with its description."""

from __future__ import annotations

import io
from pathlib import Path

from feredge import artifact
from feredge._optional import require
from feredge.artifact import Artifact, file_sha256, onnx_properties
from feredge.errors import FeredgeError

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
    # what the runtime needs to classify as the checkpoint does: a model trained on crops sees the centre crop
    kept = {k: info.details[k] for k in ("eval_crop",) if info.details.get(k) is not None}
    derived = info.derive("onnx", "fp32", sources={"checkpoint": file_sha256(source)} if source else {},
                          versions={"onnx_opset": str(OPSET)}, batch="dynamic" if batch is None else batch, **kept)
    return save_onnx(proto, out, derived), derived
