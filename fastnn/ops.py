"""Kernels on arrays (``fnn.ops``), for benchmarking and embedding.

Each accepts any array of the right rank and a float dtype (float32/float64; a non-contiguous
array is copied) and returns a new array unless ``out=`` is given.
"""
from __future__ import annotations

import numpy as np

from . import backend
from ._validate import as_array, fail


def _float_array(x, where: str, ndim: int | None = None):
    arr = as_array(x, where)
    if arr.dtype not in (np.float32, np.float64):
        fail(where, "a float32 or float64 array", f"dtype {arr.dtype}", TypeError)
    if ndim is not None and arr.ndim != ndim:
        fail(where, f"a {ndim}-D array", f"shape {arr.shape}")
    return arr


def _check_out(out, shape, dtype, where):
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        fail(where, "a NumPy array", type(out).__name__, TypeError)
    if out.shape != tuple(shape) or out.dtype != dtype:
        fail(where, f"shape {tuple(shape)} and dtype {dtype}", f"shape {out.shape} and dtype {out.dtype}")
    if not out.flags.writeable:
        fail(where, "a writeable array", "a read-only array")
    return out


def matmul(a, b, out=None, trans_a=False, trans_b=False):
    """``op(a) @ op(b)`` with fastnn's GEMM, ``op`` transposing when asked (no copy is made).

    Parameters
    ----------
    a, b : ndarray, 2-D, float32 or float64 (the same dtype)
    out : ndarray, optional
        Receives the result; its rows must be contiguous (a row stride larger than the width is
        fine, e.g. a column slice).
    """
    a = _float_array(a, "matmul a", 2)
    b = _float_array(b, "matmul b", 2)
    if a.dtype != b.dtype:
        fail("matmul", "a and b of the same dtype", f"{a.dtype} and {b.dtype}", TypeError)
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != kb:
        fail("matmul", f"op(b) with {k} rows to match op(a) of shape ({m}, {k})", f"op(b) of shape ({kb}, {n})")
    if out is None:
        out = np.empty((m, n), dtype=a.dtype)
    else:
        if not isinstance(out, np.ndarray):
            fail("matmul out", "a NumPy array", type(out).__name__, TypeError)
        if out.shape != (m, n) or out.dtype != a.dtype:
            fail("matmul out", f"shape {(m, n)} and dtype {a.dtype}", f"shape {out.shape} and dtype {out.dtype}")
        if out.ndim == 2 and out.shape[1] > 1 and out.strides[1] != out.itemsize or out.strides[0] < 0 \
                or not out.flags.writeable:
            fail("matmul out", "a writeable array with contiguous rows", f"strides {out.strides}")
        if np.may_share_memory(out, a) or np.may_share_memory(out, b):
            fail("matmul out", "an array not overlapping a or b", "an overlapping array")
    return backend.cpu.matmul(a, b, out, bool(trans_a), bool(trans_b))


def _unary(x, out, where, fn):
    x = _float_array(x, where)
    out = _check_out(out, x.shape, x.dtype, f"{where} out")
    if out.flags.c_contiguous:
        fn(x, out)
    else:
        tmp = np.empty_like(x)
        fn(x, tmp)
        out[...] = tmp
    return out


def relu(x, out=None):
    """``max(x, 0)`` elementwise."""
    return _unary(x, out, "relu", lambda a, o: backend.cpu.act_fwd(1, a, o))


def sigmoid(x, out=None):
    """``1 / (1 + exp(-x))`` elementwise, without overflow."""
    return _unary(x, out, "sigmoid", lambda a, o: backend.cpu.act_fwd(2, a, o))


def tanh(x, out=None):
    """``tanh(x)`` elementwise."""
    return _unary(x, out, "tanh", lambda a, o: backend.cpu.act_fwd(3, a, o))


def softmax(x, axis=-1, out=None):
    """Numerically stable softmax along ``axis``."""
    x = _float_array(x, "softmax")
    if x.ndim == 0:
        fail("softmax", "an array with at least one axis", "a scalar")
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        fail("softmax", f"axis in [{-x.ndim}, {x.ndim})", repr(axis))
    out = _check_out(out, x.shape, x.dtype, "softmax out")
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    rows = moved.reshape(-1, moved.shape[-1]) if moved.size else moved.reshape(0, max(moved.shape[-1], 1))
    res = np.empty_like(rows)
    if rows.size:
        backend.cpu.softmax_fwd(rows, res)
    out[...] = np.moveaxis(res.reshape(moved.shape), -1, axis)
    return out
