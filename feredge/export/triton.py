"""The portable Triton model repository `feredge export --format triton` writes, for the official Triton
containers and Triton on JetPack (``fer/1/model.onnx`` on the ONNX Runtime backend, or ``fer/1/model.plan``
on TensorRT), plus a DeepStream secondary-GIE config; and the batching settings every repository shares
(`feredge serve` writes its Python-backend repository with them too). Triton's TensorRT backend and DeepStream
link the regular TensorRT: a TensorRT-for-RTX plan is refused (`feredge serve` runs one through feredge)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from feredge import artifact
from feredge._optional import require
from feredge.artifact import Artifact
from feredge.config import MAX_BATCH
from feredge.errors import FeredgeError
from feredge.outputs import refuse_existing


@dataclass(frozen=True)
class Batching:
    max_batch: int = MAX_BATCH
    max_queue_delay_us: int = 500
    max_queue_size: int = 256  # requests waiting beyond this are rejected with an error, never dropped silently
    instances: int = 1

    def check(self) -> None:
        for name, value, low in (("--max-batch", self.max_batch, 1), ("--max-queue-delay-us", self.max_queue_delay_us,
                                                                      0),
                                 ("--max-queue-size", self.max_queue_size, 1), ("--instances", self.instances, 1)):
            if value < low:
                raise FeredgeError(f"{name} {value}: expected an integer ≥ {low}")


def refuse_rtx(where: str, version: str) -> None:
    """Triton's TensorRT backend and DeepStream's nvinfer link the regular TensorRT, which cannot load a
    TensorRT-for-RTX plan: refuse one, saying what to do instead."""
    raise FeredgeError(f"{where}: Triton's TensorRT backend and DeepStream need an engine from the regular TensorRT; "
                       f"this is TensorRT for RTX {version}, whose plans they cannot load (serve the .onnx, or "
                       "build the engine with the regular TensorRT on the serving GPU)")


def _rtx_version(info: Artifact) -> str | None:
    """The TensorRT-for-RTX version an engine's description names, None for any other artifact."""
    key = info.engine_key or {}
    return str(key.get("tensorrt")) if info.kind == "engine" and key.get("flavour") == "tensorrt-rtx" else None


def _dims(values) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]"


def _batching_text(b: Batching, kind: str) -> str:
    return (f"dynamic_batching {{\n  max_queue_delay_microseconds: {b.max_queue_delay_us}\n"
            f"  default_queue_policy {{ max_queue_size: {b.max_queue_size} }}\n}}\n"
            f"instance_group [ {{ count: {b.instances} kind: {kind} }} ]\n")


def fer_config(name: str, info: Artifact, backend: str, b: Batching, output: str, parameters: dict[str, str],
               kind: str = "KIND_CPU") -> str:
    """config.pbtxt of a face classifier: [N, C, H, W] FP32 in, [N, classes] FP32 out, dynamic batching."""
    s = info.input_spec
    field = "platform" if backend == "tensorrt_plan" else "backend"
    head = f'name: "{name}"\n{field}: "{backend}"\n'
    params = "".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n' for k, v in parameters.items())
    return (head + f"max_batch_size: {b.max_batch}\n"
            f'input [ {{ name: "input" data_type: TYPE_FP32 dims: {_dims((s.channels, s.size, s.size))} }} ]\n'
            f'output [ {{ name: "{output}" data_type: TYPE_FP32 dims: {_dims([len(info.classes)])} '
            f'label_filename: "labels.txt" }} ]\n' + _batching_text(b, kind) + params)


def _onnx_or_engine_info(model: Path) -> Artifact:
    """The model's description: ONNX files carry it inside their metadata, engines beside them."""
    model = Path(model)
    if model.suffix == ".onnx":
        onnx = require("onnx")
        try:
            proto = onnx.load(str(model), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and friends for files that are not ONNX
            first = str(exc).splitlines()[0][:120] if str(exc) else exc
            raise FeredgeError(f"{model}: not an ONNX model ({first})") from None
        return artifact.from_onnx_properties({p.key: p.value for p in proto.metadata_props}, str(model))
    if model.suffix in (".engine", ".plan"):
        return artifact.read(model)
    raise FeredgeError(f"{model}: expected an exported .onnx or .engine")


def write_export_repository(root: Path, model: Path, b: Batching, overwrite: bool = False) -> dict[str, Path]:
    """For the official Triton containers / Triton on JetPack: fer/config.pbtxt + fer/1/model.onnx|model.plan
    (inputs/outputs as the graph names them: ``input`` → ``logits``), and a DeepStream nvinfer config."""
    b.check()
    info = _onnx_or_engine_info(model)
    if _rtx_version(info):
        refuse_rtx(str(model), str(_rtx_version(info)))
    root = Path(root)
    refuse_existing([root / "fer"], overwrite)
    engine = Path(model).suffix in (".engine", ".plan")
    backend, filename, kind = ("tensorrt_plan", "model.plan", "KIND_GPU") if engine else ("onnxruntime", "model.onnx",
                                                                                          "KIND_CPU")
    (root / "fer" / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, root / "fer" / "1" / filename)
    artifact.atomic_write_text(root / "fer" / "labels.txt", "\n".join(info.classes) + "\n")
    config = fer_config("fer", info, backend, b, "logits", {}, kind)
    files = {"config": artifact.atomic_write_text(root / "fer" / "config.pbtxt", config),
             "model": root / "fer" / "1" / filename,
             "deepstream": artifact.atomic_write_text(root / "deepstream_sgie_fer.txt", deepstream_config(info, model,
                                                                                                          engine)),
             "labels": root / "fer" / "labels.txt"}
    return files


def deepstream_config(info: Artifact, model: Path, engine: bool) -> str:
    """A secondary-GIE (nvinfer) config for the face → expression cascade: nvinfer computes
    net-scale-factor × (pixel − offset), so offsets = 255·mean and net-scale-factor = 1/(255·std)
    (DeepStream has one scale for all channels: per-channel std must be equal)."""
    s = info.input_spec
    if _rtx_version(info):
        refuse_rtx(f"{model}: DeepStream config", str(_rtx_version(info)))
    if len(set(s.std)) != 1:
        raise FeredgeError(f"{model}: input_spec std {list(s.std)} differs per channel; DeepStream's nvinfer takes one "
                           "net-scale-factor")
    mode = {"fp32": 0, "int8-qdq": 1, "int8-calib": 1, "fp16": 2}[info.precision]
    lines = [
        "# DeepStream secondary GIE: classifies the faces a primary face detector (gie-unique-id 1) found.",
        "[property]", "gpu-id=0", f"net-scale-factor={1 / (255 * s.std[0]):.10f}",
        f"offsets={';'.join(f'{255 * m:.4f}' for m in s.mean)}",
        f"model-color-format={2 if s.channels == 1 else 0}",  # 2 = GRAY, 0 = RGB
        f"{'model-engine-file' if engine else 'onnx-file'}={Path(model).name}",
        "labelfile-path=fer/labels.txt", f"infer-dims={s.channels};{s.size};{s.size}",
        "batch-size=16", f"network-mode={mode}", "network-type=1", "process-mode=2", "operate-on-gie-id=1",
        "gie-unique-id=2", "output-blob-names=logits", "classifier-async-mode=0",
        "classifier-threshold=-1000",  # the ONNX outputs logits (not probabilities): let the arg-max always pass
        "maintain-aspect-ratio=1", "symmetric-padding=1",
    ]
    return "\n".join(lines) + "\n"
