"""TensorRT engines: a version-aware build plan (pure, testable) and the thin TensorRT builder."""
