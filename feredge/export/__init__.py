"""Export: torch → ONNX → onnxsim → FP16 / INT8 Q/DQ ONNX → TensorRT engine, from one entry point."""
