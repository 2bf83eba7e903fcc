"""Optimizers against the NumPy reference over several steps, gradient clipping (Keras semantics,
per weight array) and hyper-parameter validation."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import rtol_for

from fastnn import backend, optimizers
from fastnn.backend import numpy_ref
from fastnn.optimizers import SGD, Adam

SHAPES = [(7, 3), (3,), (1,), (33, 17)]


def _params(rng, dtype):
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _grads(rng, dtype):
    return [(rng.standard_normal(s) * 10.0 ** rng.uniform(-2, 1)).astype(dtype) for s in SHAPES]


def _close(a, b, dtype, scale=1.0):
    np.testing.assert_allclose(a, b, rtol=8 * rtol_for(dtype), atol=8 * rtol_for(dtype) * scale)


@pytest.mark.parametrize("momentum, nesterov, weight_decay", [
    (0.0, False, 0.0), (0.0, False, 0.1), (0.9, False, 0.0), (0.9, False, 0.05), (0.5, True, 0.0),
    (0.95, True, 0.01)])
def test_sgd_against_reference(momentum, nesterov, weight_decay, dtype, rng):
    lr = 0.05
    opt = SGD(learning_rate=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    params = _params(rng, dtype)
    ref = [p.astype(np.float64) for p in params]
    bufs = [np.zeros_like(p) for p in ref]
    for step in range(5):
        grads = _grads(rng, dtype)
        kept = [g.copy() for g in grads]
        opt.apply_gradients(zip(grads, params))
        for g, k in zip(grads, kept):           # the caller's gradients are not modified
            np.testing.assert_array_equal(g, k)
        for p, g, b in zip(ref, grads, bufs):
            numpy_ref.sgd_step(p, g.astype(np.float64), b, lr, momentum, weight_decay, nesterov, step == 0)
        assert opt.iterations == step + 1
        for p, r in zip(params, ref):
            assert p.dtype == dtype
            _close(p, r, dtype, scale=10.0)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("betas, eps", [((0.9, 0.999), 1e-7), ((0.5, 0.9), 1e-3)])
def test_adam_against_reference(weight_decay, betas, eps, dtype, rng):
    lr = 0.01
    opt = Adam(learning_rate=lr, beta_1=betas[0], beta_2=betas[1], epsilon=eps, weight_decay=weight_decay)
    params = _params(rng, dtype)
    ref = [p.astype(np.float64) for p in params]
    ms = [np.zeros_like(p) for p in ref]
    vs = [np.zeros_like(p) for p in ref]
    for t in range(1, 7):
        grads = _grads(rng, dtype)
        opt.apply_gradients(zip(grads, params))
        for p, g, m, v in zip(ref, grads, ms, vs):
            numpy_ref.adam_step(p, g.astype(np.float64), m, v, t, lr, betas[0], betas[1], eps, weight_decay)
        for p, r in zip(params, ref):
            _close(p, r, dtype, scale=10 * lr)


def test_adam_first_step_size_is_learning_rate(rng):
    """With bias correction the first Adam step moves each weight by lr * sign(g) (for |g| >> eps)."""
    p = rng.standard_normal(50)
    g = rng.uniform(0.5, 2.0, 50) * rng.choice([-1.0, 1.0], 50)
    before = p.copy()
    Adam(learning_rate=0.1).apply_gradients([(g, p)])
    np.testing.assert_allclose(before - p, 0.1 * np.sign(g), rtol=1e-5)


def test_flat_step_matches_per_array_step(dtype, rng):
    """Sequential updates one flat buffer with per-weight clipping: the same as per-array updates."""
    sizes = [21, 3, 1, 561]
    flat_p = rng.standard_normal(sum(sizes)).astype(dtype)
    flat_g = np.zeros_like(flat_p)
    offsets = np.cumsum([0] + sizes)
    views_g = [flat_g[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    arrays = [flat_p[a:b].copy() for a, b in zip(offsets[:-1], offsets[1:])]
    be = backend.get("cpu")
    flat_opt = Adam(learning_rate=0.01, clipnorm=1.0, weight_decay=0.01)
    array_opt = Adam(learning_rate=0.01, clipnorm=1.0, weight_decay=0.01)
    for _ in range(3):
        grads = [(rng.standard_normal(s) * 2).astype(dtype) for s in sizes]
        for v, g in zip(views_g, grads):
            v[...] = g
        flat_opt.step(be, flat_p, flat_g, views_g)
        array_opt.apply_gradients(zip(grads, arrays))
    for (a, b), arr in zip(zip(offsets[:-1], offsets[1:]), arrays):
        _close(flat_p[a:b], arr, dtype)


# ---- clipping ----------------------------------------------------------------------------------

def test_clipvalue(dtype):
    opt = SGD(learning_rate=1.0, clipvalue=0.5)
    p = np.zeros(6, dtype)
    g = np.array([-3.0, -0.5, -0.1, 0.0, 0.3, 7.0], dtype)
    opt.apply_gradients([(g, p)])
    np.testing.assert_allclose(p, -np.array([-0.5, -0.5, -0.1, 0.0, 0.3, 0.5]), rtol=1e-7)


def test_clipnorm_is_per_weight_array(dtype):
    opt = SGD(learning_rate=1.0, clipnorm=1.0)
    big = np.array([3.0, 4.0], dtype)            # norm 5: scaled to norm 1
    small = np.array([0.3, 0.4], dtype)          # norm 0.5: unchanged
    p1, p2 = np.zeros(2, dtype), np.zeros(2, dtype)
    opt.apply_gradients([(big, p1), (small, p2)])
    np.testing.assert_allclose(p1, [-0.6, -0.8], rtol=1e-6)
    np.testing.assert_allclose(p2, [-0.3, -0.4], rtol=1e-6)
    # not a global norm: the global norm of (big, small) is > 5 but small is not shrunk
    assert np.linalg.norm(p1) == pytest.approx(1.0, rel=1e-6)


def test_clipnorm_matrix_uses_frobenius_norm(rng):
    g = rng.standard_normal((5, 4)) * 10
    p = np.zeros((5, 4))
    SGD(learning_rate=1.0, clipnorm=2.0).apply_gradients([(g, p)])
    np.testing.assert_allclose(p, -g * 2.0 / np.linalg.norm(g), rtol=1e-12)


def test_clipvalue_and_clipnorm_together(rng):
    g = rng.standard_normal(40) * 5
    p = np.zeros(40)
    SGD(learning_rate=1.0, clipvalue=1.0, clipnorm=2.0).apply_gradients([(g, p)])
    assert np.abs(p).max() <= 1.0 + 1e-12
    assert np.linalg.norm(p) <= 2.0 + 1e-12


def test_clipping_before_momentum_and_adam(rng):
    g = np.array([10.0, -10.0])
    p = np.zeros(2)
    opt = Adam(learning_rate=0.1, clipvalue=1.0)
    opt.apply_gradients([(g, p)])
    np.testing.assert_allclose(opt.state["0/m"], [0.1, -0.1], rtol=1e-12)   # (1 - beta_1) * clipped g
    opt = SGD(learning_rate=0.1, momentum=0.9, clipnorm=1.0)
    p = np.zeros(2)
    opt.apply_gradients([(g, p)])
    np.testing.assert_allclose(opt.state["0/momentum"], g / np.linalg.norm(g), rtol=1e-12)


# ---- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("make, exc", [
    (lambda: SGD(learning_rate=0.0), ValueError),
    (lambda: SGD(learning_rate=-0.1), ValueError),
    (lambda: SGD(learning_rate=float("nan")), ValueError),
    (lambda: SGD(learning_rate=float("inf")), ValueError),
    (lambda: SGD(learning_rate="0.1"), TypeError),
    (lambda: SGD(learning_rate=None), TypeError),
    (lambda: SGD(learning_rate=True), TypeError),
    (lambda: SGD(momentum=-0.5), ValueError),
    (lambda: SGD(momentum="high"), TypeError),
    (lambda: SGD(nesterov=True), ValueError),               # Nesterov needs momentum
    (lambda: SGD(momentum=0.9, nesterov="yes"), TypeError),
    (lambda: SGD(weight_decay=-1e-4), ValueError),
    (lambda: SGD(clipnorm=0.0), ValueError),
    (lambda: SGD(clipnorm=-1.0), ValueError),
    (lambda: SGD(clipvalue=0.0), ValueError),
    (lambda: SGD(clipvalue=[1.0]), TypeError),
    (lambda: Adam(learning_rate=0.0), ValueError),
    (lambda: Adam(beta_1=1.0), ValueError),
    (lambda: Adam(beta_1=-0.1), ValueError),
    (lambda: Adam(beta_2=1.0), ValueError),
    (lambda: Adam(beta_2=1.5), ValueError),
    (lambda: Adam(epsilon=-1e-8), ValueError),
    (lambda: Adam(epsilon="small"), TypeError),
    (lambda: Adam(weight_decay=-0.1), ValueError),
    (lambda: Adam(clipnorm=0.0), ValueError),
])
def test_invalid_hyper_parameters(make, exc):
    with pytest.raises(exc):
        make()


def test_defaults_and_lookup():
    sgd = SGD()
    assert (sgd.learning_rate, sgd.momentum, sgd.nesterov, sgd.weight_decay) == (0.01, 0.0, False, 0.0)
    assert sgd.clipnorm is None and sgd.clipvalue is None
    adam = Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.weight_decay) == \
        (0.001, 0.9, 0.999, 1e-7, 0.0)
    assert isinstance(optimizers.get("sgd"), SGD)
    assert isinstance(optimizers.get("Adam"), Adam)
    assert optimizers.get(adam) is adam
    with pytest.raises(ValueError):
        optimizers.get("nadam")


@pytest.mark.parametrize("opt", [lambda: SGD(learning_rate=1.0), lambda: SGD(learning_rate=1.0, momentum=0.5),
                                 lambda: Adam(learning_rate=1.0)], ids=["sgd", "momentum", "adam"])
def test_apply_gradients_updates_non_contiguous_params(opt):
    """Parameters that are views (Fortran order, column slices) are updated in place too."""
    holder = np.zeros((3, 5))
    params = [np.asfortranarray(np.zeros((3, 2))), holder[:, :2], np.zeros((4, 3)).T]
    grads = [np.ones(p.shape) for p in params]
    optimizer = opt()
    for _ in range(2):
        optimizer.apply_gradients(zip(grads, params))
    expected = np.zeros((3, 2))
    reference = opt()
    for _ in range(2):
        reference.apply_gradients([(np.ones((3, 2)), expected)])
    assert expected[0, 0] < 0
    for p in params[:2]:
        np.testing.assert_array_equal(p, expected)
    np.testing.assert_array_equal(params[2], np.full((3, 4), expected[0, 0]))
    np.testing.assert_array_equal(holder[:, 2:], 0)


def test_apply_gradients_shape_mismatch():
    with pytest.raises(ValueError):
        SGD().apply_gradients([(np.ones(3), np.zeros(4))])


@pytest.mark.parametrize("kind", ["sgd", "nesterov", "adam", "adamw", "rmsprop", "rmsprop_centered_momentum"])
def test_update_kernels_same_bits_on_every_variant(kind, dtype, arch, rng):
    """The update loops are compiled once per instruction set: element-wise, without FMA
    contraction, so every variant gives the generic variant's bits (odd length: vector tails)."""
    from fastnn import _core
    n = 1000 + 37

    def run():
        r = np.random.default_rng(3)
        p, g, s1, s2, s3 = (r.standard_normal(n).astype(dtype) for _ in range(5))
        s2 = np.abs(s2)
        for t in range(1, 4):
            if kind in ("sgd", "nesterov"):
                _core.sgd_step(p, g, s1, 0.01, 0.9, 0.01, kind == "nesterov", t == 1, 2)
            elif kind in ("adam", "adamw"):
                _core.adam_step(p, g, s1, s2, t, 0.01, 0.9, 0.999, 1e-7, 0.01, 2, kind == "adamw")
            else:
                centered = kind != "rmsprop"
                _core.rmsprop_step(p, g, s2, s1 if centered else None, s3 if centered else None, 0.01, 0.9,
                                   0.5 if centered else 0.0, 1e-7, 0.01, 2)
        return p, s1, s2, s3

    got = run()
    original = _core.arch_get()
    try:
        _core.arch_set("generic")
        want = run()
    finally:
        _core.arch_set(original)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
