"""Weight regularizers: penalty in the reported training loss and in the weight gradient (one C pass),
against a hand-written loss, for Dense, Conv2D and the recurrent layers."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn as fnn
from fastnn import regularizers
from fastnn.backend import cpu
from fastnn.backend import numpy_ref as ref
from fastnn.layers import GRU, LSTM, Conv2D, Dense, Flatten, SimpleRNN


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 17, 70_001])
def test_penalty_kernel_matches_reference_and_threads(n, dtype, rng):
    w = rng.standard_normal(n).astype(dtype)
    w[: n // 10] = 0                                   # sign(0) = 0
    g0 = rng.standard_normal(n).astype(dtype)
    out = {}
    for name, be, threads in (("ref", ref, 1), ("c1", cpu, 1), ("c2", cpu, 2)):
        fnn.set_num_threads(threads)
        g = g0.copy()
        out[name] = (float(be.penalty(w, g, 0.01, 0.003)), g)
    assert out["c1"][0] == out["c2"][0]
    np.testing.assert_array_equal(out["c1"][1], out["c2"][1])
    # float32: the strengths are rounded to float32 in the kernel
    assert out["c1"][0] == pytest.approx(out["ref"][0], rel=1e-6 if dtype == np.float32 else 1e-12, abs=1e-300)
    np.testing.assert_allclose(out["c1"][1], out["ref"][1], rtol=1e-6 if dtype == np.float32 else 1e-14)


def _penalty(model):
    total = 0.0
    for layer in model.layers:
        for j, reg in layer.regularized:
            w = layer.params[j].astype(np.float64)
            total += reg.l1 * np.abs(w).sum() + reg.l2 * (w ** 2).sum()
    return total


@pytest.mark.parametrize("make, shape", [
    (lambda r: [Dense(5, kernel_regularizer=r), Dense(3, activation="softmax", kernel_regularizer="l2")], (4,)),
    (lambda r: [Conv2D(3, 3, padding=1, kernel_regularizer=r), Flatten(), Dense(3, activation="softmax")], (2, 5, 5)),
    (lambda r: [SimpleRNN(4, kernel_regularizer=r, recurrent_regularizer=regularizers.l1(0.02)),
                Dense(3, activation="softmax")], (3, 2)),
    (lambda r: [LSTM(4, recurrent_regularizer=r), Dense(3, activation="softmax")], (3, 2)),
    (lambda r: [GRU(4, kernel_regularizer=r), Dense(3, activation="softmax")], (3, 2)),
])
def test_loss_and_gradient_against_a_hand_written_loss(make, shape, rng, float64_default):
    reg = regularizers.l1_l2(l1=0.01, l2=0.02)
    fnn.seed(int(rng.integers(1 << 30)))
    model = fnn.Sequential(make(reg), input_shape=shape)
    model.compile(optimizer=fnn.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    x, y = rng.standard_normal((6,) + shape), rng.integers(0, 3, 6)
    data_loss = model.evaluate(x, y)["loss"]          # evaluate reports the data loss alone
    want = data_loss + _penalty(model)
    w0 = model.get_weights()
    # the step's gradient: the data gradient (a model without penalties) plus the penalty gradient
    def unregularized(layer):
        cfg = {k: v for k, v in layer.get_config().items() if not k.endswith("regularizer") and k != "name"}
        return type(layer)(**cfg)
    plain = fnn.Sequential([unregularized(layer) for layer in model.layers], input_shape=shape)
    plain.compile(optimizer=fnn.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    plain.set_weights(w0)
    assert model.train_on_batch(x, y) == pytest.approx(want, rel=1e-12)
    plain.train_on_batch(x, y)
    k = 0
    for layer in model.layers:
        regs = dict(layer.regularized)
        for j in range(len(layer.params)):
            w = w0[k]
            expected = plain.get_weights()[k]
            if j in regs:
                expected = expected - 0.1 * (regs[j].l1 * np.sign(w) + 2 * regs[j].l2 * w)
            np.testing.assert_allclose(model.get_weights()[k], expected, rtol=1e-12, atol=1e-14)
            k += 1


def test_configs_round_trip_and_bad_values(rng, tmp_path):
    model = fnn.Sequential([LSTM(3, kernel_regularizer="l1", recurrent_regularizer=(0.0, 0.5)),
                            Dense(4, kernel_regularizer=regularizers.l2(1e-3))], input_shape=(2, 5))
    model.compile(loss="mse")
    model.save(tmp_path / "m.npz")
    back = fnn.load_model(tmp_path / "m.npz")
    assert back.layers[1].kernel_regularizer == regularizers.L1L2(0.0, 1e-3)
    assert back.layers[0].regularized == ((0, regularizers.L1L2(0.01, 0.0)), (1, regularizers.L1L2(0.0, 0.5)))
    for bad in (lambda: regularizers.l2(-0.1), lambda: regularizers.l1(float("nan")), lambda: regularizers.l2("x"),
                lambda: Dense(3, kernel_regularizer="l3"), lambda: Conv2D(3, 3, kernel_regularizer=0.1),
                lambda: GRU(3, recurrent_regularizer=(1, 2, 3)), lambda: regularizers.l1_l2(True, 0.1)):
        with pytest.raises((ValueError, TypeError)):
            bad()
