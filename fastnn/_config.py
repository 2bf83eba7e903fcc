"""Process-wide settings: thread count, default dtype and the seeded random generator."""
from __future__ import annotations

import os
import threading

import numpy as np

_lock = threading.Lock()
_state = {
    "threads": None,           # None: resolved lazily from the environment / CPU count
    "dtype": np.dtype(np.float32),
    "mixed": False,            # the default policy is "mixed_bfloat16" (dtype float32)
    "rng": None,
    "seed": None,
    "serial_after_fork": False,   # see _after_fork_in_child
    "explicit": False,            # set_num_threads was called
}


def _env_threads() -> int | None:
    for var in ("FASTNN_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _default_threads() -> int:
    env = _env_threads()
    if env is not None:
        return env
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def set_num_threads(n: int) -> None:
    """Set the number of threads the C kernels use (at least 1).

    Results are bit-identical for any thread count: every reduction in the kernels uses a fixed
    chunking and a fixed-order sum (see the README's notes on determinism).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: expected n >= 1, got {n}")
    _state["threads"] = 1 if _state["serial_after_fork"] else int(n)
    _state["explicit"] = True


def set_default_num_threads(n: int) -> None:
    """The thread count to use unless the user chose one (set_num_threads, FASTNN_NUM_THREADS or
    OMP_NUM_THREADS): data-parallel training shares the cores among the processes of a machine."""
    if not _state["explicit"] and _env_threads() is None and not _state["serial_after_fork"]:
        _state["threads"] = max(1, int(n))


def get_num_threads() -> int:
    """Number of threads the C kernels use."""
    if _state["threads"] is None:
        _state["threads"] = _default_threads()
    return _state["threads"]


def seed(s: int) -> None:
    """Seed initialisers, dropout masks and shuffling.

    The same seed, model and data give the same weights, masks, shuffles and so the same
    trained model (for any thread count: see the README).
    """
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(s).__name__}")
    if s < 0:
        raise ValueError(f"seed: expected a non-negative int, got {s}")
    with _lock:
        _state["seed"] = int(s)
        _state["rng"] = np.random.default_rng(int(s))


def rng() -> np.random.Generator:
    """The generator behind initialisers, dropout seeds and shuffles (OS entropy until seeded)."""
    with _lock:
        if _state["rng"] is None:
            _state["rng"] = np.random.default_rng()
        return _state["rng"]


MIXED_BFLOAT16 = "mixed_bfloat16"


def set_default_dtype(dtype) -> None:
    """Set the dtype of models and layers created without one: "float32", "float64" or
    "mixed_bfloat16" (float32 parameters and activations, GEMM and convolution inputs rounded to
    bfloat16 with float32 accumulation)."""
    _state["dtype"], _state["mixed"] = as_policy(dtype)


def get_default_dtype() -> np.dtype:
    """The default dtype of parameters and activations (float32 under "mixed_bfloat16")."""
    return _state["dtype"]


def get_default_policy() -> str:
    """The default dtype policy: "float32", "float64" or "mixed_bfloat16"."""
    return MIXED_BFLOAT16 if _state["mixed"] else _state["dtype"].name


def as_policy(dtype) -> tuple:
    """(float dtype, mixed) for a dtype argument: "mixed_bfloat16" gives (float32, True)."""
    if isinstance(dtype, str) and dtype == MIXED_BFLOAT16:
        return np.dtype(np.float32), True
    return as_float_dtype(dtype), False


def policy_or_default(dtype) -> tuple:
    """as_policy(dtype), or the default policy when dtype is None."""
    return as_policy(dtype) if dtype is not None else (_state["dtype"], _state["mixed"])


def as_float_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype: expected 'float32', 'float64' or 'mixed_bfloat16', got {dtype!r}") from err
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected 'float32', 'float64' or 'mixed_bfloat16', got {dt.name!r}")
    return dt


def _after_fork_in_child() -> None:
    """The C side releases the OpenMP pool before every fork so that the child can build its own
    (csrc/core/threads.c). Where the OpenMP runtime cannot do that, the child must stay on one
    thread: a parallel region there would wait forever for the parent's workers."""
    from . import _core
    if not _core.threads_usable():
        _state["serial_after_fork"] = True
        _state["threads"] = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
