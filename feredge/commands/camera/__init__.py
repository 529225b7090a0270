"""Camera side: face detection, overlays and (with run-camera) sources and the live pipeline."""
