"""Inference runtime: runners behind one interface, pre-processing, CUDA helpers. Never imports torch
unless the torch backend is asked for."""

from feredge.runtime.base import Runner, load_runner

__all__ = ["Runner", "load_runner"]
