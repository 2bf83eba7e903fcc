"""Losses: float64 finite-difference checks of every gradient through the backend (logits and
probability paths), Keras-style ``loss(y_true, y_pred)`` values against NumPy formulas, and
finite results for saturated probabilities."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_grad_close, numeric_grad

import fastnn as fnn
from fastnn import backend, losses

BE = backend.get("cpu")


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _inside(p):
    """Probabilities squeezed into [0.05, 0.95]: finite differences stay clear of the clipping
    bounds and of the large curvature of log near 0."""
    return 0.05 + 0.9 * p


def _gradcheck(loss, out, y, logits):
    out = np.ascontiguousarray(out, dtype=np.float64)
    grad = np.empty_like(out)
    value = loss.compute(BE, out, y, grad, logits=logits)
    assert isinstance(value, float) and np.isfinite(value)
    assert loss.compute(BE, out, y, None, logits=logits) == value      # grad is optional
    numeric = numeric_grad(lambda: loss.compute(BE, out, y, None, logits=logits), out)
    # Central differences with h = 1e-6 carry a rounding error of about eps |loss| / h (~1e-9 for
    # a loss of 5): an absolute tolerance ten times that.
    assert_grad_close(grad, numeric, f"{type(loss).__name__}(logits={logits})", rtol=1e-6,
                      atol=2e-9 * max(1.0, abs(value)) * 5)
    return value, grad


# ---- gradients ------------------------------------------------------------------------------

@pytest.mark.parametrize("n, k", [(1, 1), (1, 3), (6, 4), (9, 17)])
def test_sparse_categorical_crossentropy_grad(n, k, rng):
    loss = losses.SparseCategoricalCrossentropy()
    z = rng.standard_normal((n, k)) * 2
    labels = rng.integers(0, k, n)
    y = loss.check_targets(labels, (k,), np.float64, "y")
    value, grad = _gradcheck(loss, z, y, logits=True)
    p = _softmax(z)
    np.testing.assert_allclose(grad, (p - np.eye(k)[labels]) / n, rtol=1e-12, atol=1e-15)
    # the probability path on the same outputs gives the same loss
    np.testing.assert_allclose(loss.compute(BE, p, y, None), value, rtol=1e-12)
    # the probability path's gradient, at probabilities away from the clipping bounds
    _gradcheck(loss, _inside(p), y, logits=False)
    # from_logits=True makes compute treat its input as logits
    assert losses.SparseCategoricalCrossentropy(from_logits=True).compute(BE, z, y, None) == value


@pytest.mark.parametrize("soft", [False, True], ids=["onehot", "soft"])
@pytest.mark.parametrize("n, k", [(1, 1), (1, 3), (6, 4), (9, 17)])
def test_categorical_crossentropy_grad(n, k, soft, rng):
    loss = losses.CategoricalCrossentropy()
    z = rng.standard_normal((n, k)) * 2
    t = rng.dirichlet(np.ones(k), size=n) if soft else np.eye(k)[rng.integers(0, k, n)]
    y = loss.check_targets(t, (k,), np.float64, "y")
    value, grad = _gradcheck(loss, z, y, logits=True)
    np.testing.assert_allclose(grad, (_softmax(z) - t) / n, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(loss.compute(BE, _softmax(z), y, None), value, rtol=1e-12)
    _gradcheck(loss, _inside(_softmax(z)), y, logits=False)


@pytest.mark.parametrize("shape", [(5, 1), (7, 3), (1, 1)])
def test_binary_crossentropy_grad(shape, rng):
    loss = losses.BinaryCrossentropy()
    z = rng.standard_normal(shape) * 2
    t = rng.uniform(0, 1, shape)
    t[0] = np.round(t[0])
    y = loss.check_targets(t, shape[1:], np.float64, "y")
    value, grad = _gradcheck(loss, z, y, logits=True)
    np.testing.assert_allclose(grad, (_sigmoid(z) - t) / z.size, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(loss.compute(BE, _sigmoid(z), y, None), value, rtol=1e-10)
    _gradcheck(loss, _inside(_sigmoid(z)), y, logits=False)


@pytest.mark.parametrize("shape", [(5,), (5, 1), (4, 3), (2, 3, 4)])
def test_mse_grad(shape, rng):
    loss = losses.MeanSquaredError()
    out = rng.standard_normal(shape)
    t = rng.standard_normal(shape)
    y = loss.check_targets(t, shape[1:], np.float64, "y")
    for logits in (False, True):          # mse has no logits path: the flag changes nothing
        value, grad = _gradcheck(loss, out, y, logits=logits)
        np.testing.assert_allclose(value, np.mean((out - t) ** 2), rtol=1e-12)
        np.testing.assert_allclose(grad, 2 * (out - t) / out.size, rtol=1e-12)


# ---- Keras-style values -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_keras_style_values(dtype, rng):
    n, k = 8, 5
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    z = (rng.standard_normal((n, k)) * 2).astype(dtype)
    p = _softmax(z.astype(np.float64)).astype(dtype)
    labels = rng.integers(0, k, n)
    onehot = np.eye(k)[labels]
    z64, p64 = z.astype(np.float64), p.astype(np.float64)

    scce = -np.log(p64[np.arange(n), labels]).mean()
    for y_true in (labels, labels.reshape(-1, 1), labels.astype(np.float64), list(labels)):
        value = losses.SparseCategoricalCrossentropy()(y_true, p)
        assert isinstance(value, float)
        np.testing.assert_allclose(value, scce, rtol=rtol)
    lse = np.log(np.exp(z64).sum(axis=1))
    np.testing.assert_allclose(losses.SparseCategoricalCrossentropy(from_logits=True)(labels, z),
                               (lse - z64[np.arange(n), labels]).mean(), rtol=rtol)

    soft = rng.dirichlet(np.ones(k), size=n)
    for t in (onehot, soft):
        np.testing.assert_allclose(losses.CategoricalCrossentropy()(t, p), -(t * np.log(p64)).sum(1).mean(),
                                   rtol=rtol)
        np.testing.assert_allclose(losses.CategoricalCrossentropy(from_logits=True)(t, z),
                                   (t.sum(1) * lse - (t * z64).sum(1)).mean(), rtol=rtol)

    zb = z[:, :1]
    pb = _sigmoid(zb.astype(np.float64)).astype(dtype)
    tb = rng.integers(0, 2, (n, 1)).astype(np.float64)
    pb64 = pb.astype(np.float64)
    bce = -(tb * np.log(pb64) + (1 - tb) * np.log(1 - pb64)).mean()
    for y_true in (tb, tb.ravel()):
        np.testing.assert_allclose(losses.BinaryCrossentropy()(y_true, pb), bce, rtol=rtol)
    zb64 = zb.astype(np.float64)
    np.testing.assert_allclose(losses.BinaryCrossentropy(from_logits=True)(tb, zb),
                               (np.maximum(zb64, 0) - zb64 * tb + np.log1p(np.exp(-np.abs(zb64)))).mean(),
                               rtol=rtol)
    # several independent labels per sample: mean over all elements
    tk = rng.integers(0, 2, (n, k)).astype(np.float64)
    pk64 = _sigmoid(z64)
    np.testing.assert_allclose(losses.BinaryCrossentropy()(tk, pk64.astype(dtype)),
                               -(tk * np.log(pk64) + (1 - tk) * np.log(1 - pk64)).mean(),
                               rtol=max(rtol, 1e-5))

    t = rng.standard_normal((n, k))
    np.testing.assert_allclose(losses.MeanSquaredError()(t, z), ((z64 - t) ** 2).mean(), rtol=rtol)
    np.testing.assert_allclose(losses.MeanSquaredError()(t[:, 0], z[:, :1]),
                               ((z64[:, 0] - t[:, 0]) ** 2).mean(),
                               rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_saturated_probabilities_stay_finite(dtype):
    eps = 1e-7 if dtype == np.float32 else 1e-15
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype)
    labels = np.array([1, 1])                 # row 0: probability 0 on its class
    onehot = np.eye(3)[labels]
    be = BE
    for loss, y, out in [
        (losses.SparseCategoricalCrossentropy(), labels, p),
        (losses.CategoricalCrossentropy(), onehot, p),
        (losses.BinaryCrossentropy(), np.array([[1.0], [0.0], [1.0], [0.0]]),
         np.array([[0.0], [1.0], [1.0], [0.0]], dtype=dtype)),
    ]:
        value = loss(y, out)
        assert np.isfinite(value), type(loss).__name__
        yc = loss.check_targets(y, out.shape[1:], np.dtype(dtype), "y")
        grad = np.empty_like(out)
        assert np.isfinite(loss.compute(be, out, yc, grad))
        assert np.isfinite(grad).all(), type(loss).__name__
        # the clipped probability bounds the loss like Keras' epsilon does
        assert value <= -np.log(eps) * 1.01
    np.testing.assert_allclose(losses.SparseCategoricalCrossentropy()(labels, p), -np.log(eps) / 2, rtol=1e-3)


def test_fused_softmax_crossentropy_does_not_saturate():
    """A final Softmax + cross-entropy trains on the logits: the loss of a confidently wrong model
    is its true value (not -log(epsilon)) and the gradient p - y stays finite."""
    model = fnn.Sequential([fnn.layers.Dense(3), fnn.layers.Softmax()], input_shape=(2,), dtype="float64")
    model.set_weights([np.array([[500.0, -500.0, 0.0], [0.0, 0.0, 0.0]]), np.zeros(3)])
    model.compile(optimizer=fnn.optimizers.SGD(learning_rate=1e-6), loss="sparse_categorical_crossentropy",
                  metrics=())
    x = np.array([[2.0, 1.0]])
    y = np.array([1])
    assert model.evaluate(x, y)["loss"] == pytest.approx(2000.0, rel=1e-9)     # logsumexp - z_1
    loss = model.train_on_batch(x, y)
    assert loss == pytest.approx(2000.0, rel=1e-9)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    w = model.get_weights()[0]
    # dL/dW = x^T (p - y) with p = (1, 0, 0): column 0 decreases, column 1 increases
    np.testing.assert_allclose(w[:, 0], [500.0 - 2e-6, -1e-6], rtol=1e-12)
    np.testing.assert_allclose(w[:, 1], [-500.0 + 2e-6, 1e-6], rtol=1e-12)


def test_fused_sigmoid_bce_does_not_saturate():
    model = fnn.Sequential([fnn.layers.Dense(1, activation="sigmoid")], input_shape=(1,), dtype="float64")
    model.set_weights([np.array([[300.0]]), np.zeros(1)])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=())
    assert model.evaluate(np.array([[1.0]]), np.array([0.0]))["loss"] == pytest.approx(300.0, rel=1e-9)


# ---- names and arguments ----------------------------------------------------------------------

def test_loss_lookup():
    assert isinstance(losses.get("sparse_categorical_crossentropy"), losses.SparseCategoricalCrossentropy)
    assert isinstance(losses.get("categorical_crossentropy"), losses.CategoricalCrossentropy)
    assert isinstance(losses.get("binary_crossentropy"), losses.BinaryCrossentropy)
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    obj = losses.BinaryCrossentropy(from_logits=True)
    assert losses.get(obj) is obj and obj.from_logits
    with pytest.raises(ValueError):
        losses.get("hinge")
    with pytest.raises(TypeError):
        losses.CategoricalCrossentropy(from_logits="yes")


def test_targets_checked():
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError):
        losses.SparseCategoricalCrossentropy()([0, 3], p)
    with pytest.raises(ValueError):
        losses.SparseCategoricalCrossentropy()([0.5, 1], p)
    with pytest.raises(ValueError):
        losses.CategoricalCrossentropy()(np.ones((2, 4)), p)
    with pytest.raises(ValueError):
        losses.BinaryCrossentropy()([0.0, 2.0], np.full((2, 1), 0.5))
