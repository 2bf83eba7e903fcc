"""Build and runtime information: ``fnn.show_config()`` and ``fnn.cuda_available()``."""
from __future__ import annotations

import importlib.util
import os
import platform

from . import _config, _core

_arch_forced = False


def _init_arch() -> None:
    """Honour FASTNN_ARCH once at import (the C side falls back silently; here a bad value
    is an error the user sees)."""
    global _arch_forced
    want = os.environ.get("FASTNN_ARCH", "").strip().lower()
    if want:
        _core.arch_set(want)
        _arch_forced = True
    want = os.environ.get("FASTNN_BF16", "").strip().lower()
    if want:
        _core.bf16_set(want)


def cuda_available() -> bool:
    """True when CuPy is installed and a CUDA device is usable."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device, broken install: all mean "not available"
        return False


def config() -> dict:
    from . import __version__
    return {
        "version": __version__,
        "kernel_variant": _core.arch_get(),
        "best_variant": _core.arch_best(),
        "variant_forced": _arch_forced,
        "openmp": _core.openmp_enabled(),
        "threads": _config.get_num_threads(),
        "default_dtype": _config.get_default_policy(),
        # the kernel of "mixed_bfloat16" Dense layers and fnn.ops.matmul(compute="bfloat16"):
        # amx, avx512bf16 or ref (rounded operands through the float32 GEMM); FASTNN_BF16 overrides
        "bf16_variant": _core.bf16_get(),
        "bf16_best_variant": _core.bf16_best(),
        # None, or why the bf16 variant runs another kernel (amx refused by the OS or failing its
        # first-use self-check against float64: avx512bf16 runs instead)
        "bf16_fallback": _core.bf16_note() or None,
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def show_config() -> dict:
    """Print (and return) the kernel variant, OpenMP support and thread count."""
    cfg = config()
    width = max(map(len, cfg))
    for k, v in cfg.items():
        print(f"{k.ljust(width)} : {v}")
    return cfg


_init_arch()
