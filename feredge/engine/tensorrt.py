"""Which TensorRT is installed — NVIDIA's regular ``tensorrt`` or TensorRT for RTX — and what each can target.

The one place that imports either: the builder and the runner ask here. TensorRT for RTX (``tensorrt_rtx``,
or its ``tensorrt_rtx_bindings`` module when only the bindings wheel is installed) builds engines without a
GPU for a list of compute capabilities; the regular TensorRT builds for the GPU it runs on.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from feredge.errors import FeredgeError

REGULAR, RTX = "tensorrt", "tensorrt-rtx"
FLAVOURS = (REGULAR, RTX)
#: Import names per flavour, first found wins (the ``tensorrt-rtx`` metapackage adds ``tensorrt_rtx``).
MODULES = {REGULAR: ("tensorrt",), RTX: ("tensorrt_rtx", "tensorrt_rtx_bindings")}
INSTALL = {REGULAR: "NVIDIA's TensorRT (JetPack ships it; on x86 `pip install tensorrt`)",
           RTX: "TensorRT for RTX: pip install 'feredge[rtx]'"}
#: Compute capabilities TensorRT for RTX 1.x targets (``trt.ComputeCapability.SM75`` …) and their GPUs.
RTX_ARCHS = {"7.5": "Turing", "8.0": "Ampere A100", "8.6": "Ampere RTX 30", "8.9": "Ada RTX 40",
             "12.0": "Blackwell RTX 50", "12.1": "Blackwell GB10"}
#: Targets TensorRT for RTX 1.7.1 refuses per precision, with its reason (measured 2026-12-07 on
#: feredge-n/-s: "Cannot compile operation '/head/head.3/Gemm' for Turing (SM75): FP32 GEMM is not supported").
RTX_SKIPS = {"fp32": {"7.5": "Turing has no FP32 GEMM in TensorRT for RTX"},
             "int8": {"7.5": "Turing has no FP32 GEMM in TensorRT for RTX (the Q/DQ graph keeps one)"},
             "fp16": {}}
#: GPUs people ask for that TensorRT for RTX does not target: where they should go instead.
NOT_RTX = {"8.7": "Jetson Orin", "9.0": "H100/H200", "10.0": "B200", "11.0": "Jetson Thor"}


@dataclass(frozen=True)
class TensorRT:
    """An imported TensorRT: its flavour, version and module."""

    flavour: str
    version: str
    module: ModuleType

    @property
    def rtx(self) -> bool:
        return self.flavour == RTX


def _import(flavour: str) -> TensorRT | None:
    for name in MODULES[flavour]:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return TensorRT(flavour, str(module.__version__), module)
    return None


def load(flavour: str, why: str = "this") -> TensorRT:
    """The TensorRT of ``flavour`` (an engine runs only on the flavour that built it), or an install hint."""
    if flavour not in FLAVOURS:
        raise FeredgeError(f"TensorRT flavour {flavour!r}: expected one of {', '.join(FLAVOURS)}")
    found = _import(flavour)
    if found is None:
        raise FeredgeError(f"{why} needs {INSTALL[flavour]}; it is not installed")
    return found


def detect(prefer: str | None = None) -> TensorRT:
    """The installed TensorRT: ``prefer`` when both are, else the regular one (it builds for this GPU)."""
    order = [prefer] + [f for f in FLAVOURS if f != prefer] if prefer else list(FLAVOURS)
    for flavour in order:
        found = _import(flavour)
        if found is not None:
            return found
    raise FeredgeError(f"building an engine needs TensorRT: install {INSTALL[RTX]} (builds without a GPU, for RTX "
                       f"GPUs), or {INSTALL[REGULAR]}")


def parse_archs(text: str) -> tuple[str, ...]:
    """``sm86,sm89`` or ``8.6,8.9`` → ("8.6", "8.9"), checked against what TensorRT for RTX targets."""
    archs = []
    for item in (part.strip().lower() for part in text.split(",")):
        digits = item.removeprefix("sm_").removeprefix("sm")
        if "." not in digits and digits.isdigit() and len(digits) >= 2:
            digits = f"{digits[:-1]}.{digits[-1]}"
        try:
            major, minor = (int(v) for v in digits.split("."))
        except ValueError:
            raise FeredgeError(f"--gpu-arch {text!r}: {item!r} is not a compute capability; expected e.g. "
                               "sm86,sm89 or 8.6,8.9") from None
        arch = f"{major}.{minor}"
        if arch not in RTX_ARCHS:
            where = f" ({NOT_RTX[arch]})" if arch in NOT_RTX else ""
            raise FeredgeError(f"--gpu-arch {item}{where}: TensorRT for RTX targets only "
                               f"{', '.join('sm' + a.replace('.', '') for a in RTX_ARCHS)}; for Jetson or H100/H200 "
                               "build with the regular TensorRT on that device (without --gpu-arch)")
        if arch not in archs:
            archs.append(arch)
    return tuple(archs)


def rtx_targets(precision: str, asked: tuple[str, ...] = ()) -> tuple[tuple[str, ...], dict[str, str]]:
    """The architectures to build ``precision`` for (``asked``, else every one TensorRT for RTX can) and the
    ones left out by default with the reason. Asked-for targets are all tried: the library has the last word."""
    if asked:
        return asked, {}
    skipped = RTX_SKIPS.get(precision, {})
    return tuple(a for a in RTX_ARCHS if a not in skipped), dict(skipped)


def compute_capability(trt: ModuleType, arch: str):
    """``"8.6"`` → ``trt.ComputeCapability.SM86``."""
    return getattr(trt.ComputeCapability, "SM" + arch.replace(".", ""))
