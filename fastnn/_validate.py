"""Input checks shared by layers, losses and models; one message template for all of them:
``<where>: expected <what>, got <received>``."""
from __future__ import annotations

import numbers

import numpy as np


class NotBuiltError(ValueError, RuntimeError):
    """A model or layer used before it is built (a ValueError as API.md's Errors section asks,
    and a RuntimeError for callers that catch the state error)."""


def fail(where: str, expected: str, got, exc=ValueError):
    raise exc(f"{where}: expected {expected}, got {got}")


def as_array(x, where: str, dtype=None, allow_int: bool = False) -> np.ndarray:
    """Convert x to a C-contiguous ndarray of dtype (a float dtype unless allow_int)."""
    if hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray):
        fail(where, "a NumPy array on the CPU (move the model with model.to('cuda') for GPU arrays)",
             type(x).__name__, TypeError)
    if isinstance(x, (str, bytes)) or x is None:
        fail(where, "an array of numbers", type(x).__name__, TypeError)
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as err:
        raise TypeError(f"{where}: expected an array of numbers ({err})") from err
    if arr.dtype.kind not in "biuf" and not (allow_int and arr.dtype.kind == "b"):
        fail(where, "an array of real numbers", f"dtype {arr.dtype}", TypeError)
    # np.asarray(order="C"), not np.ascontiguousarray: the latter turns a 0-d array into shape (1,)
    arr = np.asarray(arr, dtype=dtype, order="C")
    # A misaligned view (a float array at an odd byte offset) keeps its address through asarray; the
    # kernels load whole elements, which C only defines for aligned addresses: copy it.
    return arr if arr.flags.aligned else arr.copy()


def check_finite(x: np.ndarray, where: str) -> None:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        fail(where, "finite values", f"{bad} NaN or infinite value(s) in an array of shape {x.shape}")


def check_shape(x: np.ndarray, expected: tuple, where: str) -> None:
    """expected is the shape without the batch axis."""
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != tuple(expected):
        fail(where, f"input of shape (N, {', '.join(map(str, expected))})".replace(", )", ")"),
             f"shape {tuple(x.shape)}")


def positive_int(value, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(where, f"an int >= {minimum}", repr(value), TypeError)
    if value < minimum:
        fail(where, f"an int >= {minimum}", repr(value))
    return int(value)


def real(value, where: str, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(where, "a real number", repr(value), TypeError)
    v = float(value)
    if not np.isfinite(v) or (lo is not None and (v < lo or (lo_open and v == lo))) or \
            (hi is not None and (v > hi or (hi_open and v == hi))):
        rng = f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, " \
              f"{hi if hi is not None else 'inf'}{')' if hi_open or hi is None else ']'}"
        fail(where, f"a number in {rng}", repr(value))
    return v
