"""Inference runtime: runners behind one interface (base), chosen by file type (loader), pre-processing,
CUDA helpers. Never imports torch unless the torch backend is asked for."""
