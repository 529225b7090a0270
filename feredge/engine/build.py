"""ONNX → serialized TensorRT engine, following a BuildPlan. TensorRT is imported lazily.

Not yet run against a real TensorRT (none can be installed where feredge is developed); the calls
follow the documented Python API of 8.5/8.6/10.x/11.x (see feredge.engine.plan).
"""

from __future__ import annotations

from pathlib import Path

from feredge import artifact
from feredge._optional import require
from feredge.engine.plan import BatchProfile, BuildPlan
from feredge.errors import FeredgeError


def trt_version() -> str:
    return require("tensorrt").__version__


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability) of device 0, through pycuda or cuda-python."""
    from feredge.cuda import device_identity

    return device_identity()


def _network(trt, builder, plan: BuildPlan):
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    return builder.create_network(flags)


def _parse(trt, network, logger, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FeredgeError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")


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
                 out: Path, input_name: str = "input", workspace_mb: int = 1024, timing_cache: Path | None = None,
                 calibration_cache: Path | None = None, dla_core: int | None = None) -> Path:
    """Build and serialize an engine for ``plan``; persists the timing cache when given a path."""
    trt = require("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = _network(trt, builder, plan)
    _parse(trt, network, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(input_name, (profile.min, *input_shape), (profile.opt, *input_shape), (profile.max, *input_shape))
    config.add_optimization_profile(opt_profile)
    if plan.calibration_cache:
        if calibration_cache is None:
            raise FeredgeError("the implicit INT8 path needs the calibration cache that `feredge export --int8` writes")
        config.int8_calibrator = _calibrator(trt, calibration_cache)
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
    cache = config.create_timing_cache(Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b"")
    config.set_timing_cache(cache, False)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise FeredgeError(f"{onnx_path}: TensorRT failed to build a {plan.precision} engine (see the log above)")
    artifact.atomic_write_bytes(Path(out), bytes(blob))
    if timing_cache:
        artifact.atomic_write_bytes(Path(timing_cache), bytes(config.get_timing_cache().serialize()))
    return Path(out)
