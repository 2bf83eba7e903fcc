"""Training step plans (fastnn/_step_plan.py, fastnn/_plan.pxi): fit replays the captured forward,
loss and backward kernel calls of a step; the weights and the history must be those of the steps
run layer by layer, bit for bit, for every model that is planned, and models that cannot be
planned must be left to the layer-by-layer step."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import fastnn as fnn
from fastnn import _core, _step_plan
from fastnn import layers as L

N, F = 53, 6     # 53 samples at batch 8: a final partial batch of 5, planned on its own


def _mlp(out_units, out_act):
    return [L.Dense(12, activation="tanh"), L.Dropout(0.3), L.LeakyReLU(0.1), L.Dense(9, activation="relu"),
            L.Flatten(), L.Dropout(0.0), L.Dense(7, activation="sigmoid"), L.Dense(7), L.Softmax(), L.Dropout(0.5),
            L.Dense(out_units, activation=out_act)]


def _targets(loss, rng):
    if loss == "sparse_categorical_crossentropy":
        return rng.integers(0, 4, N), 4, "softmax"
    if loss == "categorical_crossentropy":
        return np.eye(4)[rng.integers(0, 4, N)], 4, "softmax"
    if loss == "binary_crossentropy":
        return rng.integers(0, 2, (N, 3)).astype(float), 3, "sigmoid"
    return rng.standard_normal((N, 2)), 2, None


def _fit(monkeypatch, planned, layers, x, y, dtype=np.float32, optimizer="adam", loss="mse", **fit_args):
    monkeypatch.setenv("FASTNN_STEP_PLANS", "1" if planned else "0")
    fnn.seed(5)
    model = fnn.Sequential(layers(), input_shape=x.shape[1:], dtype=dtype)
    model.compile(optimizer, loss, metrics=("mae",) if loss == "mse" else ("accuracy",))
    history = model.fit(x, y, verbose=0, **{"batch_size": 8, "epochs": 3, **fit_args})
    return model, history.history


def _assert_same(a, b):
    (ma, ha), (mb, hb) = a, b
    for wa, wb in zip(ma.get_weights(), mb.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert ha == hb
    # the random streams (saved with the model) moved alike
    assert [getattr(la, "counter", None) for la in ma.layers] == [getattr(lb, "counter", None) for lb in mb.layers]


def _plans(model):
    return [p for p in model._step_plans.values() if p is not None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy",
                                  "binary_crossentropy", "mse"])
def test_planned_fit_gives_the_bits_of_the_layers(monkeypatch, rng, loss, dtype):
    x = rng.standard_normal((N, F))
    y, k, act = _targets(loss, rng)
    layers = lambda: _mlp(k, act)      # noqa: E731
    planned = _fit(monkeypatch, True, layers, x, y, dtype, loss=loss)
    assert len(_plans(planned[0])) == 2         # the full batches' and the final partial batch's
    _assert_same(planned, _fit(monkeypatch, False, layers, x, y, dtype, loss=loss))


SCHEDULE = lambda: fnn.optimizers.schedules.CosineDecay(0.05, decay_steps=20)  # noqa: E731


@pytest.mark.parametrize("optimizer", [lambda: fnn.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                                       lambda: fnn.optimizers.SGD(SCHEDULE(), weight_decay=0.01),
                                       lambda: fnn.optimizers.RMSprop(centered=True, clipnorm=0.5),
                                       lambda: fnn.optimizers.RMSprop(SCHEDULE(), momentum=0.5),
                                       lambda: fnn.optimizers.AdamW(clipvalue=0.1),
                                       lambda: fnn.optimizers.Adam(SCHEDULE())])
def test_optimizers_penalties_and_weights_after_the_plan(monkeypatch, rng, optimizer):
    x = rng.standard_normal((N, F)).astype(np.float32)
    y = rng.integers(0, 3, N)
    w = rng.uniform(0.2, 2.0, N)
    layers = lambda: [L.Dense(10, activation="relu", kernel_regularizer=fnn.regularizers.L1L2(1e-3, 1e-2)),  # noqa: E731
                      L.Dense(3, activation="softmax")]
    args = dict(loss="sparse_categorical_crossentropy", sample_weight=w, class_weight={0: 1.0, 1: 2.0, 2: 0.5},
                validation_split=0.2, shuffle=False)
    planned = _fit(monkeypatch, True, layers, x, y, optimizer=optimizer(), **args)
    assert _plans(planned[0])
    _assert_same(planned, _fit(monkeypatch, False, layers, x, y, optimizer=optimizer(), **args))


def _planned_and_not(monkeypatch, seed, body):
    """body(model, planned) on the same fresh model with and without plans: the weights and
    whatever body returns must be the same."""
    runs = []
    for planned in (True, False):
        monkeypatch.setenv("FASTNN_STEP_PLANS", "1" if planned else "0")
        fnn.seed(seed)
        model = fnn.Sequential(_mlp(4, "softmax"), input_shape=(F,))
        runs.append((body(model, planned), model.get_weights()))
    (ra, wa), (rb, wb) = runs
    assert ra == rb
    for a, b in zip(wa, wb):
        np.testing.assert_array_equal(a, b)


def test_threads_and_later_fits(monkeypatch, rng):
    """A plan per thread count; a second fit, set_weights and a new compile keep the bits."""
    x = rng.standard_normal((N, F)).astype(np.float32)
    y = rng.integers(0, 4, N)

    def body(model, planned):
        model.compile("adam", "sparse_categorical_crossentropy")
        h = [model.fit(x, y, batch_size=8, epochs=1, verbose=0).history]
        fnn.set_num_threads(2)              # the conftest fixture restores the count
        h.append(model.fit(x, y, batch_size=8, epochs=2, verbose=0).history)
        fnn.set_num_threads(1)
        model.set_weights([wt * 0.5 for wt in model.get_weights()])
        h.append(model.fit(x, y, batch_size=8, epochs=1, verbose=0).history)
        model.compile(fnn.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        assert not model._step_plans
        h.append(model.fit(x, y, batch_size=16, epochs=1, verbose=0).history)
        return h

    _planned_and_not(monkeypatch, 1, body)


CNNS = {
    "conv-max": lambda: [L.Conv2D(3, 3, padding="same", activation="relu"), L.MaxPool2D(2),
                         L.Conv2D(4, (2, 3), stride=(1, 2), activation="tanh"), L.Flatten(), L.Dropout(0.2),
                         L.Dense(3, activation="softmax")],
    "conv-avg-global": lambda: [L.Conv2D(4, 3, padding=1), L.ReLU(), L.AvgPool2D(2, stride=1),
                                L.Conv2D(3, 1, activation="sigmoid"), L.GlobalMaxPooling2D(), L.Dense(3)],
    "augmentation": lambda: [L.RandomFlip("horizontal_and_vertical"), L.RandomTranslation(0.3, 0.2, fill_value=0.5),
                             L.GaussianNoise(0.1), L.Conv2D(3, 3, activation="relu"), L.GaussianNoise(0.0),
                             L.RandomFlip("vertical"), L.Flatten(), L.Dropout(0.25), L.Dense(3, activation="softmax")],
    "conv-global-avg": lambda: [L.Conv2D(3, 3, activation="relu", use_bias=False), L.GlobalAveragePooling2D(),
                                L.Dense(3, activation="softmax")],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CNNS))
def test_planned_cnn_fit_gives_the_bits_of_the_layers(monkeypatch, rng, name, dtype):
    x = rng.standard_normal((N, 2, 7, 8))
    y = rng.integers(0, 3, N)
    loss = "sparse_categorical_crossentropy" if name != "conv-avg-global" else "mse"
    if loss == "mse":
        y = rng.standard_normal((N, 3))
    planned = _fit(monkeypatch, True, CNNS[name], x, y, dtype, loss=loss, epochs=2)
    assert len(_plans(planned[0])) == 2
    _assert_same(planned, _fit(monkeypatch, False, CNNS[name], x, y, dtype, loss=loss, epochs=2))


SEQUENCES = {       # name: (layers, input shape (after N), integer input)
    "rnn-stack": (lambda: [L.SimpleRNN(6, return_sequences=True), L.Dropout(0.2), L.LSTM(5),
                           L.Dense(3, activation="softmax")], (6, 4), False),
    "gru-batchnorm": (lambda: [L.GRU(6, return_sequences=True), L.BatchNormalization(), L.ReLU(), L.Flatten(),
                               L.Dense(3, activation="softmax")], (6, 4), False),
    "dense-batchnorm": (lambda: [L.Dense(8), L.BatchNormalization(center=False), L.ReLU(), L.Dense(8),
                                 L.BatchNormalization(scale=False), L.Dense(3, activation="softmax")], (5,), False),
    "conv-batchnorm": (lambda: [L.Conv2D(3, 3, padding=1), L.BatchNormalization(), L.ReLU(), L.MaxPool2D(2),
                                L.Flatten(), L.Dense(3, activation="softmax")], (2, 6, 6), False),
    "embedding-lstm": (lambda: [L.Embedding(10, 8), L.LSTM(6), L.Dense(3, activation="softmax")], (6,), True),
    "embedding-gru-seq": (lambda: [L.Embedding(10, 8), L.GRU(4, return_sequences=True), L.Flatten(),
                                   L.Dense(3, activation="softmax")], (6,), True),
    "embedding-flatten": (lambda: [L.Embedding(10, 4), L.Flatten(), L.Dense(3, activation="softmax")], (6,), True),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_planned_normalization_recurrent_embedding_fits(monkeypatch, rng, name, dtype):
    layers, shape, integer = SEQUENCES[name]
    x = rng.integers(0, 10, (N,) + shape) if integer else rng.standard_normal((N,) + shape)
    y = rng.integers(0, 3, N)
    planned = _fit(monkeypatch, True, layers, x, y, dtype, loss="sparse_categorical_crossentropy", epochs=2)
    assert len(_plans(planned[0])) == 2
    _assert_same(planned, _fit(monkeypatch, False, layers, x, y, dtype, loss="sparse_categorical_crossentropy",
                               epochs=2))


def test_updates_are_planned_and_follow_new_state(monkeypatch, rng):
    """The optimizer's update is captured after its first step made the state, and captured
    again when the state buffers are replaced (a rebuild with the same optimizer)."""
    x = rng.standard_normal((N, F)).astype(np.float32)
    y = rng.integers(0, 4, N)

    def body(model, planned):
        opt = fnn.optimizers.SGD(0.05, momentum=0.9)
        model.compile(opt, "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        assert bool(opt._plans) == planned
        model.add(L.Dense(4, activation="softmax"))     # rebuilds: new flat buffers, new state
        return model.fit(x, y, batch_size=8, epochs=2, verbose=0).history

    _planned_and_not(monkeypatch, 2, body)


def test_a_trained_model_can_be_copied(monkeypatch, rng):
    x = rng.standard_normal((N, F)).astype(np.float32)
    y = rng.integers(0, 4, N)
    model, _ = _fit(monkeypatch, True, lambda: _mlp(4, "softmax"), x, y, loss="sparse_categorical_crossentropy")
    # (a copy's weights were arrays of their own, not views into the buffer its optimizer updates)
    twins = [copy.deepcopy(model), pickle.loads(pickle.dumps(model))]
    shallow = copy.copy(model)       # shares the layers: the model must keep training as before
    assert shallow.layers[0] is model.layers[0]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for twin in twins:
        assert not twin._step_plans and not twin.optimizer._plans
        twin.fit(x, y, batch_size=8, epochs=1, verbose=0)
        assert _plans(twin)
        for wa, wb in zip(model.get_weights(), twin.get_weights()):
            np.testing.assert_array_equal(wa, wb)


def test_user_data_is_never_written(monkeypatch, rng):
    x = rng.standard_normal((N, F)).astype(np.float32)
    y = rng.integers(0, 4, N)
    x0, y0 = x.copy(), y.copy()
    model, _ = _fit(monkeypatch, True, lambda: _mlp(4, "softmax"), x, y, loss="sparse_categorical_crossentropy",
                    shuffle=False)
    assert _plans(model)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("name", ["conv-softmax", "mixed", "probabilities"])
def test_models_that_cannot_be_planned_train_as_before(monkeypatch, rng, name):
    x = rng.standard_normal((N, 1, 4, 4) if name == "conv-softmax" else (N, 16)).astype(np.float32)
    y = rng.integers(0, 3, N)
    dtype = "mixed_bfloat16" if name == "mixed" else np.float32
    loss = fnn.losses.SparseCategoricalCrossentropy()
    layers = {"conv-softmax": lambda: [L.Conv2D(2, 3, padding=1, activation="softmax"), L.Flatten(),
                                       L.Dense(3, activation="softmax")],
              "mixed": lambda: [L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")],
              # a linear output read as probabilities: the NumPy path of the loss
              "probabilities": lambda: [L.Dense(8, activation="relu"), L.Dense(3, activation="relu")]}[name]
    planned = _fit(monkeypatch, True, layers, x, y, dtype, loss=loss, epochs=1)
    assert planned[0]._step_plans and not _plans(planned[0])
    _assert_same(planned, _fit(monkeypatch, False, layers, x, y, dtype, loss=loss, epochs=1))


class _DoubledDense(L.Dense):
    """A user's layer: fastnn's Dense plus NumPy arithmetic a capture would not record."""

    def _forward(self, x, training, logits):
        y = super()._forward(x, training, logits)
        y *= 2
        return y


class _HalfStepSGD(fnn.optimizers.SGD):
    """A user's optimizer: NumPy arithmetic around fastnn's kernel update."""

    def _step(self, be, param, grad, prefix, lr):
        grad *= 0.5
        super()._step(be, param, grad, prefix, lr)


def test_user_subclasses_are_not_planned(monkeypatch, rng):
    x = rng.standard_normal((N, F)).astype(np.float32)
    y = rng.integers(0, 3, N)
    layers = lambda: [_DoubledDense(8, activation="relu"), L.Dense(3, activation="softmax")]  # noqa: E731
    args = dict(loss="sparse_categorical_crossentropy", optimizer=fnn.optimizers.SGD(0.1))
    planned = _fit(monkeypatch, True, layers, x, y, **args)
    assert planned[0]._step_plans and not _plans(planned[0])
    _assert_same(planned, _fit(monkeypatch, False, layers, x, y, **args))
    layers = lambda: _mlp(3, "softmax")  # noqa: E731
    planned = _fit(monkeypatch, True, layers, x, y, loss="sparse_categorical_crossentropy", optimizer=_HalfStepSGD(0.1))
    assert _plans(planned[0]) and not planned[0].optimizer._plans
    _assert_same(planned, _fit(monkeypatch, False, layers, x, y, loss="sparse_categorical_crossentropy",
                               optimizer=_HalfStepSGD(0.1)))


def test_captured_losses_fill_result_slots(rng):
    z = rng.standard_normal((5, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 5)
    grad = np.empty_like(z)
    want = _core.softmax_xent(z, labels, None, grad, None, 0.2)
    plan = _core.Plan()
    _core.capture_begin(plan)
    try:
        assert np.isnan(_core.softmax_xent(z, labels, None, grad, None, 0.2))
        assert np.isnan(_core.mse(z.reshape(-1), z.reshape(-1) * 0.5))
    finally:
        _core.capture_end()
    grad[...] = 0
    assert plan.n_results == 2 and len(plan) == 2
    plan.run()
    assert plan.result(0) == want
    assert plan.result(1) == _core.mse(z.reshape(-1), z.reshape(-1) * 0.5)
    assert np.all(grad != 0)
    with pytest.raises(IndexError):
        plan.result(2)


def test_plan_inputs_are_checked(rng):
    a = np.zeros(4, dtype=np.float32)
    plan = _core.Plan()
    plan.bind_inputs(a)
    plan.load(np.ones(4, dtype=np.float32))
    np.testing.assert_array_equal(a, 1.0)
    for bad in (np.ones(5, dtype=np.float32), np.ones(4, dtype=np.float64), np.ones(4, dtype=np.int32)):
        with pytest.raises(ValueError):
            plan.load(bad)
    with pytest.raises(ValueError):
        plan.load(a, a)
    read_only = np.zeros(3, dtype=np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        plan.bind_inputs(read_only)


def test_step_plans_can_be_turned_off(monkeypatch, rng):
    monkeypatch.setenv("FASTNN_STEP_PLANS", "0")
    assert not _step_plan.enabled()
    model, _ = _fit(monkeypatch, False, lambda: _mlp(2, None), rng.standard_normal((N, F)), rng.standard_normal((N, 2)))
    assert not model._step_plans
