"""Backends: the small op set every layer computes through (DESIGN.md, principle 1).

``cpu`` runs our C kernels on NumPy arrays, ``cuda`` our CUDA kernels and cuBLAS on CuPy arrays
(imported only when asked for), ``numpy_ref`` is the readable pure-NumPy specification of the same
ops (the test oracle).
Every op writes into caller-provided output arrays, so layers can plan their buffers.
"""
from __future__ import annotations

from types import ModuleType

from . import cpu

ACT_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "leaky_relu": 4}


def get(device: str) -> ModuleType:
    """The backend module for a device name ("cpu" or "cuda"); asking for "cuda" without CuPy or
    without a usable device raises a ValueError that says which is missing."""
    if device == "cpu":
        return cpu
    if device == "cuda":
        from . import cuda
        cuda._cupy()
        return cuda
    raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
