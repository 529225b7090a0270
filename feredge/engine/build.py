"""ONNX → serialized TensorRT engine, following a BuildPlan. TensorRT is imported lazily (feredge.engine.tensorrt).

TensorRT for RTX builds have run for real (on a CPU-only machine, 2026-12-07); the regular TensorRT calls
follow the documented Python API of 8.5/8.6/10.x/11.x (see feredge.engine.plan) and have not met one yet.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from feredge import artifact
from feredge.engine.plan import BatchProfile, BuildPlan
from feredge.engine.tensorrt import TensorRT, compute_capability, detect
from feredge.errors import FeredgeError


def trt_version() -> str:
    return detect().version


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability) of device 0, through pycuda or cuda-python."""
    from feredge.cuda import device_identity

    return device_identity()


def logger(trt):
    """A TensorRT logger that keeps the errors (for one-line messages) and shows warnings on stderr."""

    class Collecting(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(" ".join(str(msg).split()))
            elif severity == trt.ILogger.Severity.WARNING:
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return Collecting()


def _network(trt, builder, plan: BuildPlan):
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    return builder.create_network(flags)


def _parse(found: TensorRT, network, log, onnx_path: Path) -> None:
    """Parse ``onnx_path``; a node TensorRT cannot take is named in a one-line error."""
    parser = found.module.OnnxParser(network, log)
    if parser.parse_from_file(str(onnx_path)):
        return
    if not parser.num_errors:
        why = "; ".join(log.errors[-2:]) or "no reason given"
        raise FeredgeError(f"{onnx_path}: {found.flavour} {found.version} cannot parse it: {why}")
    err = parser.get_error(0)
    name = err.node_name() if hasattr(err, "node_name") else f"#{err.node()}"  # node_name: TensorRT ≥ 10
    op = f" ({err.node_operator()})" if hasattr(err, "node_operator") else ""
    desc = " ".join(str(err.desc()).split())
    more = f" (+{parser.num_errors - 1} more)" if parser.num_errors > 1 else ""
    raise FeredgeError(f"{onnx_path}: {found.flavour} {found.version} cannot parse node {name!r}{op}: {desc}{more}")


def tensor_names(network) -> dict[str, list[str]]:
    return {"inputs": [network.get_input(i).name for i in range(network.num_inputs)],
            "outputs": [network.get_output(i).name for i in range(network.num_outputs)]}


def _calibrator(trt, cache_path: Path):
    """An entropy calibrator that only replays an existing cache (no data: ranges come from feredge)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            return None

        def read_calibration_cache(self):
            return Path(cache_path).read_bytes()

        def write_calibration_cache(self, cache) -> None:
            return None

    return CacheCalibrator()


def build_engine(onnx_path: Path, plan: BuildPlan, profile: BatchProfile, input_shape: tuple[int, int, int],
                 out: Path, input_name: str | None = None, workspace_mb: int = 1024, timing_cache: Path | None = None,
                 calibration_cache: Path | None = None, dla_core: int | None = None, archs: tuple[str, ...] = (),
                 found: TensorRT | None = None, record: dict | None = None) -> Path:
    """Build and serialize an engine for ``plan``; persists the timing cache when given a path (regular TensorRT:
    TensorRT for RTX has none). ``archs``: the compute capabilities a TensorRT-for-RTX engine targets.
    ``record`` receives the network's tensor names, the build seconds and the engine's size."""
    found = found or detect(plan.flavour)
    if found.flavour != plan.flavour:
        raise FeredgeError(f"the plan is for {plan.flavour} but {found.flavour} {found.version} is installed")
    trt = found.module
    log = logger(trt)
    builder = trt.Builder(log)
    network = _network(trt, builder, plan)
    _parse(found, network, log, onnx_path)
    names = tensor_names(network)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    opt_profile = builder.create_optimization_profile()
    name = input_name or names["inputs"][0]
    opt_profile.set_shape(name, (profile.min, *input_shape), (profile.opt, *input_shape), (profile.max, *input_shape))
    config.add_optimization_profile(opt_profile)
    if found.rtx:
        if not archs:
            raise FeredgeError("a TensorRT-for-RTX engine needs its target architectures (--gpu-arch)")
        config.num_compute_capabilities = len(archs)
        for i, arch in enumerate(archs):
            config.set_compute_capability(compute_capability(trt, arch), i)
    if plan.calibration_cache:
        if calibration_cache is None:
            raise FeredgeError("the implicit INT8 path needs the calibration cache that `feredge export --int8` writes")
        config.int8_calibrator = _calibrator(trt, calibration_cache)
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
    use_cache = timing_cache is not None and not found.rtx
    if use_cache:
        blob = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), False)
    t0 = time.perf_counter()
    engine = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if engine is None:
        target = f" for sm{', sm'.join(a.replace('.', '') for a in archs)}" if found.rtx else ""
        why = log.errors[0] if log.errors else "no reason given (see the log above)"
        raise FeredgeError(f"{onnx_path}: {found.flavour} {found.version} could not build a {plan.precision} "
                           f"engine{target}: {why}")
    data = bytes(engine)
    artifact.atomic_write_bytes(Path(out), data)
    if use_cache:
        artifact.atomic_write_bytes(Path(timing_cache), bytes(config.get_timing_cache().serialize()))
    if record is not None:
        record.update(tensors=names, build_s=round(seconds, 3), size_bytes=len(data))
    return Path(out)
