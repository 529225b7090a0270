"""How the shipped default model is made from a training run (run once by a maintainer).

    python -m feredge.weights.package runs/feredge-s/best.safetensors

Writes feredge-s.safetensors (weights stored fp16, loaded as fp32) and feredge-s.onnx (fp16-stored
weights, fp32 compute) so both fit the 20 MB budget; every accuracy in the model card is measured on
these shipped files, not on the training checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

from feredge.weights import DEFAULT_ONNX, DEFAULT_WEIGHTS


def package(checkpoint: Path) -> tuple[Path, Path]:
    import onnx

    from feredge.export.compact import compact_fp16_storage
    from feredge.export.onnx import export_onnx
    from feredge.train.checkpoint import load_checkpoint, read_meta, save_checkpoint

    model, _ = load_checkpoint(checkpoint)
    meta = {k: v for k, v in read_meta(checkpoint).items() if k not in ("format", "feredge_version")}
    meta["weights_storage"] = "float16 (loaded as float32)"
    save_checkpoint(model.half(), DEFAULT_WEIGHTS, meta)
    model, _ = load_checkpoint(DEFAULT_WEIGHTS)  # the shipped (fp16-rounded) weights, as fp32
    export_onnx(model.float(), meta, DEFAULT_ONNX, batch=None, source=DEFAULT_WEIGHTS)
    proto = onnx.load(str(DEFAULT_ONNX))
    compact_fp16_storage(proto)
    onnx.save(proto, str(DEFAULT_ONNX))
    return DEFAULT_WEIGHTS, DEFAULT_ONNX


if __name__ == "__main__":
    for path in package(Path(sys.argv[1])):
        print(path, path.stat().st_size)
