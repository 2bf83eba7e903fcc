"""Kernels on arrays (``fnn.ops``), for benchmarking and embedding.

Each accepts any array of the right rank and a float dtype (float32/float64; a non-contiguous
array is copied) and returns a new array unless ``out=`` is given. CuPy arrays run on the GPU
(through the CUDA backend) and give CuPy arrays; NumPy and CuPy arrays cannot be mixed.
"""
from __future__ import annotations

import numpy as np

from . import backend
from ._validate import as_array, fail
from .backend import ACT_CODES


def _backend_of(where: str, *arrays):
    """The backend of the arrays: "cuda" for CuPy arrays, else the CPU; mixing them is an error."""
    on_gpu = [hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray)
              for a in arrays if a is not None]
    if not any(on_gpu):
        return backend.cpu
    if not all(on_gpu):
        fail(where, "arrays on one device", "NumPy and GPU arrays mixed", TypeError)
    return backend.get("cuda")


def _float_array(x, where: str, ndim: int | None = None, be=backend.cpu):
    if be is backend.cpu:
        arr = as_array(x, where)
    else:
        arr = be.contiguous(x)
    if arr.dtype not in (np.float32, np.float64):
        fail(where, "a float32 or float64 array", f"dtype {arr.dtype}", TypeError)
    if ndim is not None and arr.ndim != ndim:
        fail(where, f"a {ndim}-D array", f"shape {arr.shape}")
    return arr


def _check_out(out, shape, dtype, where, be=backend.cpu):
    if out is None:
        return be.empty(shape, dtype=dtype)
    if be is backend.cpu and not isinstance(out, np.ndarray):
        fail(where, "a NumPy array", type(out).__name__, TypeError)
    if out.shape != tuple(shape) or out.dtype != dtype:
        fail(where, f"shape {tuple(shape)} and dtype {dtype}", f"shape {out.shape} and dtype {out.dtype}")
    if be is backend.cpu and not out.flags.writeable:
        fail(where, "a writeable array", "a read-only array")
    return out


def matmul(a, b, out=None, trans_a=False, trans_b=False, compute="float32"):
    """``op(a) @ op(b)`` with fastnn's GEMM, ``op`` transposing when asked (no copy is made).

    Parameters
    ----------
    a, b : ndarray, 2-D, float32 or float64 (the same dtype)
    out : ndarray, optional
        Receives the result (the right shape and dtype, writeable, not overlapping a or b); its
        rows must be contiguous (a row stride larger than the width is fine, e.g. a column slice).
    compute : {"float32", "bfloat16"}, default "float32"
        "bfloat16" (float32 a and b only): the inputs are rounded to bfloat16 (to nearest even) and
        multiplied with float32 accumulation and output, by the bf16 kernel this CPU supports
        (``fnn.show_config()`` names it).
    """
    if compute not in ("float32", "bfloat16"):
        fail("matmul(compute=...)", "'float32' or 'bfloat16'", repr(compute))
    be = _backend_of("matmul", a, b, out)
    a = _float_array(a, "matmul a", 2, be)
    b = _float_array(b, "matmul b", 2, be)
    if a.dtype != b.dtype:
        fail("matmul", "a and b of the same dtype", f"{a.dtype} and {b.dtype}", TypeError)
    bf16 = compute == "bfloat16"
    if bf16 and a.dtype != np.float32:
        fail("matmul(compute='bfloat16')", "float32 a and b", f"dtype {a.dtype}", TypeError)
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != kb:
        fail("matmul", f"op(b) with {k} rows to match op(a) of shape ({m}, {k})", f"op(b) of shape ({kb}, {n})")
    if out is not None:
        out = _check_out(out, (m, n), a.dtype, "matmul out", be)
        if be.may_share_memory(out, a) or be.may_share_memory(out, b):
            fail("matmul out", "an array not overlapping a or b", "an overlapping array")
        if not _gemm_rows_ok(out, be):
            if out.size and not out.flags.c_contiguous:
                fail("matmul out", "a writeable array with contiguous rows", f"strides {out.strides}")
            # an empty array (NumPy may give it zero strides), or a single C-contiguous row or
            # column whose other stride is arbitrary, or a misaligned one: through a temporary
            out[...] = be.matmul(a, b, be.empty((m, n), dtype=a.dtype), bool(trans_a), bool(trans_b), bf16=bf16)
            return out
    else:
        out = be.empty((m, n), dtype=a.dtype)
    return be.matmul(a, b, out, bool(trans_a), bool(trans_b), bf16=bf16)


def _gemm_rows_ok(out, be) -> bool:
    """Whether the GEMM can write ``out`` in place: contiguous rows, a positive row stride of
    whole elements at least the width (the binding's rule), aligned; a single row or column is
    fine whatever its other stride says."""
    if be is not backend.cpu:
        return out.flags.c_contiguous
    if out.size == 0:
        return False
    (_, cols), (s0, s1), item = out.shape, out.strides, out.itemsize
    return bool(out.flags.aligned) and (cols == 1 or s1 == item) and s0 > 0 and s0 % item == 0 \
        and s0 >= cols * item


def _unary(x, out, where, code):
    be = _backend_of(where, x, out)
    x = _float_array(x, where, None, be)
    out = _check_out(out, x.shape, x.dtype, f"{where} out", be)
    # In place is fine (each element is read before it is written); an out that overlaps x at
    # an offset is not: elements would be overwritten before they are read.
    in_place = _same_memory(out, x)
    aligned = be is not backend.cpu or out.flags.aligned     # a misaligned out goes through a temporary
    if out.flags.c_contiguous and aligned and (in_place or not be.may_share_memory(out, x)):
        be.act_fwd(code, x, out)
    else:
        tmp = be.empty(x.shape, dtype=x.dtype)
        be.act_fwd(code, x, tmp)
        out[...] = tmp
    return out


def _same_memory(a, b) -> bool:
    """Whether a and b are the same elements in the same layout (a view of the whole of b)."""
    if a.shape != b.shape or a.strides != b.strides:
        return False
    if isinstance(a, np.ndarray):
        return a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    return a.data.ptr == b.data.ptr


def relu(x, out=None):
    """``max(x, 0)`` elementwise."""
    return _unary(x, out, "relu", ACT_CODES["relu"])


def sigmoid(x, out=None):
    """``1 / (1 + exp(-x))`` elementwise, without overflow."""
    return _unary(x, out, "sigmoid", ACT_CODES["sigmoid"])


def tanh(x, out=None):
    """``tanh(x)`` elementwise."""
    return _unary(x, out, "tanh", ACT_CODES["tanh"])


def softmax(x, axis=-1, out=None):
    """Numerically stable softmax along ``axis``."""
    be = _backend_of("softmax", x, out)
    x = _float_array(x, "softmax", None, be)
    if x.ndim == 0:
        fail("softmax", "an array with at least one axis", "a scalar")
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) or \
            not -x.ndim <= axis < x.ndim:
        fail("softmax", f"axis in [{-x.ndim}, {x.ndim})", repr(axis))
    out = _check_out(out, x.shape, x.dtype, "softmax out", be)
    # The axis moved last with array methods only, so CuPy arrays take the same path.
    axis = int(axis) % x.ndim
    order = [d for d in range(x.ndim) if d != axis] + [axis]
    moved = x.transpose(order).copy()
    rows = moved.reshape(-1, moved.shape[-1]) if moved.size else moved.reshape(0, max(moved.shape[-1], 1))
    res = be.empty(rows.shape, dtype=rows.dtype)
    if rows.size:
        be.softmax_fwd(rows, res)
    out[...] = res.reshape(moved.shape).transpose(np.argsort(order).tolist())
    return out
