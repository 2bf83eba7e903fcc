"""Property-based fuzzing of ``fnn.ops`` (hypothesis): random shapes (0, 1, odd sizes), dtypes
(float32/float64 and wrong ones), strided and negative-stride views, bad ``out`` arrays and
extreme values. Each call either raises a clean ValueError/TypeError or returns the NumPy
float64 reference within a tolerance for the dtype (and the GEMM's inner length k)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import gemm_tol, rtol_for
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn as fnn

FLOATS = (np.float32, np.float64)
WRONG_DTYPES = (np.int32, np.int64, np.uint8, np.float16, np.complex64, np.complex128, np.bool_, object)
SPECIAL = (0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 3e38, -3e38, 1e-310, -1e-310, 1e-45,
           88.8, -88.8, 710.0, -710.0, 20.0, -20.0)

dims = st.integers(0, 9)
float_dtypes = st.sampled_from(FLOATS)


def _fill(rng, shape, dtype, special):
    """Standard normal values, with a sprinkling of special values when asked."""
    x = np.asarray(rng.standard_normal(shape) * 3)
    if special and x.size:
        pick = rng.random(shape) < 0.3
        x[pick] = rng.choice(np.array(SPECIAL), size=int(pick.sum()))
    with np.errstate(over="ignore"):
        return np.asarray(x.astype(dtype))


@st.composite
def layouts(draw, shape, dtype, special=False):
    """An array of ``shape`` and ``dtype`` laid out in memory in one of several ways: contiguous,
    Fortran, a strided slice of a bigger array, reversed axes (negative strides), a transposed
    view, or a misaligned copy; returns (array, float64 copy of its values)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = _fill(rng, shape, dtype, special)
    kind = draw(st.sampled_from(["c", "f", "step", "neg", "misaligned"])) if shape else "c"
    if kind == "f":
        arr = np.asfortranarray(base)
    elif kind == "step":
        big = np.zeros(tuple(2 * d + 1 for d in shape), dtype=dtype)
        view = big[tuple(slice(1, 1 + 2 * d, 2) for d in shape)]
        view[...] = base
        arr = view
    elif kind == "neg":
        arr = np.ascontiguousarray(base[tuple(slice(None, None, -1) for _ in shape)])
        arr = arr[tuple(slice(None, None, -1) for _ in shape)] if shape else arr
    elif kind == "misaligned" and np.dtype(dtype).itemsize > 1:
        raw = np.zeros(base.nbytes + np.dtype(dtype).itemsize, dtype=np.uint8)
        arr = raw[1:1 + base.nbytes].view(dtype).reshape(shape) if base.nbytes else base
        arr[...] = base
    else:
        arr = base
    assert arr.shape == tuple(shape)
    return arr, base.astype(np.float64)


def _raises_cleanly(fn):
    """Run fn; a ValueError/TypeError is fine (returns None), anything else propagates."""
    try:
        return fn()
    except (ValueError, TypeError):
        return None


# ---- matmul ------------------------------------------------------------------------------------

def _check_matmul(got, a64, b64, dtype, trans_a, trans_b):
    a_op = a64.T if trans_a else a64
    b_op = b64.T if trans_b else b64
    k = a_op.shape[1]
    ref = a_op @ b_op
    bound = np.abs(a_op) @ np.abs(b_op)
    assert got.shape == ref.shape and got.dtype == dtype
    tol = gemm_tol(dtype, k)
    err = np.abs(got.astype(np.float64) - ref)
    tiny = float(np.finfo(dtype).tiny) * (k + 1)
    assert (err <= tol * bound + tiny).all(), f"max error {err.max(initial=0)} (k={k})"


@settings(max_examples=60, deadline=None)
@given(m=dims, k=dims, n=dims, dtype=float_dtypes, trans_a=st.booleans(), trans_b=st.booleans(),
       data=st.data())
def test_matmul_matches_reference(m, k, n, dtype, trans_a, trans_b, data):
    a, a64 = data.draw(layouts((k, m) if trans_a else (m, k), dtype))
    b, b64 = data.draw(layouts((n, k) if trans_b else (k, n), dtype))
    got = fnn.ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    _check_matmul(got, a64, b64, np.dtype(dtype), trans_a, trans_b)


@settings(max_examples=40, deadline=None)
@given(m=dims, k=dims, n=dims, dtype=float_dtypes, trans_a=st.booleans(), trans_b=st.booleans(),
       out_kind=st.sampled_from(["good", "column_slice", "fortran", "step_rows", "neg_rows", "neg_cols",
                                 "wrong_shape", "wrong_dtype", "readonly", "alias_a", "alias_b", "list",
                                 "misaligned"]),
       data=st.data())
def test_matmul_out(m, k, n, dtype, trans_a, trans_b, out_kind, data):
    dtype = np.dtype(dtype)
    a, a64 = data.draw(layouts((k, m) if trans_a else (m, k), dtype))
    b, b64 = data.draw(layouts((n, k) if trans_b else (k, n), dtype))
    big = np.full((2 * m + 2, 2 * n + 2), 7.0, dtype=dtype)
    out = {
        "good": lambda: np.full((m, n), 7.0, dtype=dtype),
        "column_slice": lambda: big[:m, 1:n + 1],
        "fortran": lambda: np.asfortranarray(np.full((m, n), 7.0, dtype=dtype)),
        "step_rows": lambda: big[:2 * m:2, :n],
        "neg_rows": lambda: big[m - 1::-1, :n] if m else big[:0, :n],
        "neg_cols": lambda: big[:m, n - 1::-1] if n else big[:m, :0],
        "wrong_shape": lambda: np.zeros((m + 1, n), dtype=dtype),
        "wrong_dtype": lambda: np.zeros((m, n), dtype=np.float32 if dtype == np.float64 else np.float64),
        "readonly": lambda: np.broadcast_to(np.zeros(1, dtype=dtype), (m, n)),
        "alias_a": lambda: a if a.shape == (m, n) else a.reshape(-1)[: m * n].reshape(m, n) if a.size >= m * n
        else np.zeros((m, n + 1), dtype=dtype),
        "alias_b": lambda: b if b.shape == (m, n) else np.zeros((m, n), dtype=np.int32),
        "list": lambda: [[0.0] * n for _ in range(m)],
        "misaligned": lambda: np.zeros(m * n * dtype.itemsize + 1, dtype=np.uint8)[1:].view(dtype).reshape(m, n),
    }[out_kind]()
    a_keep, b_keep = np.array(a, copy=True), np.array(b, copy=True)
    res = _raises_cleanly(lambda: fnn.ops.matmul(a, b, out=out, trans_a=trans_a, trans_b=trans_b))
    if res is None:
        # a refused call leaves the inputs alone
        np.testing.assert_array_equal(a, a_keep)
        np.testing.assert_array_equal(b, b_keep)
        assert out_kind in ("wrong_shape", "wrong_dtype", "readonly", "alias_a", "alias_b", "list", "fortran",
                            "neg_rows", "neg_cols"), \
            f"a valid out ({out_kind}) was refused"
        return
    assert out_kind not in ("wrong_shape", "wrong_dtype", "list"), f"a bad out ({out_kind}) was accepted"
    assert out_kind != "readonly" or m * n == 0
    assert res is out
    _check_matmul(res, a64, b64, dtype, trans_a, trans_b)
    if out_kind in ("column_slice", "step_rows"):
        mask = np.ones(big.shape, bool)
        if out_kind == "column_slice":
            mask[:m, 1:n + 1] = False
        else:
            mask[:2 * m:2, :n] = False
        assert (big[mask] == 7.0).all(), "matmul wrote outside out"


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 6), k=st.integers(1, 6), n=st.integers(1, 6), dtype=float_dtypes, data=st.data())
def test_matmul_special_values(m, k, n, dtype, data):
    """NaN, inf, huge and subnormal entries: no crash, the right shape, and entries whose row of
    a and column of b are finite and cannot overflow match the reference."""
    a, a64 = data.draw(layouts((m, k), dtype, special=True))
    b, b64 = data.draw(layouts((k, n), dtype, special=True))
    got = fnn.ops.matmul(a, b)
    assert got.shape == (m, n) and got.dtype == dtype
    with np.errstate(all="ignore"):
        ref = a64 @ b64
        bound = np.abs(a64) @ np.abs(b64)
    ok = np.isfinite(bound) & (bound < float(np.finfo(dtype).max) / 4)
    with np.errstate(all="ignore"):
        err = np.abs(got.astype(np.float64) - ref)
    tol = gemm_tol(dtype, k) * bound + float(np.finfo(dtype).tiny) * (k + 1)
    assert (err[ok] <= tol[ok]).all()
    # a NaN in a row of a (column of b) makes the whole output row (column) NaN
    nan_rows = np.isnan(a64).any(axis=1)
    nan_cols = np.isnan(b64).any(axis=0)
    assert np.isnan(got[nan_rows, :]).all() and np.isnan(got[:, nan_cols]).all()


@settings(max_examples=40, deadline=None)
@given(shape_a=st.lists(st.integers(0, 4), max_size=3), shape_b=st.lists(st.integers(0, 4), max_size=3),
       da=st.sampled_from(FLOATS + WRONG_DTYPES), db=st.sampled_from(FLOATS + WRONG_DTYPES),
       trans_a=st.booleans(), trans_b=st.booleans())
def test_matmul_bad_inputs_raise_cleanly(shape_a, shape_b, da, db, trans_a, trans_b):
    a = np.ones(shape_a, dtype=da)
    b = np.ones(shape_b, dtype=db)
    valid = (len(shape_a) == 2 and len(shape_b) == 2 and np.dtype(da) == np.dtype(db) and np.dtype(da) in FLOATS
             and (shape_a[0] if trans_a else shape_a[1]) == (shape_b[1] if trans_b else shape_b[0]))
    if valid:
        got = fnn.ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
        _check_matmul(got, a.astype(np.float64), b.astype(np.float64), np.dtype(da), trans_a, trans_b)
    else:
        with pytest.raises((ValueError, TypeError)):
            fnn.ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)


@pytest.mark.parametrize("a, b", [
    ([[1.0, 2.0]], [[1.0], [2.0]]),          # lists of Python floats: float64
    (None, np.ones((2, 2))), ("ab", np.ones((2, 2))), (np.ones((2, 2)), {"x": 1}), (3.0, 4.0),
    ([[1.0, 2.0], [3.0]], np.ones((2, 2))),   # ragged
])
def test_matmul_odd_python_inputs(a, b):
    res = _raises_cleanly(lambda: fnn.ops.matmul(a, b))
    if res is not None:
        np.testing.assert_allclose(res, np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64))


# ---- elementwise and softmax ---------------------------------------------------------------------

def _sigmoid64(x):
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


UNARY = {"relu": lambda x: np.maximum(x, 0), "sigmoid": _sigmoid64, "tanh": np.tanh}
shapes = st.lists(st.integers(0, 6), min_size=0, max_size=4)


def _close_elementwise(got, ref, dtype):
    """Within a few roundings of the dtype, absolutely near zero; NaN exactly where the reference
    has NaN, and infinities where it has them."""
    dtype = np.dtype(dtype)
    ref_d = ref.astype(dtype)          # the reference rounded to the dtype (overflow is inf there too)
    assert got.shape == ref.shape and got.dtype == dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref_d))
    fin = np.isfinite(ref_d)
    np.testing.assert_array_equal(got[~fin], ref_d[~fin])
    r = 4 * rtol_for(dtype)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=r, atol=r * 1e-3)


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(sorted(UNARY)), shape=shapes, dtype=float_dtypes, special=st.booleans(),
       data=st.data())
def test_unary_matches_reference(name, shape, dtype, special, data):
    x, x64 = data.draw(layouts(tuple(shape), dtype, special=special))
    keep = np.array(x, copy=True)
    got = getattr(fnn.ops, name)(x)
    np.testing.assert_array_equal(x, keep)
    with np.errstate(all="ignore"):
        ref = UNARY[name](x64)
    _close_elementwise(got, ref, dtype)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(UNARY)), shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       dtype=float_dtypes,
       out_kind=st.sampled_from(["good", "same", "strided", "fortran", "neg", "overlap", "wrong_shape",
                                 "wrong_dtype", "readonly", "list", "int"]),
       data=st.data())
def test_unary_out(name, shape, dtype, out_kind, data):
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    x, x64 = data.draw(layouts(shape, dtype))
    x = np.ascontiguousarray(x)
    size = int(np.prod(shape))
    buf = np.concatenate([x.reshape(-1), np.zeros(1, dtype)])
    out = {
        "good": lambda: np.empty(shape, dtype),
        "same": lambda: x,
        "strided": lambda: np.zeros(tuple(2 * d for d in shape), dtype)[tuple(slice(None, None, 2) for _ in shape)],
        "fortran": lambda: np.asfortranarray(np.zeros(shape, dtype)),
        "neg": lambda: np.zeros(shape, dtype)[tuple(slice(None, None, -1) for _ in shape)],
        "overlap": lambda: buf[1:size + 1].reshape(shape),
        "wrong_shape": lambda: np.zeros(shape + (1,), dtype),
        "wrong_dtype": lambda: np.zeros(shape, np.float32 if dtype == np.float64 else np.float64),
        "readonly": lambda: np.broadcast_to(np.zeros(1, dtype), shape),
        "list": lambda: np.zeros(shape).tolist(),
        "int": lambda: np.zeros(shape, np.int64),
    }[out_kind]()
    if out_kind == "overlap":
        x = buf[:size].reshape(shape)
    ref = UNARY[name](x64)
    res = _raises_cleanly(lambda: getattr(fnn.ops, name)(x, out=out))
    if res is None:
        assert out_kind not in ("good", "same", "strided", "fortran", "neg"), f"valid out ({out_kind}) refused"
        return
    assert res is out
    _close_elementwise(res, ref, dtype)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(UNARY) + ["softmax"]), shape=shapes, dt=st.sampled_from(WRONG_DTYPES))
def test_elementwise_wrong_dtypes(name, shape, dt):
    x = np.ones(shape, dtype=dt)
    with pytest.raises(TypeError):
        getattr(fnn.ops, name)(x)


def _softmax64(x, axis):
    if x.size == 0:
        return x.copy()
    with np.errstate(all="ignore"):
        z = x - x.max(axis=axis, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=axis, keepdims=True)


@settings(max_examples=80, deadline=None)
@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=4), dtype=float_dtypes, data=st.data(),
       special=st.booleans())
def test_softmax_matches_reference(shape, dtype, data, special):
    shape = tuple(shape)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x, x64 = data.draw(layouts(shape, dtype, special=special))
    got = fnn.ops.softmax(x, axis=axis)
    assert got.shape == shape and got.dtype == dtype
    if not special:
        r = 8 * rtol_for(dtype)
        np.testing.assert_allclose(got, _softmax64(x64, axis), rtol=r, atol=r * 1e-3)
        if got.size:
            np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=r * shape[axis])
    elif got.size:
        # finite rows match the reference; any row holding a NaN is all NaN
        xm = np.moveaxis(x64, axis, -1).reshape(-1, shape[axis])
        gm = np.moveaxis(got, axis, -1).reshape(-1, shape[axis])
        for row, g in zip(xm, gm):
            if np.isnan(row).any():
                assert np.isnan(g).all()
            elif np.isfinite(row).all():
                r = 8 * rtol_for(dtype)
                np.testing.assert_allclose(g, _softmax64(row, -1), rtol=r, atol=r * 1e-3)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
       axis=st.one_of(st.integers(-6, 6), st.sampled_from([None, 1.0, "0", (0,), np.int64(0), True])),
       out_kind=st.sampled_from([None, "good", "strided", "wrong_shape", "wrong_dtype", "alias"]),
       dtype=float_dtypes)
def test_softmax_bad_axis_and_out(shape, axis, out_kind, dtype):
    shape = tuple(shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    x64 = x.astype(np.float64)
    out = {
        None: lambda: None, "good": lambda: np.empty(shape, dtype), "alias": lambda: x,
        "strided": lambda: np.zeros(tuple(2 * d for d in shape), dtype)[tuple(slice(None, None, 2) for _ in shape)],
        "wrong_shape": lambda: np.zeros(shape + (2,), dtype),
        "wrong_dtype": lambda: np.zeros(shape, np.float16),
    }[out_kind]()
    res = _raises_cleanly(lambda: fnn.ops.softmax(x, axis=axis, out=out))
    valid_axis = (isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and len(shape) > 0
                  and -len(shape) <= axis < len(shape))
    if res is None:
        assert not (valid_axis and out_kind in (None, "good", "strided", "alias")), "a valid call was refused"
        return
    assert valid_axis and out_kind in (None, "good", "strided", "alias")
    r = 8 * rtol_for(dtype)
    np.testing.assert_allclose(res, _softmax64(x64, int(axis)), rtol=r, atol=r * 1e-3)


# ---- regression tests for what the fuzzing found ---------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
def test_relu_keeps_nan(dtype):
    """The elementwise ReLU turned NaN into 0 (the fused GEMM ReLU and numpy_ref keep it)."""
    x = np.array([np.nan, -1.0, 2.0, -np.inf, np.inf], dtype=dtype)
    np.testing.assert_array_equal(fnn.ops.relu(x), [np.nan, 0.0, 2.0, 0.0, np.inf])
    fnn.ops.relu(x, out=x)                   # in place too
    np.testing.assert_array_equal(x, [np.nan, 0.0, 2.0, 0.0, np.inf])
    layer = fnn.layers.ReLU()
    np.testing.assert_array_equal(layer.forward(np.array([[np.nan, -1.0]], dtype=dtype)), [[np.nan, 0.0]])


@pytest.mark.parametrize("out", [
    np.zeros((0, 3)), np.zeros((3, 0)), np.zeros((3, 1)).T, np.asfortranarray(np.zeros((1, 3))),
    np.zeros((3, 2))[:, :1],
])
def test_matmul_accepts_empty_and_single_row_or_column_out(out):
    """An empty out (NumPy gives it zero strides) and a single contiguous row whose row stride is
    smaller than its width were refused as "rows not contiguous"."""
    a = np.ones((out.shape[0], 2))
    b = np.arange(2.0 * out.shape[1]).reshape(2, out.shape[1])
    assert fnn.ops.matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, a @ b)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_out_overlapping_input_at_an_offset(name):
    """An out overlapping x shifted by one element gave wrong values (read after write)."""
    buf = np.array([0.5, -0.25, 1.5, -2.0, 3.0], dtype=np.float64)
    x, out = buf[:4], buf[1:]
    want = UNARY[name](x.copy())
    assert getattr(fnn.ops, name)(x, out=out) is out
    np.testing.assert_allclose(out, want, rtol=1e-15)


@pytest.mark.parametrize("axis", [True, False, 1.0, "0", None])
def test_softmax_axis_must_be_an_int(axis):
    with pytest.raises(ValueError):
        fnn.ops.softmax(np.zeros((2, 2)), axis=axis)
