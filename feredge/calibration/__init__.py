"""INT8 calibration: a reproducible calibration set, activation ranges, Q/DQ ONNX and TensorRT caches."""
