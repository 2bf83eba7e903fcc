"""Inference plans (fastnn/_inference.py, fastnn/_plan.pxi): predict on small batches replays the
captured kernel calls; the results must be those of the layers' own forward pass, bit for bit,
for every layer that can be captured, and must follow weight changes, thread counts and threads."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import run_concurrently

import fastnn as fnn
from fastnn import _core, _inference
from fastnn import layers as L


def _unplanned(model, x):
    """The model output through the layers' Python forward (no plan)."""
    return model._forward(np.ascontiguousarray(x, dtype=model.dtype), False, False).copy()


def _dense(act):
    return [L.Dense(7, activation="relu"), L.Dense(5, activation=act)], (6,)


MODELS = {
    **{f"dense-{a}": (lambda a=a: _dense(a)) for a in ("linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu")},
    "activations": lambda: ([L.Dense(8), L.ReLU(), L.Dense(8), L.Tanh(), L.Dense(8), L.Sigmoid(), L.Dense(8),
                             L.LeakyReLU(0.2), L.Dropout(0.5), L.Dense(3), L.Softmax()], (4,)),
    "cnn": lambda: ([L.Conv2D(4, 3, padding=1, activation="relu"), L.MaxPool2D(2),
                     L.Conv2D(6, 3, padding="same", activation="relu"), L.AvgPool2D(2), L.Flatten(),
                     L.Dense(16, activation="relu"), L.Dropout(0.2), L.Dense(3, activation="softmax")], (1, 9, 9)),
    "conv-paths": lambda: ([L.Conv2D(3, (2, 3), stride=(2, 1), padding=(1, 0), activation="tanh"),
                            L.Conv2D(5, 1, activation="sigmoid"), L.Conv2D(2, 3, padding="valid"),
                            L.Flatten(), L.Dense(2)], (2, 11, 10)),
    "rnn-seq": lambda: ([L.SimpleRNN(6, return_sequences=True), L.LSTM(5)], (4, 3)),
    "gru": lambda: ([L.GRU(6), L.Dense(2, activation="sigmoid")], (5, 3)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_plan_gives_the_bits_of_the_layers(name, batch, dtype, rng):
    layers, shape = MODELS[name]()
    model = fnn.Sequential(layers, input_shape=shape, dtype=dtype)
    x = rng.standard_normal((batch,) + shape)
    assert _inference.plan_for(model, x.astype(dtype)) is not None
    for _ in range(2):       # captured on the first call, replayed on the second
        got = model.predict(x)
        np.testing.assert_array_equal(got, _unplanned(model, x))
        x = rng.standard_normal((batch,) + shape)


def test_layers_that_cannot_be_captured_take_the_python_path(rng):
    model = fnn.Sequential([L.Conv2D(3, 3, padding=1, activation="softmax")], input_shape=(2, 5, 5))
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    assert _inference.plan_for(model, x) is None
    out = model.predict(x)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_large_batches_are_not_planned(rng):
    model = fnn.Sequential([L.Dense(512), L.Dense(2)], input_shape=(8,))
    big = _inference.PLAN_MAX_BYTES // (514 * 4) + 1
    assert _inference.plannable(model, (1, 8))
    assert not _inference.plannable(model, (big, 8))
    x = rng.standard_normal((big, 8)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), _unplanned(model, x))


def test_plan_follows_weight_changes(rng):
    # tanh, not relu: with every unit of a ReLU layer off for x, doubling the weights would leave
    # the output at zero (a seed found that)
    model = fnn.Sequential([L.Dense(6, activation="tanh"), L.Dense(3)], input_shape=(4,))
    x = rng.standard_normal((1, 4)).astype(np.float32)
    before = model.predict(x)
    plan = _inference.plan_for(model, x)
    # in place (set_weights, training): the same plan reads the new values
    model.set_weights([w * 2 for w in model.get_weights()])
    assert _inference.plan_for(model, x) is plan
    after = model.predict(x)
    np.testing.assert_array_equal(after, _unplanned(model, x))
    assert not np.array_equal(after, before)
    model.compile("sgd", "mse")
    model.fit(x, np.ones((1, 3), np.float32), epochs=1, verbose=0)
    np.testing.assert_array_equal(model.predict(x), _unplanned(model, x))
    # replaced arrays: the plan is rebuilt
    layer = model.layers[1]
    layer.params = [np.ones_like(p) for p in layer.params]
    assert _inference.plan_for(model, x) is not plan
    np.testing.assert_array_equal(model.predict(x), _unplanned(model, x))


def test_plans_per_thread_count_and_fresh_outputs(rng):
    model = fnn.Sequential([L.Conv2D(4, 3, padding=1, activation="relu"), L.Flatten(), L.Dense(3)],
                           input_shape=(2, 6, 6))
    x1, x2 = (rng.standard_normal((1, 2, 6, 6)).astype(np.float32) for _ in range(2))
    plans = set()
    for threads in (1, 2, 1):
        fnn.set_num_threads(threads)
        y1 = model.predict(x1)
        y2 = model.predict(x2)
        plans.add(id(_inference.plan_for(model, x1)))
        np.testing.assert_array_equal(y1, _unplanned(model, x1))   # not overwritten by the x2 call
        np.testing.assert_array_equal(y2, _unplanned(model, x2))
    assert len(plans) == 2


def test_plans_are_per_thread(rng):
    fnn.set_num_threads(1)
    model = fnn.Sequential([L.Conv2D(4, 3, padding=1, activation="relu"), L.MaxPool2D(2), L.Flatten(),
                            L.Dense(3, activation="softmax")], input_shape=(1, 8, 8))
    xs = [rng.standard_normal((1, 1, 8, 8)).astype(np.float32) for _ in range(8)]
    expected = [_unplanned(model, x) for x in xs]
    plans = {}

    def work(i):
        for r in range(200):
            k = (i + r) % len(xs)
            np.testing.assert_array_equal(model.predict(xs[k]), expected[k])
        plans[i] = _inference.plan_for(model, xs[0])

    run_concurrently(6, work)
    assert len({id(p) for p in plans.values()}) == 6


def test_capture_runs_nothing_and_refuses_training_kernels():
    x = np.ones((2, 3), np.float32)
    w = np.ones((3, 4), np.float32)
    out = np.zeros((2, 4), np.float32)
    plan = _core.Plan()
    _core.capture_begin(plan)
    try:
        _core.gemm(x, w, out)
        with pytest.raises(RuntimeError, match="penalty cannot be captured"):
            _core.penalty(out.reshape(-1), np.zeros(8, np.float32), 0.1, 0.1)
        with pytest.raises(RuntimeError, match="already capturing"):
            _core.capture_begin(_core.Plan())
        with pytest.raises(ValueError, match="inner dimensions"):     # still checked at capture
            _core.gemm(w, w, out)
    finally:
        _core.capture_end()
    assert len(plan) == 1 and not out.any()
    plan.run()
    np.testing.assert_array_equal(out, np.full((2, 4), 3, np.float32))
    _core.penalty(out.reshape(-1), np.zeros(8, np.float32), 0.1, 0.1)     # runs once capture has ended


def test_plan_call_checks_its_input():
    x = np.ones((1, 3), np.float32)
    w = np.full((3, 2), 2, np.float32)
    out = np.zeros((1, 2), np.float32)
    plan = _core.Plan()
    with pytest.raises(RuntimeError, match="before bind"):
        plan.call(x)
    _core.capture_begin(plan)
    try:
        _core.gemm(x, w, out)
    finally:
        _core.capture_end()
    plan.bind(x, out)
    np.testing.assert_array_equal(plan.call(np.array([[1, 2, 3]], np.float32)), [[12, 12]])
    for bad in (np.ones((1, 4), np.float32), np.ones((1, 3), np.float64), np.ones((1, 3), np.int32)):
        with pytest.raises(ValueError, match="expected an input of 12 bytes"):
            plan.call(bad)
    with pytest.raises(ValueError):
        plan.call(np.ones((3, 2), np.float32)[:, :1])     # not contiguous
    with pytest.raises(ValueError, match="writable"):
        ro = np.ones((1, 3), np.float32)
        ro.flags.writeable = False
        plan.bind(ro, out)
