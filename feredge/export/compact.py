"""Halve an ONNX file by storing large fp32 weights as fp16 plus a Cast back to fp32.

Compute stays fp32 (ONNX Runtime and TensorRT fold the Cast at load time); only the weights are
rounded to fp16, which is what the shipped default model's accuracy is measured with.
"""

from __future__ import annotations

from feredge._optional import require

MIN_ELEMENTS = 1024


def compact_fp16_storage(model) -> int:
    """Rewrite ``model`` in place; returns how many initializers were converted."""
    onnx = require("onnx")
    from onnx import helper, numpy_helper

    graph = model.graph
    converted, casts, keep = 0, [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if init.data_type != onnx.TensorProto.FLOAT or arr.size < MIN_ELEMENTS:
            keep.append(init)
            continue
        half = numpy_helper.from_array(arr.astype("float16"), init.name + "__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=init.name + "__to_fp32"))
        converted += 1
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return converted
