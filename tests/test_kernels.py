"""Every op of the CPU backend (C kernels) against the pure-NumPy reference backend, in float32 and
float64 with odd sizes; determinism across thread counts; ``fnn.ops`` elementwise kernels."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
from helpers import rtol_for

import fastnn as fnn
from fastnn import _core
from fastnn.backend import ACT_CODES, cpu, numpy_ref

SIZES = (1, 7, 17, 33, 129, 1023)
BIG = 100_003            # above the kernels' minimum work per thread: runs parallel


def _close(actual, expected, dtype, scale=1.0, rtol=None):
    rtol = rtol_for(dtype) if rtol is None else rtol
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def test_backends_have_the_same_ops():
    ops = [n for n, f in vars(numpy_ref).items() if inspect.isfunction(f) and not n.startswith("_")
           and f.__module__ == numpy_ref.__name__ and n != "dropout_mask"]
    assert len(ops) >= 15
    for name in ops:
        assert hasattr(cpu, name), name
        assert inspect.signature(getattr(cpu, name)) == inspect.signature(getattr(numpy_ref, name)), name


# ---- activations ---------------------------------------------------------------------------

@pytest.mark.parametrize("act", sorted(ACT_CODES), ids=sorted(ACT_CODES))
@pytest.mark.parametrize("n", SIZES + (BIG,))
def test_act_fwd_bwd(act, n, dtype, rng):
    code = ACT_CODES[act]
    alpha = 0.1 if act == "leaky_relu" else 0.0
    x = (rng.standard_normal(n) * 5).astype(dtype)
    x[: min(n, 3)] = [0.0, -0.0, 30.0][: min(n, 3)]     # zeros and a saturating value
    dy = rng.standard_normal(n).astype(dtype)
    y, y_ref = np.empty_like(x), np.empty_like(x)
    assert cpu.act_fwd(code, x, y, alpha) is y
    numpy_ref.act_fwd(code, x, y_ref, alpha)
    if act in ("linear", "relu", "leaky_relu"):
        np.testing.assert_array_equal(y, y_ref)
    else:
        _close(y, y_ref, dtype)
    dx, dx_ref = np.empty_like(x), np.empty_like(x)
    cpu.act_bwd(code, y, dy, dx, alpha)
    numpy_ref.act_bwd(code, y, dy, dx_ref, alpha)
    _close(dx, dx_ref, dtype)


@pytest.mark.parametrize("act", sorted(ACT_CODES), ids=sorted(ACT_CODES))
def test_act_in_place_and_2d(act, dtype, rng):
    code = ACT_CODES[act]
    x = (rng.standard_normal((17, 33)) * 3).astype(dtype)
    expected = numpy_ref.act_fwd(code, x, np.empty_like(x), 0.2)
    buf = x.copy()
    cpu.act_fwd(code, buf, buf, 0.2)                 # y may alias x
    _close(buf, expected, dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    expected_dx = numpy_ref.act_bwd(code, expected, dy, np.empty_like(x), 0.2)
    g = dy.copy()
    cpu.act_bwd(code, expected, g, g, 0.2)           # dx may alias dy
    _close(g, expected_dx, dtype)


def test_sigmoid_tanh_extremes(dtype):
    x = np.array([-1e4, -800.0, -100.0, -20.0, 0.0, 20.0, 100.0, 800.0, 1e4], dtype=dtype)
    s, t = np.empty_like(x), np.empty_like(x)
    with np.errstate(over="raise"):
        cpu.act_fwd(ACT_CODES["sigmoid"], x, s)
    cpu.act_fwd(ACT_CODES["tanh"], x, t)
    assert np.isfinite(s).all() and np.isfinite(t).all()
    assert s[0] == 0 and s[-1] == 1 and s[4] == 0.5
    np.testing.assert_array_equal(t[[0, -1]], [-1, 1])


def test_unknown_activation_code():
    x = np.ones(3, dtype=np.float32)
    with pytest.raises(ValueError):
        _core.act_fwd(5, x, x.copy())
    with pytest.raises(ValueError):
        _core.act_bwd(-1, x, x, x.copy())


# ---- softmax and losses ------------------------------------------------------------------------

@pytest.mark.parametrize("m, k", [(1, 1), (7, 1), (1, 7), (17, 33), (33, 17), (5, 1023), (129, 7),
                                  (300, 400)])
def test_softmax_fwd_bwd(m, k, dtype, rng):
    x = (rng.standard_normal((m, k)) * 4).astype(dtype)
    y, y_ref = np.empty_like(x), np.empty_like(x)
    cpu.softmax_fwd(x, y)
    numpy_ref.softmax_fwd(x, y_ref)
    _close(y, y_ref, dtype, rtol=4 * rtol_for(dtype))
    _close(y.sum(axis=1), 1.0, dtype, rtol=8 * rtol_for(dtype))
    dy = rng.standard_normal((m, k)).astype(dtype)
    dx, dx_ref = np.empty_like(x), np.empty_like(x)
    cpu.softmax_bwd(y_ref, dy, dx)
    numpy_ref.softmax_bwd(y_ref, dy, dx_ref)
    _close(dx, dx_ref, dtype, scale=float(np.abs(dy).max()), rtol=8 * rtol_for(dtype))


def test_softmax_extreme_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [3e4, 3e4, -3e4]], dtype=dtype)
    y = np.empty_like(x)
    cpu.softmax_fwd(x, y)
    np.testing.assert_allclose(y, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]], rtol=rtol_for(dtype))


def _labels_and_onehot(rng, m, k, dtype):
    labels = rng.integers(0, k, size=m).astype(np.int64)
    onehot = np.eye(k, dtype=dtype)[labels]
    return labels, onehot


@pytest.mark.parametrize("m, k", [(1, 1), (1, 7), (7, 2), (17, 33), (129, 10), (33, 1023)])
@pytest.mark.parametrize("target", ["labels", "onehot", "soft"])
def test_softmax_xent(m, k, target, dtype, rng):
    z = (rng.standard_normal((m, k)) * 3).astype(dtype)
    labels, onehot = _labels_and_onehot(rng, m, k, dtype)
    if target == "soft":
        onehot = rng.dirichlet(np.ones(k), size=m).astype(dtype)
    kw = {"labels": labels} if target == "labels" else {"onehot": onehot}
    scale = 1.0 / m
    g, p = np.empty_like(z), np.empty_like(z)
    g_ref, p_ref = np.empty_like(z), np.empty_like(z)
    loss = cpu.softmax_xent(z, grad=g, prob=p, scale=scale, **kw)
    loss_ref = numpy_ref.softmax_xent(z, grad=g_ref, prob=p_ref, scale=scale, **kw)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    _close(p, p_ref, dtype, rtol=4 * rtol_for(dtype))
    _close(g, g_ref, dtype, scale=scale, rtol=4 * rtol_for(dtype))
    # the loss alone, the gradient alone
    assert cpu.softmax_xent(z, **kw) == loss
    g2 = np.empty_like(z)
    assert cpu.softmax_xent(z, grad=g2, scale=scale, **kw) == loss
    np.testing.assert_array_equal(g2, g)


@pytest.mark.parametrize("target", ["labels", "onehot"])
def test_softmax_xent_extreme_logits(target, dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [1e4, 1e4, -1e4], [0.0, 0.0, 0.0]], dtype=dtype)
    labels = np.array([0, 0, 1, 2], dtype=np.int64)
    onehot = np.eye(3, dtype=dtype)[labels]
    kw = {"labels": labels} if target == "labels" else {"onehot": onehot}
    g, p = np.empty_like(z), np.empty_like(z)
    loss = cpu.softmax_xent(z, grad=g, prob=p, scale=0.25, **kw)
    assert np.isfinite(loss) and np.isfinite(g).all() and np.isfinite(p).all()
    # rows: ~0, 2e4, log 2, log 3
    np.testing.assert_allclose(loss, (0 + 2e4 + np.log(2) + np.log(3)) / 4, rtol=1e-6)
    np.testing.assert_allclose(p, [[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0], [1 / 3] * 3], rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(g, (p - onehot) * 0.25, rtol=1e-6, atol=1e-30)


def test_softmax_xent_label_out_of_range(dtype):
    z = np.zeros((3, 4), dtype=dtype)
    for bad in (4, -1, 2**40):
        labels = np.array([0, bad, 1], dtype=np.int64)
        with pytest.raises(ValueError):
            _core.softmax_xent(z, labels, None, None, None, 1.0, 1)
    with pytest.raises(ValueError):                  # neither or both targets
        _core.softmax_xent(z, None, None)
    with pytest.raises(ValueError):
        _core.softmax_xent(z, np.zeros(3, dtype=np.int64), z)


@pytest.mark.parametrize("n", SIZES + (BIG,))
def test_sigmoid_bce(n, dtype, rng):
    z = (rng.standard_normal(n) * 4).astype(dtype)
    t = rng.uniform(0, 1, n).astype(dtype)
    t[: n // 2] = np.round(t[: n // 2])
    g, p, g_ref, p_ref = (np.empty_like(z) for _ in range(4))
    loss = cpu.sigmoid_bce(z, t, grad=g, prob=p, scale=1.0 / n)
    loss_ref = numpy_ref.sigmoid_bce(z, t, grad=g_ref, prob=p_ref, scale=1.0 / n)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5 if dtype == np.float32 else 1e-12)
    _close(p, p_ref, dtype)
    _close(g, g_ref, dtype, scale=1.0 / n, rtol=4 * rtol_for(dtype))
    assert cpu.sigmoid_bce(z, t) == loss
    # 2-D inputs go through the same kernel
    assert cpu.sigmoid_bce(z.reshape(-1, 1), t.reshape(-1, 1)) == loss


def test_sigmoid_bce_extreme_logits(dtype):
    z = np.array([1e4, -1e4, 1e4, -1e4, 100.0, -100.0, 0.0], dtype=dtype)
    t = np.array([1, 0, 0, 1, 1, 1, 0.5], dtype=dtype)
    g, p = np.empty_like(z), np.empty_like(z)
    loss = cpu.sigmoid_bce(z, t, grad=g, prob=p, scale=1.0)
    assert np.isfinite(loss) and np.isfinite(g).all() and np.isfinite(p).all()
    rows = np.array([0, 0, 1e4, 1e4, 0, 100, np.log(2)])
    np.testing.assert_allclose(loss, rows.mean(), rtol=1e-6)
    np.testing.assert_allclose(g, [0, 0, 1, -1, 0, -1, 0], atol=1e-6)


@pytest.mark.parametrize("n", SIZES + (BIG,))
def test_mse(n, dtype, rng):
    y = rng.standard_normal(n).astype(dtype)
    t = rng.standard_normal(n).astype(dtype)
    g, g_ref = np.empty_like(y), np.empty_like(y)
    loss = cpu.mse(y, t, grad=g, scale=1.0 / n)
    loss_ref = numpy_ref.mse(y, t, grad=g_ref, scale=1.0 / n)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-6 if dtype == np.float32 else 1e-12)
    _close(g, g_ref, dtype, scale=1.0 / n)
    assert cpu.mse(y.reshape(-1, 1), t.reshape(-1, 1)) == loss


def test_losses_of_empty_batches(dtype):
    z = np.empty((0, 3), dtype=dtype)
    assert cpu.softmax_xent(z, labels=np.empty(0, dtype=np.int64)) == 0.0
    assert cpu.sigmoid_bce(np.empty(0, dtype=dtype), np.empty(0, dtype=dtype)) == 0.0
    assert cpu.mse(np.empty(0, dtype=dtype), np.empty(0, dtype=dtype)) == 0.0


# ---- linear layer backward (bias gradient) -------------------------------------------------------

@pytest.mark.parametrize("m, n_in, n_out", [(1, 1, 1), (7, 17, 33), (129, 33, 17), (1023, 7, 129),
                                            (33, 5, 1023)])
def test_linear_fwd_bwd(m, n_in, n_out, dtype, rng):
    x = rng.standard_normal((m, n_in)).astype(dtype)
    w = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    dy = rng.standard_normal((m, n_out)).astype(dtype)
    tol = 4 * (max(m, n_in, n_out) + 2) * float(np.finfo(dtype).eps)
    for relu in (False, True):
        out, out_ref = np.empty((m, n_out), dtype), np.empty((m, n_out), dtype)
        cpu.linear_fwd(x, w, b, out, relu=relu)
        numpy_ref.linear_fwd(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), out_ref, relu)
        np.testing.assert_allclose(out, out_ref, rtol=tol, atol=tol * np.sqrt(n_in))
    dw, db, dx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
    dw_r, db_r, dx_r = np.empty_like(w), np.empty_like(b), np.empty_like(x)
    assert cpu.linear_bwd(x, w, dy, dw, db, dx) is dx
    numpy_ref.linear_bwd(x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64), dw_r, db_r, dx_r)
    np.testing.assert_allclose(dw, dw_r, rtol=tol, atol=tol * np.sqrt(m))
    np.testing.assert_allclose(db, db_r, rtol=tol, atol=tol * np.sqrt(m))
    np.testing.assert_allclose(dx, dx_r, rtol=tol, atol=tol * np.sqrt(n_out))
    # no bias, no dx
    dw2 = np.empty_like(w)
    assert cpu.linear_bwd(x, w, dy, dw2, None, None) is None
    np.testing.assert_array_equal(dw2, dw)


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (-0.5, 1.5)])
def test_matmul_op(trans_a, trans_b, alpha, beta, dtype, rng):
    m, n, k = 17, 33, 129
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    out, out_ref = c0.copy(), c0.astype(np.float64)
    assert cpu.matmul(a, b, out, trans_a, trans_b, alpha, beta) is out
    numpy_ref.matmul(a.astype(np.float64), b.astype(np.float64), out_ref, trans_a, trans_b, alpha, beta)
    tol = 4 * (k + 2) * float(np.finfo(dtype).eps)
    np.testing.assert_allclose(out, out_ref, rtol=tol, atol=tol * np.sqrt(k))


def test_bias_grad_accumulate(dtype, rng):
    dy = rng.standard_normal((33, 17)).astype(dtype)
    db = np.full(17, 2.0, dtype=dtype)
    tol = 40 * float(np.finfo(dtype).eps) * np.abs(dy).sum(0)     # 33 terms
    _core.bias_grad(dy, db, True, 1)
    assert (np.abs(db - (2.0 + dy.astype(np.float64).sum(0))) <= tol + 2 * float(np.finfo(dtype).eps)).all()
    _core.bias_grad(dy, db, False, 1)
    assert (np.abs(db - dy.astype(np.float64).sum(0)) <= tol).all()


# ---- dropout ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES + (BIG,))
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_dropout_mask_matches_reference(n, rate, dtype, rng):
    seed = int(rng.integers(0, 2**63)) * 2 + 1        # up to 2**64 - 1
    offset = int(rng.integers(0, 2**40))
    x = rng.standard_normal(n).astype(dtype)
    y, mask = np.empty_like(x), np.empty_like(x)
    y_ref, mask_ref = np.empty_like(x), np.empty_like(x)
    cpu.dropout_fwd(x, rate, seed, offset, y, mask)
    numpy_ref.dropout_fwd(x, rate, seed, offset, y_ref, mask_ref)
    np.testing.assert_array_equal(mask, mask_ref)
    np.testing.assert_array_equal(mask, numpy_ref.dropout_mask(n, rate, seed, offset, np.dtype(dtype)))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(y, x * mask)
    assert set(np.unique(mask)) <= {0, dtype.type(1 / (1 - rate))}
    if rate == 0.0:
        np.testing.assert_array_equal(y, x)


def test_dropout_same_bits_under_every_kernel_variant(arch, dtype, rng):
    """The hashing loop has an AVX-512 clone: every variant gives the reference's bits, across
    an offset whose low 32 bits wrap inside the range."""
    n, offset = 1000, 2**32 - 300
    x = rng.standard_normal(n).astype(dtype)
    y, mask = np.empty_like(x), np.empty_like(x)
    cpu.dropout_fwd(x, 0.3, 12345, offset, y, mask)
    np.testing.assert_array_equal(mask, numpy_ref.dropout_mask(n, 0.3, 12345, offset, np.dtype(dtype)))
    np.testing.assert_array_equal(y, x * mask)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_keep_rate(rate, rng):
    n = 200_000
    mask = numpy_ref.dropout_mask(n, rate, int(rng.integers(0, 2**63)), 0, np.dtype(np.float32))
    x, y, m = np.ones(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
    cpu.dropout_fwd(x, rate, 99, 0, y, m)
    for mk in (mask, m):
        kept = np.count_nonzero(mk) / n
        sigma = np.sqrt(rate * (1 - rate) / n)
        assert abs(kept - (1 - rate)) < 6 * sigma, kept
    # inverted dropout keeps the expectation: mean of y close to 1
    assert abs(y.mean() - 1.0) < 6 * np.sqrt(rate / (1 - rate) / n)


def test_dropout_same_mask_for_any_thread_count_and_dtype(rng):
    n, rate, seed = BIG, 0.3, int(rng.integers(0, 2**63))
    masks = {}
    for dtype in (np.float32, np.float64):
        for threads in (1, 2, 3):
            fnn.set_num_threads(threads)
            x = np.ones(n, dtype)
            y, m = np.empty_like(x), np.empty_like(x)
            cpu.dropout_fwd(x, rate, seed, 12345, y, m)
            masks[dtype, threads] = m
    for (dtype, threads), m in masks.items():
        np.testing.assert_array_equal(m, masks[dtype, 1], err_msg=f"{dtype.__name__}, {threads} threads")
        np.testing.assert_array_equal(m != 0, masks[np.float32, 1] != 0,
                                      err_msg="keep pattern differs by dtype")


def test_dropout_counter_based(rng):
    """The mask of element i depends only on (seed, offset + i)."""
    seed, rate = int(rng.integers(0, 2**63)), 0.5
    n, off = 1000, 37

    def mask(count, offset):
        x = np.ones(count)
        y, m = np.empty_like(x), np.empty_like(x)
        cpu.dropout_fwd(x, rate, seed, offset, y, m)
        return m

    np.testing.assert_array_equal(mask(n, off), mask(n + off, 0)[off:])
    assert (mask(n, 0) != mask(n, n)).any(), "different offsets gave the same mask"
    other_seed = cpu.dropout_fwd(np.ones(n), rate, seed ^ 1, 0, np.empty(n), np.empty(n))   # y = mask here
    assert (mask(n, 0) != other_seed).any(), "different seeds gave the same mask"
    # the counter wraps around 2**64 like the reference
    m_wrap = mask(9, 2**64 - 4)
    np.testing.assert_array_equal(m_wrap,
                                  numpy_ref.dropout_mask(9, rate, seed, 2**64 - 4, np.dtype(np.float64)))
    np.testing.assert_array_equal(m_wrap[4:], mask(5, 0))


def test_dropout_rate_checked():
    x = np.ones(4)
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError):
            _core.dropout_fwd(x, x.copy(), x.copy(), bad, 1, 0, 1)


@pytest.mark.parametrize("n", SIZES + (BIG,))
def test_mul(n, dtype, rng):
    a, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    out = np.empty_like(a)
    assert cpu.mul(a, b, out) is out
    np.testing.assert_array_equal(out, numpy_ref.mul(a, b, np.empty_like(a)))
    a2 = a.reshape(-1, 1).copy()
    np.testing.assert_array_equal(cpu.mul(a2, b.reshape(-1, 1), np.empty_like(a2)).ravel(), out)


# ---- optimizer steps --------------------------------------------------------------------------

SGD_CASES = [
    dict(momentum=0.0, weight_decay=0.0, nesterov=False),
    dict(momentum=0.0, weight_decay=0.01, nesterov=False),
    dict(momentum=0.9, weight_decay=0.0, nesterov=False),
    dict(momentum=0.9, weight_decay=0.05, nesterov=False),
    dict(momentum=0.8, weight_decay=0.0, nesterov=True),
    dict(momentum=0.8, weight_decay=0.02, nesterov=True),
]


@pytest.mark.parametrize("case", SGD_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("n", [1, 17, 1023, BIG])
def test_sgd_step(case, n, dtype, rng):
    p = rng.standard_normal(n).astype(dtype)
    buf = np.zeros(n, dtype) if case["momentum"] else None
    p_ref, buf_ref = p.copy(), (None if buf is None else buf.copy())
    for step in range(4):
        g = rng.standard_normal(n).astype(dtype)
        first = step == 0
        cpu.sgd_step(p, g, buf, 0.1, case["momentum"], case["weight_decay"], case["nesterov"], first)
        numpy_ref.sgd_step(p_ref, g, buf_ref, 0.1, case["momentum"], case["weight_decay"], case["nesterov"],
                           first)
        _close(p, p_ref, dtype, scale=4.0, rtol=4 * rtol_for(dtype))
        if buf is not None:
            _close(buf, buf_ref, dtype, scale=4.0, rtol=4 * rtol_for(dtype))


def test_sgd_step_first_ignores_stale_buffer(dtype, rng):
    p = rng.standard_normal(33).astype(dtype)
    g = rng.standard_normal(33).astype(dtype)
    buf = np.full(33, 1e3, dtype)                # garbage from an earlier run
    expected = p - dtype.type(0.5) * g
    cpu.sgd_step(p, g, buf, 0.5, 0.9, 0.0, False, True)
    _close(buf, g, dtype)
    _close(p, expected, dtype)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("n", [1, 17, 1023, BIG])
def test_adam_step(weight_decay, n, dtype, rng):
    p = rng.standard_normal(n).astype(dtype)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    p_ref, m_ref, v_ref = p.copy(), m.copy(), v.copy()
    gmax = 0.0
    for t in range(1, 6):
        g = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 2)).astype(dtype)
        cpu.adam_step(p, g, m, v, t, 0.01, 0.9, 0.999, 1e-7, weight_decay)
        numpy_ref.adam_step(p_ref, g, m_ref, v_ref, t, 0.01, 0.9, 0.999, 1e-7, weight_decay)
        # m and v are running sums of gradients of very different sizes that may cancel: the
        # rounding error is relative to the largest terms summed, not to the result.
        gmax = max(gmax, float(np.abs(g).max()) + weight_decay * float(np.abs(p_ref).max()))
        _close(m, m_ref, dtype, scale=float(np.abs(m_ref).max()) + gmax, rtol=8 * rtol_for(dtype))
        _close(v, v_ref, dtype, scale=float(np.abs(v_ref).max()) + gmax * gmax, rtol=8 * rtol_for(dtype))
        # the step itself is lr-sized: compare the parameters to a fraction of it
        _close(p, p_ref, dtype, scale=0.01, rtol=40 * rtol_for(dtype))


def test_adam_step_rejects_step_zero():
    x = np.zeros(3)
    with pytest.raises(ValueError):
        _core.adam_step(x, x.copy(), x.copy(), x.copy(), 0, 0.1, 0.9, 0.999, 1e-7, 0.0, 1)


# ---- determinism across thread counts -------------------------------------------------------

def _run_with_threads(threads, fn):
    fnn.set_num_threads(threads)
    return fn()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_reductions_bit_identical_across_threads(dtype, rng):
    m, k = 4096, 300
    z = (rng.standard_normal((m, k)) * 3).astype(dtype)
    labels = rng.integers(0, k, m).astype(np.int64)
    onehot = rng.dirichlet(np.ones(k), size=m).astype(dtype)
    t01 = rng.uniform(0, 1, (m, k)).astype(dtype)
    w = rng.standard_normal((k, 65)).astype(dtype)
    dy = rng.standard_normal((m, k)).astype(dtype)

    def run():
        g1, g2, g3, g4 = (np.empty_like(z) for _ in range(4))
        dw, db, dx = np.empty((k, k), dtype), np.empty(k, dtype), np.empty((m, k), dtype)
        db_acc = np.ones(k, dtype)
        _core.bias_grad(dy, db_acc, True, fnn.get_num_threads())
        out = np.empty((m, 65), dtype)
        cpu.linear_bwd(z, np.empty((k, k), dtype), dy, dw, db, None)
        cpu.linear_fwd(z, w, None, out)
        cpu.matmul(dy, z, dx[:k, :k], trans_a=True)
        sm = np.empty_like(z)
        cpu.softmax_fwd(z, sm)
        return [cpu.softmax_xent(z, labels=labels, grad=g1, scale=1 / m),
                cpu.softmax_xent(z, onehot=onehot, grad=g2, scale=1 / m),
                cpu.sigmoid_bce(z, t01, grad=g3, scale=1 / z.size),
                cpu.mse(z, t01, grad=g4, scale=1 / z.size),
                g1, g2, g3, g4, dw, db, db_acc, out, dx[:k, :k], sm]

    one = _run_with_threads(1, run)
    for threads in (2, 3, 4):
        other = _run_with_threads(threads, run)
        for i, (a, b) in enumerate(zip(one, other)):
            np.testing.assert_array_equal(a, b, err_msg=f"result {i} differs with {threads} threads")


# ---- fnn.ops elementwise kernels ------------------------------------------------------------

UNARY = {
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("shape", [(1,), (1023,), (7, 17), (3, 5, 33)])
def test_ops_unary(name, shape, dtype, rng):
    fn = getattr(fnn.ops, name)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x_keep = x.copy()
    y = fn(x)
    assert y.shape == x.shape and y.dtype == dtype and not np.may_share_memory(y, x)
    np.testing.assert_array_equal(x, x_keep)
    np.testing.assert_allclose(y, UNARY[name](x.astype(np.float64)), rtol=rtol_for(dtype), atol=1e-7)
    # non-contiguous input
    big = (rng.standard_normal(shape[:-1] + (2 * shape[-1] + 1,)) * 4).astype(dtype)
    view = big[..., 1::2]
    np.testing.assert_allclose(fn(view), UNARY[name](view.astype(np.float64)), rtol=rtol_for(dtype),
                               atol=1e-7)
    if x.ndim > 1:
        np.testing.assert_allclose(fn(x.T), UNARY[name](x.T.astype(np.float64)), rtol=rtol_for(dtype),
                                   atol=1e-7)
    # out=, contiguous and not
    out = np.empty_like(x)
    assert fn(x, out=out) is out
    np.testing.assert_array_equal(out, y)
    holder = np.zeros(shape[:-1] + (2 * shape[-1],), dtype)
    out_view = holder[..., ::2]
    assert fn(x, out=out_view) is out_view
    np.testing.assert_array_equal(holder[..., ::2], y)
    np.testing.assert_array_equal(holder[..., 1::2], 0)
    # in place
    z = x.copy()
    fn(z, out=z)
    np.testing.assert_array_equal(z, y)


def _softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("shape, axis", [((7,), 0), ((7,), -1), ((5, 17), -1), ((5, 17), 0), ((3, 4, 33), 1),
                                         ((3, 4, 33), -3), ((2, 3, 4, 5), 2)])
def test_ops_softmax(shape, axis, dtype, rng):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    y = fnn.ops.softmax(x, axis=axis)
    assert y.shape == x.shape and y.dtype == dtype
    np.testing.assert_allclose(y, _softmax_ref(x.astype(np.float64), axis), rtol=4 * rtol_for(dtype),
                               atol=1e-7)
    if x.ndim > 1:
        xt = x.swapaxes(0, -1)        # non-contiguous
        np.testing.assert_allclose(fnn.ops.softmax(xt, axis=axis), _softmax_ref(xt.astype(np.float64), axis),
                                   rtol=4 * rtol_for(dtype), atol=1e-7)
    out = np.empty_like(x)
    assert fnn.ops.softmax(x, axis=axis, out=out) is out
    np.testing.assert_array_equal(out, y)


def test_ops_softmax_default_axis_is_last(rng):
    x = rng.standard_normal((4, 6))
    np.testing.assert_allclose(fnn.ops.softmax(x), _softmax_ref(x, -1), rtol=1e-13)
    with pytest.raises(ValueError):
        fnn.ops.softmax(x, axis=2)


def test_ops_reject_wrong_dtype_and_out():
    with pytest.raises(TypeError):
        fnn.ops.relu(np.arange(4))
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError):
        fnn.ops.relu(x, out=np.empty((3, 2), np.float32))
    with pytest.raises(ValueError):
        fnn.ops.sigmoid(x, out=np.empty((2, 3), np.float64))


def test_exp_of_nan_is_nan_without_undefined_conversion(arch):
    """fnn_expf converted NaN to int (undefined behaviour, caught by the sanitizer run): a NaN row of
    softmax is NaN, the other rows are unaffected, in every kernel variant."""
    x = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0], [np.nan] * 3], dtype=np.float32)
    y = fnn.ops.softmax(x)
    assert np.isnan(y[0]).all() and np.isnan(y[2]).all()
    np.testing.assert_allclose(y[1], np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum(), rtol=1e-6)


@pytest.mark.parametrize("op", [fnn.ops.relu, fnn.ops.sigmoid, fnn.ops.tanh, fnn.ops.softmax])
def test_misaligned_arrays_are_copied_not_passed_to_the_kernels(op):
    """A float array at an odd byte offset (legal in NumPy) is never handed to C as is: the kernels'
    element loads and stores are only defined for aligned addresses (found by the sanitizer run)."""
    buf_in = np.zeros(4 * 7 + 1, np.uint8)
    x = buf_in[1:].view(np.float32).reshape(1, 7)
    x[...] = np.linspace(-2, 2, 7, dtype=np.float32)
    buf_out = np.zeros(4 * 7 + 1, np.uint8)
    out = buf_out[1:].view(np.float32).reshape(1, 7)
    assert not x.flags.aligned and not out.flags.aligned
    want = op(np.array(x))
    np.testing.assert_array_equal(op(x), want)
    assert op(x, out=out) is out
    np.testing.assert_array_equal(out, want)
    a = buf_in[1:].view(np.float32).reshape(7, 1)
    np.testing.assert_allclose(fnn.ops.matmul(a, a, trans_b=True), np.array(a) @ np.array(a).T, rtol=1e-6)
    with pytest.raises(ValueError, match="aligned"):
        _core.gemm(a, np.ones((1, 2), np.float32), np.zeros((7, 2), np.float32))
