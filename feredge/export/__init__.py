"""Export: torch → ONNX → onnxsim → FP16 / INT8 Q/DQ ONNX → TensorRT engine, from one entry point."""

#: The precisions a checkpoint is exported and built at (bench --precision, engine plans). An exported
#: file's own description uses `feredge.artifact.ARTIFACT_PRECISIONS` (int8 there says how: Q/DQ or cache).
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
