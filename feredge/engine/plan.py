"""What to ask TensorRT for, per version — decided without importing TensorRT.

TensorRT 8.5/8.6 (JetPack 5.1/6.0) has no strongly typed networks: explicit batch plus
BuilderFlag.FP16/INT8 (with a Q/DQ ONNX, or the calibration cache on the implicit path).
TensorRT 10.x builds strongly typed networks from an ONNX whose precision is baked in (FP16 ONNX,
Q/DQ ONNX); the weak flags are deprecated since 10.12 and kept only as an explicit fallback.
TensorRT 11 is strongly typed only; implicit INT8 calibration was removed in 11.0.
TensorRT for RTX (1.x, its own version line) is strongly typed only: precision comes from the ONNX; it has
no FP16/INT8 builder flags, no calibrators and no DLA. REQUIRE_USER_ALLOCATION lets its engines be captured
into CUDA graphs (feredge always binds its own buffers).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from feredge.artifact import Artifact
from feredge.config import PRECISIONS
from feredge.engine.tensorrt import REGULAR, RTX
from feredge.errors import FeredgeError


@dataclass(frozen=True)
class BuildPlan:
    trt_major: int
    precision: str
    onnx_kind: str  # which ONNX to parse: fp32 | fp16 | qdq
    network_flags: tuple[str, ...] = ()  # NetworkDefinitionCreationFlag names
    builder_flags: tuple[str, ...] = ()  # BuilderFlag names
    calibration_cache: bool = False  # implicit INT8 from a TensorRT calibration cache
    notes: tuple[str, ...] = field(default_factory=tuple)
    flavour: str = REGULAR  # tensorrt | tensorrt-rtx


def parse_version(version: str) -> tuple[int, int]:
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        raise FeredgeError(f"cannot parse TensorRT version {version!r}") from None
    return major, minor


def _rtx_plan(trt_version: str, precision: str, implicit_int8: bool, weakly_typed: bool, dla: bool) -> BuildPlan:
    """TensorRT for RTX: strongly typed from the fp32 / fp16 / Q/DQ ONNX, nothing else to choose."""
    major, _ = parse_version(trt_version)
    refused = {"--implicit-int8": (implicit_int8, "it has no INT8 calibrators; INT8 comes from the Q/DQ ONNX "
                                                  "(drop --implicit-int8)"),
               "weak typing": (weakly_typed, "its networks are strongly typed; precision comes from the ONNX"),
               "--dla-core": (dla, "it targets RTX GPUs, which have no DLA; build on the Jetson with its TensorRT")}
    for option, (given, why) in refused.items():
        if given:
            raise FeredgeError(f"{option}: TensorRT for RTX {trt_version} does not support it: {why}")
    onnx_kind = {"fp32": "fp32", "fp16": "fp16", "int8": "qdq"}[precision]
    return BuildPlan(major, precision, onnx_kind, ("STRONGLY_TYPED",), ("REQUIRE_USER_ALLOCATION",), flavour=RTX)


def build_plan(trt_version: str, precision: str, implicit_int8: bool = False, weakly_typed: bool = False,
               dla: bool = False, flavour: str = REGULAR) -> BuildPlan:
    """Network and builder flags for ``precision`` on TensorRT ``trt_version`` of ``flavour``."""
    if precision not in PRECISIONS:
        raise FeredgeError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if flavour == RTX:
        return _rtx_plan(trt_version, precision, implicit_int8, weakly_typed, dla)
    major, minor = parse_version(trt_version)
    onnx_kind = {"fp32": "fp32", "fp16": "fp16", "int8": "qdq"}[precision]
    if (major, minor) < (8, 5):
        hint = " (1.x is TensorRT for RTX's numbering: pass flavour='tensorrt-rtx')" if major == 1 else ""
        raise FeredgeError(f"TensorRT {trt_version} is not supported (feredge needs 8.5 or newer: JetPack 5.1+){hint}")
    if major >= 11 and (implicit_int8 or weakly_typed):
        raise FeredgeError(f"TensorRT {trt_version} removed implicit INT8 calibration and weak typing; "
                           "use the Q/DQ ONNX (default) instead")
    if implicit_int8 and precision != "int8":
        raise FeredgeError("a calibration cache only applies to --int8")
    dla_flags = ("GPU_FALLBACK",) if dla else ()
    if major == 8 or weakly_typed:
        flags: tuple[str, ...] = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
        network = ("EXPLICIT_BATCH",) if major == 8 else ()
        kind = "fp32" if (implicit_int8 or precision == "fp16") else onnx_kind
        notes = ("weak typing is deprecated since TensorRT 10.12",) if major >= 10 else ()
        return BuildPlan(major, precision, kind, network, flags + dla_flags, implicit_int8, notes)
    if implicit_int8:
        return BuildPlan(major, precision, "fp32", (), ("INT8",) + dla_flags, True,
                         ("implicit INT8 calibration is deprecated since TensorRT 10.1",))
    return BuildPlan(major, precision, onnx_kind, ("STRONGLY_TYPED",), dla_flags)


@dataclass(frozen=True)
class BatchProfile:
    min: int
    opt: int
    max: int

    @classmethod
    def of(cls, batch: int | None, max_batch: int) -> BatchProfile:
        """Fixed ``batch``, or dynamic 1..max_batch optimised for max_batch/2 (at least 1)."""
        if batch:
            return cls(batch, batch, batch)
        if max_batch < 1:
            raise FeredgeError(f"--max-batch {max_batch}: expected a positive integer")
        return cls(1, max(1, max_batch // 2), max_batch)


def engine_key(onnx_sha256: str, precision: str, profile: BatchProfile, gpu_name: str,
               compute_capability: str, trt_version: str, dla_core: int | None = None) -> dict:
    """Everything an engine depends on; its digest names the cached engine file."""
    fields = {"onnx_sha256": onnx_sha256, "precision": precision, "batch_profile": asdict(profile),
              "gpu_name": gpu_name, "compute_capability": compute_capability, "tensorrt": trt_version,
              "dla_core": dla_core}
    fields["digest"] = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    return fields


def rtx_engine_key(onnx_sha256: str, precision: str, profile: BatchProfile, archs: tuple[str, ...],
                   trt_version: str) -> dict:
    """A TensorRT-for-RTX engine depends on no GPU at build time: the architectures it targets replace the GPU."""
    fields = {"onnx_sha256": onnx_sha256, "precision": precision, "batch_profile": asdict(profile),
              "flavour": RTX, "compute_capabilities": list(archs), "tensorrt": trt_version}
    fields["digest"] = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    return fields


def engine_artifact(source: Artifact, onnx_sha256: str, key: dict, plan: BuildPlan, **details) -> Artifact:
    """The sidecar of an engine built from the ONNX described by ``source``: the builder writes exactly this
    (``details``: what the build measured, e.g. its tensor names and seconds)."""
    precision = "int8-calib" if plan.calibration_cache else "int8-qdq" if plan.precision == "int8" else plan.precision
    versions = {plan.flavour: key["tensorrt"]}
    return source.derive("engine", precision, sources={"onnx": onnx_sha256}, engine_key=key, versions=versions,
                         plan=asdict(plan), batch_profile=key["batch_profile"], tensorrt_flavour=plan.flavour,
                         **details)
