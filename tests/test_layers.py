"""Every layer through the common harness (tests/helpers.py), plus layer-specific behaviour."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import check_layer

import fastnn as fnn
from fastnn.backend import numpy_ref
from fastnn.layers import Dense, Dropout, Flatten, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh


def _dense_preact(layer, x):
    w = layer.get_weights()
    return x @ w[0] + (w[1] if len(w) > 1 else 0)


@pytest.mark.parametrize("activation", [None, "linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense(activation, use_bias, rng, tmp_path):
    layer = check_layer(lambda: Dense(4, activation=activation, use_bias=use_bias), (5,), rng,
                        expected_output_shape=(4,), kink=_dense_preact, save_load_dir=tmp_path)
    assert [w.shape for w in layer.get_weights()] == ([(5, 4), (4,)] if use_bias else [(5, 4)])


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh", "softmax", "leaky_relu"])
def test_dense_forward_matches_numpy(activation, rng, dtype):
    layer = Dense(7, activation=activation)
    layer.build((13,), dtype=dtype)
    w, b = rng.standard_normal((13, 7)), rng.standard_normal(7)
    layer.set_weights([w, b])
    x = rng.standard_normal((17, 13)).astype(dtype)
    z = x.astype(np.float64) @ w.astype(dtype) + b.astype(dtype)
    expected = {
        None: lambda v: v, "relu": lambda v: np.maximum(v, 0), "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
        "tanh": np.tanh, "leaky_relu": lambda v: np.where(v > 0, v, 0.01 * v),
        "softmax": lambda v: np.exp(v - v.max(1, keepdims=True)) / np.exp(v - v.max(1, keepdims=True)).sum(
            1, keepdims=True),
    }[activation](z)
    y = layer.forward(x, training=False)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_dense_uses_default_dtype(float64_default, rng):
    layer = Dense(3)
    y = layer.forward(rng.standard_normal((2, 4)).astype(np.float32))
    assert layer.dtype == np.float64 and y.dtype == np.float64
    assert all(w.dtype == np.float64 for w in layer.get_weights())


@pytest.mark.parametrize("make, kink", [
    (ReLU, lambda layer, x: x),
    (Sigmoid, None),
    (Tanh, None),
    (lambda: LeakyReLU(0.2), lambda layer, x: x),
    (lambda: LeakyReLU(0.0), lambda layer, x: x),
], ids=["relu", "sigmoid", "tanh", "leaky_relu_0.2", "leaky_relu_0"])
@pytest.mark.parametrize("shape", [(6,), (2, 3, 4)], ids=["2d", "4d"])
def test_elementwise_activation_layers(make, kink, shape, rng, tmp_path):
    layer = check_layer(make, shape, rng, expected_output_shape=shape, kink=kink, save_load_dir=tmp_path)
    assert layer.get_weights() == []


@pytest.mark.parametrize("make, fn", [
    (ReLU, lambda x: np.maximum(x, 0)),
    (Sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    (Tanh, np.tanh),
    (lambda: LeakyReLU(alpha=0.3), lambda x: np.where(x > 0, x, 0.3 * x)),
    (LeakyReLU, lambda x: np.where(x > 0, x, 0.01 * x)),     # default alpha 0.01
], ids=["relu", "sigmoid", "tanh", "leaky_relu", "leaky_relu_default"])
def test_activation_layer_values(make, fn, rng, dtype):
    x = (rng.standard_normal((9, 33)) * 4).astype(dtype)
    layer = make()
    layer.build((33,), dtype=dtype)
    np.testing.assert_allclose(layer.forward(x, training=False), fn(x.astype(np.float64)),
                               rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-7)


def test_softmax_layer(rng, tmp_path):
    layer = check_layer(Softmax, (7,), rng, expected_output_shape=(7,), save_load_dir=tmp_path)
    y = layer.forward(rng.standard_normal((4, 7)), training=False)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-12)
    with pytest.raises(ValueError):
        Softmax().build((2, 3))


def test_flatten(rng, tmp_path):
    layer = check_layer(Flatten, (2, 3, 4), rng, expected_output_shape=(24,), save_load_dir=tmp_path)
    x = rng.standard_normal((5, 2, 3, 4))
    np.testing.assert_array_equal(layer.forward(x, training=False), x.reshape(5, -1))   # NCHW order
    layer.forward(x)
    dy = rng.standard_normal((5, 24))
    np.testing.assert_array_equal(layer.backward(dy), dy.reshape(5, 2, 3, 4))


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.75])
def test_dropout_harness(rate, rng, tmp_path):
    check_layer(lambda: Dropout(rate), (5, 3), rng, expected_output_shape=(5, 3), gradcheck=False,
                save_load_dir=tmp_path)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.9])
def test_dropout_mask_forward_backward(rate, rng, dtype):
    layer = Dropout(rate)
    layer.build((33, 7), dtype=dtype)
    x = rng.standard_normal((5, 33, 7)).astype(dtype)
    for step in range(3):
        offset = layer.counter
        assert offset == step * x.size
        y = layer.forward(x, training=True)
        mask = numpy_ref.dropout_mask(x.size, rate, layer.seed, offset, dtype).reshape(x.shape)
        np.testing.assert_array_equal(y, x * mask)
        keep = mask != 0
        np.testing.assert_array_equal(mask[keep], dtype.type(1.0 / (1.0 - rate)))
        dy = rng.standard_normal(x.shape).astype(dtype)
        # with the mask fixed, the layer is linear: dL/dx = dy * mask
        np.testing.assert_array_equal(layer.backward(dy), dy * mask)
        if step == 0:
            first = keep
        else:
            assert (keep != first).any(), "successive training calls reused the same mask"


def test_dropout_inference_is_identity(rng, dtype):
    layer = Dropout(0.5)
    layer.build((10,), dtype=dtype)
    x = rng.standard_normal((4, 10)).astype(dtype)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    counter = layer.counter
    model = fnn.Sequential([Dropout(0.5)], input_shape=(10,), dtype=dtype)
    np.testing.assert_array_equal(model.predict(x), x)
    assert layer.counter == counter, "inference advanced the dropout counter"


def test_dropout_rate_zero_passes_gradient(rng):
    layer = Dropout(0.0)
    x = rng.standard_normal((3, 4)).astype(np.float32)    # the default dtype
    np.testing.assert_array_equal(layer.forward(x, training=True), x)
    dy = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(layer.backward(dy), dy)


def test_dropout_seeded_masks_reproducible(rng):
    x = np.ones((8, 64))
    masks = []
    for _ in range(2):
        fnn.seed(1234)
        layer = Dropout(0.5)
        layer.build((64,), dtype="float64")
        masks.append(layer.forward(x, training=True) != 0)
    np.testing.assert_array_equal(masks[0], masks[1])


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_rate_checked(bad):
    with pytest.raises(ValueError):
        Dropout(bad)


def test_backward_shape_checked(rng):
    layer = Dense(3)
    layer.forward(rng.standard_normal((4, 5)))
    with pytest.raises(ValueError):
        layer.backward(np.ones((4, 4)))
    with pytest.raises(ValueError):
        layer.backward(np.ones((3, 3)))


def test_dense_grads_do_not_accumulate(rng):
    """Each backward overwrites layer.grads (the optimizer sees one batch's gradient)."""
    layer = Dense(3)
    layer.build((4,), dtype="float64")
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    layer.forward(x)
    layer.backward(dy)
    first = [g.copy() for g in layer.grads]
    layer.forward(x)
    layer.backward(dy)
    for a, b in zip(first, layer.grads):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(layer.grads[0], x.T @ dy, rtol=1e-12)
    np.testing.assert_allclose(layer.grads[1], dy.sum(0), rtol=1e-12)
