"""Sequential end to end: fit/evaluate/predict, History and EarlyStopping, dropout modes, seeds and
thread counts, dtypes, weights, losses, verbosity, shuffling, optimizer state and planned buffers."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import fastnn as fnn
from fastnn import layers as L
from fastnn import losses, optimizers
from fastnn.callbacks import Callback, EarlyStopping, History


# ---- helpers ------------------------------------------------------------------------------------
@pytest.fixture
def threads_restored():
    saved = fnn.get_num_threads()
    yield
    fnn.set_num_threads(saved)


def blobs(rng, n=120, d=4, k=3, sep=4.0, dtype=np.float32):
    """k well separated Gaussian blobs (centres sep * e_i): linearly separable for any seed."""
    y = rng.integers(0, k, n)
    centres = sep * np.eye(k, d)
    x = centres[y] + rng.standard_normal((n, d))
    return x.astype(dtype), y


def mlp(d=4, k=3, hidden=16, dropout=0.0, dtype=None, out_act="softmax"):
    layers = [L.Dense(hidden, activation="relu")]
    if dropout:
        layers.append(L.Dropout(dropout))
    layers.append(L.Dense(k, activation=out_act))
    return fnn.Sequential(layers, input_shape=(d,), dtype=dtype)


def clone(model, optimizer, loss="sparse_categorical_crossentropy", metrics=("accuracy",)):
    """A model of the same architecture and weights (fresh optimizer)."""
    layers = [type(layer)(**{k: v for k, v in layer.get_config().items() if k != "name"})
              for layer in model.layers]
    twin = fnn.Sequential(layers, input_shape=model.input_shape, dtype=model.dtype)
    twin.set_weights(model.get_weights())
    twin.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return twin


def assert_weights_equal(a, b):
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.dtype == v.dtype and u.shape == v.shape, i
        np.testing.assert_array_equal(u, v, err_msg=f"weight {i}")


def weights_equal(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def sparse_xent(p, y):
    return float(-np.log(p[np.arange(len(y)), y]).mean())


# ---- fit and History ----------------------------------------------------------------------------
def test_fit_history_with_validation_split(rng):
    x, y = blobs(rng, n=80)
    model = mlp()
    model.compile("adam")
    hist = model.fit(x, y, batch_size=16, epochs=3, validation_split=0.25, verbose=0)
    assert isinstance(hist, History)
    assert model.history is hist
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for key, values in hist.history.items():
        assert len(values) == 3, key
        assert all(isinstance(v, float) and np.isfinite(v) for v in values), key
    assert hist.epoch == [0, 1, 2]
    assert all(0.0 <= a <= 1.0 for a in hist.history["accuracy"] + hist.history["val_accuracy"])
    # validation_split holds out the last 25% (20 samples), evaluated with the final weights
    last = model.evaluate(x[-20:], y[-20:])
    assert hist.history["val_loss"][-1] == pytest.approx(last["loss"], rel=1e-6)
    assert hist.history["val_accuracy"][-1] == pytest.approx(last["accuracy"])


def test_fit_history_with_validation_data(rng):
    x, y = blobs(rng, n=60)
    xv, yv = blobs(rng, n=30)
    model = mlp()
    model.compile("sgd")
    hist = model.fit(x, y, batch_size=8, epochs=4, validation_data=(xv, yv), verbose=0)
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 4 for v in hist.history.values())
    final = model.evaluate(xv, yv)
    assert hist.history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-6)
    assert hist.history["val_accuracy"][-1] == pytest.approx(final["accuracy"])


def test_fit_history_without_validation(rng):
    x, y = blobs(rng, n=40)
    model = mlp()
    model.compile("sgd")
    hist = model.fit(x, y, epochs=2, verbose=0)
    assert set(hist.history) == {"loss", "accuracy"}
    assert all(len(v) == 2 for v in hist.history.values())


def test_epochs_zero_trains_nothing(rng):
    x, y = blobs(rng, n=40)
    model = mlp(dropout=0.5)
    model.compile("adam")
    before = model.get_weights()
    hist = model.fit(x, y, epochs=0, validation_split=0.2, verbose=1)
    assert_weights_equal(model.get_weights(), before)
    assert hist.epoch == []
    assert all(v == [] for v in hist.history.values())
    assert hist.history.get("loss", []) == []
    assert model.optimizer.iterations == 0
    assert model.layers[1].counter == 0          # no dropout mask drawn


def test_fit_evaluate_train_on_batch_before_compile_raise_runtime_error(rng):
    x, y = blobs(rng, n=10)
    model = mlp()
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y, verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        model.evaluate(x, y)
    with pytest.raises(RuntimeError, match="compile"):
        model.train_on_batch(x, y)
    model.predict(x)                               # predict needs no compile


def test_learns_a_separable_problem(rng):
    x, y = blobs(rng, n=200, d=4, k=3)
    model = fnn.Sequential([L.Dense(16, activation="relu"), L.Dense(3, activation="softmax")])
    model.compile(optimizers.Adam(learning_rate=0.02))
    hist = model.fit(x, y, batch_size=16, epochs=15, verbose=0)
    assert model.built and model.input_shape == (4,)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert hist.history["accuracy"][-1] > 0.9
    xt, yt = blobs(rng, n=200, d=4, k=3)
    assert model.evaluate(xt, yt)["accuracy"] > 0.9
    assert np.mean(model.predict(xt).argmax(axis=1) == yt) > 0.9


# ---- EarlyStopping ------------------------------------------------------------------------------
class Script(Callback):
    """Writes a scripted value of ``key`` into the epoch logs (so a later EarlyStopping sees it)
    and records the model weights at the end of every epoch."""

    def __init__(self, values, key="score"):
        self.values, self.key = list(values), key
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights[epoch] = self.model.get_weights()


def run_scripted(rng, values, key="score", epochs=None, **es_kwargs):
    x, y = blobs(rng, n=32)
    model = mlp()
    model.compile(optimizers.SGD(learning_rate=0.05))
    script = Script(values, key)
    es = EarlyStopping(monitor=key, **es_kwargs)
    hist = model.fit(x, y, batch_size=8, epochs=epochs or len(values), verbose=0, callbacks=[script, es])
    return model, hist, script, es


@pytest.mark.parametrize("values, patience, stop", [
    ([3.0, 2.0, 2.5, 1.0, 0.5], 0, 2),               # first non-improving epoch stops
    ([3.0, 3.0, 1.0], 0, 1),                         # equal is not an improvement
    ([3.0, 2.0, 2.5, 2.1, 1.0, 0.5], 2, 3),          # two epochs without improvement
    ([3.0, 2.0, 2.5, 1.5, 1.6, 1.7, 1.8, 0.1], 2, 5),  # an improvement resets the count
    ([3.0, 2.9, 2.8, 2.7], 1, None),                 # always improving: runs every epoch
    ([1.0, 2.0, 3.0, 4.0, 5.0, 0.1], 4, 4),
])
def test_early_stopping_patience(rng, values, patience, stop):
    _, hist, script, es = run_scripted(rng, values, patience=patience)
    ran = len(values) if stop is None else stop + 1
    assert len(hist.history["loss"]) == ran
    assert sorted(script.weights) == list(range(ran))
    assert es.stopped_epoch == stop


def test_early_stopping_maximises_accuracy_like_monitors(rng):
    _, hist, _, es = run_scripted(rng, [0.5, 0.6, 0.55, 0.9], key="val_accuracy_scripted", patience=0)
    assert es.mode == "max"
    assert len(hist.history["loss"]) == 3 and es.stopped_epoch == 2


@pytest.mark.parametrize("restore", [True, False])
def test_early_stopping_restore_best_weights(rng, restore):
    values = [3.0, 1.0, 2.0, 2.5, 2.7, 0.1]
    model, hist, script, es = run_scripted(rng, values, patience=3, restore_best_weights=restore)
    assert es.stopped_epoch == 4 and len(hist.history["loss"]) == 5
    assert not weights_equal(script.weights[1], script.weights[4])   # training moved the weights
    expected = script.weights[1] if restore else script.weights[4]
    assert_weights_equal(model.get_weights(), expected)


def test_early_stopping_on_real_val_loss_follows_patience(rng):
    """Whatever the val_loss sequence, training stops exactly where the patience rule says."""
    x, y = blobs(rng, n=64, sep=1.0)
    model = mlp(hidden=8)
    model.compile(optimizers.SGD(learning_rate=0.5, momentum=0.9))
    es = EarlyStopping(patience=1)
    epochs = 20
    hist = model.fit(x, y, batch_size=8, epochs=epochs, validation_split=0.25, verbose=0, callbacks=[es])
    vals = hist.history["val_loss"]
    best, wait, expected = np.inf, 0, epochs
    for i, v in enumerate(vals):
        if v < best:
            best, wait = v, 0
        else:
            wait += 1
            if wait >= 1:
                expected = i + 1
                break
    assert len(vals) == expected


def test_early_stopping_warns_for_a_missing_monitor(rng):
    x, y = blobs(rng, n=16)
    model = mlp()
    model.compile("sgd")
    with pytest.warns(UserWarning, match="val_loss"):
        hist = model.fit(x, y, epochs=2, verbose=0, callbacks=[EarlyStopping()])
    assert len(hist.history["loss"]) == 2


# ---- Dropout modes ------------------------------------------------------------------------------
def manual_forward(model, x):
    out = np.asarray(x, dtype=model.dtype)
    for layer in model.layers:
        out = layer.forward(out, training=False)
    return out


def test_dropout_off_in_predict_and_evaluate(rng):
    x, y = blobs(rng, n=50, d=6, k=3)
    model = fnn.Sequential([L.Dense(32, activation="relu"), L.Dropout(0.5), L.Dense(16, activation="tanh"),
                            L.Dropout(0.3), L.Dense(3, activation="softmax")],
                           input_shape=(6,), dtype="float64")
    model.compile("adam")
    model.fit(x, y, epochs=1, verbose=0)
    p1 = model.predict(x)
    p2 = model.predict(x)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(p1, manual_forward(model, x))
    np.testing.assert_array_equal(model.predict(x, batch_size=7), p1)
    logs = model.evaluate(x, y, batch_size=9)
    assert logs["loss"] == pytest.approx(sparse_xent(p1, y), rel=1e-10)
    assert logs["accuracy"] == pytest.approx(np.mean(p1.argmax(axis=1) == y))
    assert model.evaluate(x, y) == pytest.approx(logs)


def test_dropout_on_in_training(rng):
    layer = L.Dropout(0.4)
    x = rng.uniform(1.0, 2.0, size=(100, 100)).astype(np.float32)
    y = layer.forward(x, training=True)
    dropped = np.mean(y == 0)
    assert 0.35 < dropped < 0.45
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.6, rtol=1e-6)
    y2 = layer.forward(x, training=True)
    assert not np.array_equal(y, y2)                      # a fresh mask each training call
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_dropout_changes_the_training_loss_only(rng):
    x, y = blobs(rng, n=32, d=6)
    for rate, differs in ((0.0, False), (0.7, True)):
        model = fnn.Sequential([L.Dense(32, activation="relu"), L.Dropout(rate),
                                L.Dense(3, activation="softmax")], input_shape=(6,), dtype="float64")
        model.compile("sgd")
        eval_loss = model.evaluate(x, y)["loss"]
        train_loss = model.train_on_batch(x, y)          # the loss before the step, under dropout
        if differs:
            assert abs(train_loss - eval_loss) > 1e-9
        else:
            assert train_loss == pytest.approx(eval_loss, rel=1e-12)


# ---- seeds and threads --------------------------------------------------------------------------
def seeded_run(s, x, y, dropout=0.3, threads=None, shuffle=True):
    if threads is not None:
        fnn.set_num_threads(threads)
    fnn.seed(s)
    model = fnn.Sequential([L.Dense(128, activation="relu"), L.Dropout(dropout),
                            L.Dense(64, activation="tanh"), L.Dense(3, activation="softmax")],
                           input_shape=(x.shape[1],))
    init = model.get_weights()
    model.compile(optimizers.Adam(learning_rate=0.01))
    hist = model.fit(x, y, batch_size=128, epochs=2, shuffle=shuffle, verbose=0)
    return init, model.get_weights(), hist.history["loss"], model


def test_same_seed_gives_bit_identical_training(rng):
    x, y = blobs(rng, n=300, d=64)
    s = int(rng.integers(0, 2**31))
    init1, w1, loss1, m1 = seeded_run(s, x, y)
    init2, w2, loss2, m2 = seeded_run(s, x, y)
    assert_weights_equal(init1, init2)
    assert_weights_equal(w1, w2)
    assert loss1 == loss2
    assert m1.layers[1].seed == m2.layers[1].seed
    np.testing.assert_array_equal(m1.predict(x), m2.predict(x))
    init3, w3, _, m3 = seeded_run(s + 1, x, y)
    assert not weights_equal(init1, init3)
    assert not weights_equal(w1, w3)
    assert m3.layers[1].seed != m1.layers[1].seed


def test_seed_drives_the_shuffle(rng):
    x, y = blobs(rng, n=64)
    base = mlp()
    runs = []
    for s in (5, 5, 6):
        model = clone(base, optimizers.SGD(learning_rate=0.1))
        fnn.seed(s)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        runs.append(model.get_weights())
    assert_weights_equal(runs[0], runs[1])
    assert not weights_equal(runs[0], runs[2])


def test_thread_count_does_not_change_results(rng, threads_restored):
    # sizes above the GEMM's threading threshold, so two threads really split the work
    x, y = blobs(rng, n=256, d=64)
    s = int(rng.integers(0, 2**31))
    _, w1, loss1, m1 = seeded_run(s, x, y, threads=1)
    p1 = m1.predict(x)
    _, w2, loss2, m2 = seeded_run(s, x, y, threads=2)
    assert fnn.get_num_threads() == 2
    assert_weights_equal(w1, w2)
    assert loss1 == loss2
    np.testing.assert_array_equal(m2.predict(x), p1)


# ---- dtypes -------------------------------------------------------------------------------------
def all_arrays(model):
    """Every float array the model keeps: params, grads, planned buffers, caches, optimizer slots."""
    arrays = {}
    for layer in model.layers:
        for i, p in enumerate(layer.params):
            arrays[f"{layer.name}.params[{i}]"] = p
        for i, g in enumerate(layer.grads):
            arrays[f"{layer.name}.grads[{i}]"] = g
        for key, buf in layer._bufs.items():
            arrays[f"{layer.name}._bufs[{key}]"] = buf
        if layer._cache is not None:
            cx, cy, _ = layer._cache
            arrays[f"{layer.name} cached x"] = cx
            arrays[f"{layer.name} cached y"] = cy
    for key, buf in model.optimizer.state.items():
        arrays[f"optimizer {key}"] = buf
    for key, buf in model._grad_bufs.items():
        arrays[f"loss grad {key}"] = buf
    return arrays


@pytest.mark.parametrize("dtype, x_dtype", [("float64", np.int64), ("float64", np.float32),
                                            ("float32", np.float64), ("float32", np.int32)])
def test_model_dtype_everywhere(rng, dtype, x_dtype):
    want = np.dtype(dtype)
    x = rng.integers(-3, 4, size=(40, 5)).astype(x_dtype)
    y = rng.integers(0, 3, 40)
    model = fnn.Sequential([L.Dense(8, activation="relu"), L.Dropout(0.2), L.LeakyReLU(0.1),
                            L.Dense(6, activation="tanh"), L.Dense(3), L.Softmax()], dtype=dtype)
    model.compile(optimizers.Adam())
    hist = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    loss = model.train_on_batch(x[:10], y[:10])
    assert isinstance(loss, float)
    assert all(isinstance(v, float) for v in hist.history["loss"])
    arrays = all_arrays(model)
    assert len(arrays) > 20
    bad = {k: a.dtype for k, a in arrays.items() if a.dtype != want}
    assert not bad, f"arrays not {want}: {bad}"
    assert model._flat_params.dtype == want and model._flat_grads.dtype == want
    assert all(layer.dtype == want for layer in model.layers)
    assert all(w.dtype == want for w in model.get_weights())
    assert model.predict(x).dtype == want
    assert model.predict(x.astype(np.float64)).dtype == want
    assert model.predict(x.astype(np.float32)).dtype == want


def test_mse_targets_of_another_dtype_do_not_creep(rng):
    x = rng.standard_normal((32, 3))                    # float64 data into a float32 model
    y = rng.standard_normal((32, 2))
    model = fnn.Sequential([L.Dense(4, activation="tanh"), L.Dense(2)], input_shape=(3,))
    model.compile("sgd", loss="mse", metrics=("mae",))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    bad = {k: a.dtype for k, a in all_arrays(model).items() if a.dtype != np.float32}
    assert not bad


# ---- structure ----------------------------------------------------------------------------------
def test_input_shape_builds_immediately():
    model = fnn.Sequential([L.Dense(4, activation="relu"), L.Dense(3)], input_shape=(5,))
    assert model.built and all(layer.built for layer in model.layers)
    assert model.input_shape == (5,) and model.output_shape == (3,)
    assert model.count_params() == 5 * 4 + 4 + 4 * 3 + 3
    assert [w.shape for w in model.get_weights()] == [(5, 4), (4,), (4, 3), (3,)]
    unbuilt = fnn.Sequential([L.Dense(4)])
    assert not unbuilt.built and unbuilt.get_weights() == []


def test_add_after_build_keeps_weights(rng):
    model = fnn.Sequential([L.Dense(4, activation="relu")], input_shape=(5,))
    w0 = model.get_weights()
    model.add(L.Dense(2, activation="softmax"))
    assert model.built and model.output_shape == (2,)
    assert model.layers[1].built and model.layers[1].input_shape == (4,)
    assert_weights_equal(model.get_weights()[:2], w0)
    x = rng.standard_normal((7, 5))
    p = model.predict(x)
    assert p.shape == (7, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    model.compile("adam")
    model.fit(x, rng.integers(0, 2, 7), verbose=0)    # the rebuilt model trains
    assert not weights_equal(model.get_weights()[:2], w0)


def test_add_to_a_model_that_was_trained_keeps_training(rng):
    x, y = blobs(rng, n=40)
    model = fnn.Sequential([L.Dense(8, activation="relu")], input_shape=(4,))
    model.add(L.Dense(3, activation="softmax"))
    model.compile("adam")
    model.fit(x, y, epochs=1, verbose=0)
    model.add(L.Dense(3, activation="softmax"))
    model.fit(x, y, epochs=1, verbose=0)
    assert model.predict(x).shape == (40, 3)


def test_summary(capsys):
    model = fnn.Sequential([L.Dense(4, activation="relu", name="hidden_layer"), L.Dropout(0.1, name="drop"),
                            L.Dense(3, name="logits")], input_shape=(5,), name="my_model")
    text = model.summary()
    assert isinstance(text, str)
    for word in ("my_model", "hidden_layer", "drop", "logits", "Dense", "Dropout", "Total params: 39",
                 "24", "15"):
        assert word in text, word
    assert "(None, 4)" in text and "(None, 3)" in text
    assert text in capsys.readouterr().out
    big = fnn.Sequential([L.Dense(1000)], input_shape=(999,))
    assert "1,000,000" in big.summary() or "1000000" in big.summary()


# ---- weights ------------------------------------------------------------------------------------
def test_get_set_weights_round_trip(rng):
    x, y = blobs(rng, n=40)
    model = mlp(dropout=0.2)
    model.compile("adam")
    w0 = model.get_weights()
    p0 = model.predict(x)
    w0[0][...] = 123.0                                   # get_weights returns copies
    assert not np.array_equal(model.get_weights()[0], w0[0])
    w0 = model.get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    assert not weights_equal(model.get_weights(), w0)
    model.set_weights(w0)
    assert_weights_equal(model.get_weights(), w0)
    np.testing.assert_array_equal(model.predict(x), p0)
    src = [rng.standard_normal(w.shape) for w in w0]     # float64 in, converted and copied
    model.set_weights(src)
    got = model.get_weights()
    assert all(g.dtype == np.float32 for g in got)
    for g, s in zip(got, src):
        np.testing.assert_array_equal(g, s.astype(np.float32))
    src[0][...] = 0.0
    assert not np.array_equal(model.get_weights()[0], src[0])


def test_set_weights_then_train_updates_the_set_values(rng):
    x, y = blobs(rng, n=24)
    model = mlp()
    model.compile(optimizers.SGD(learning_rate=0.1))
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.train_on_batch(x, y)
    w = model.get_weights()
    # zero hidden weights: only the output bias gets a gradient
    assert not np.any(w[0]) and not np.any(w[1]) and not np.any(w[2])
    assert np.any(w[3])


def test_train_on_batch(rng):
    x, y = blobs(rng, n=32)
    model = mlp(dtype="float64")
    model.compile(optimizers.SGD(learning_rate=0.1))
    before = model.get_weights()
    expected = model.evaluate(x, y)["loss"]
    loss = model.train_on_batch(x, y)
    assert type(loss) is float
    assert loss == pytest.approx(expected, rel=1e-12)
    assert model.optimizer.iterations == 1
    after = model.get_weights()
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))
    assert model.evaluate(x, y)["loss"] < loss


# ---- evaluate and the losses --------------------------------------------------------------------
def test_evaluate_matches_predict(rng):
    x, y = blobs(rng, n=53)
    model = mlp(dtype="float64")
    model.compile("adam")
    model.fit(x, y, epochs=2, verbose=0)
    p = model.predict(x)
    for bs in (1, 7, 53, 256):
        logs = model.evaluate(x, y, batch_size=bs)
        assert set(logs) == {"loss", "accuracy"}
        assert logs["loss"] == pytest.approx(sparse_xent(p, y), rel=1e-10)
        assert logs["accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == y), abs=1e-12)


def bce(p, t):
    return float(-(t * np.log(p) + (1 - t) * np.log1p(-p)).mean())


@pytest.mark.parametrize("label_shape", ["(N,)", "(N,1)"])
def test_binary_crossentropy_trains(rng, label_shape):
    x = rng.standard_normal((160, 3))
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype(np.float64)
    if label_shape == "(N,1)":
        y = y[:, None]
    model = fnn.Sequential([L.Dense(8, activation="tanh"), L.Dense(1, activation="sigmoid")],
                           input_shape=(3,), dtype="float64")
    model.compile(optimizers.Adam(learning_rate=0.05), loss="binary_crossentropy")
    hist = model.fit(x, y, batch_size=16, epochs=20, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert hist.history["accuracy"][-1] > 0.9
    p = model.predict(x)
    assert p.shape == (160, 1) and np.all((p > 0) & (p < 1))
    logs = model.evaluate(x, y)
    t = y.reshape(-1, 1)
    assert logs["loss"] == pytest.approx(bce(p, t), rel=1e-8)
    assert logs["accuracy"] == pytest.approx(np.mean((p > 0.5) == (t > 0.5)))
    assert logs["accuracy"] > 0.9


def test_categorical_crossentropy_trains(rng):
    x, y = blobs(rng, n=120)
    onehot = np.eye(3)[y]
    model = mlp(dtype="float64")
    model.compile(optimizers.Adam(learning_rate=0.02), loss="categorical_crossentropy")
    hist = model.fit(x, onehot, batch_size=16, epochs=15, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    logs = model.evaluate(x, onehot)
    assert logs["accuracy"] > 0.9
    p = model.predict(x)
    assert logs["loss"] == pytest.approx(float(-(onehot * np.log(p)).sum(axis=1).mean()), rel=1e-8)


def test_mse_regression_trains_with_mae(rng):
    x = rng.standard_normal((128, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    model = fnn.Sequential([L.Dense(1)], input_shape=(3,), dtype="float64")
    model.compile(optimizers.SGD(learning_rate=0.1), loss="mse", metrics=("mae",))
    hist = model.fit(x, y, batch_size=16, epochs=30, validation_split=0.25, verbose=0)
    assert set(hist.history) == {"loss", "mae", "val_loss", "val_mae"}
    assert hist.history["loss"][-1] < 1e-3 < hist.history["loss"][0]
    p = model.predict(x)
    logs = model.evaluate(x, y, batch_size=10)
    assert logs["loss"] == pytest.approx(float(np.mean((p - y) ** 2)), rel=1e-8)
    assert logs["mae"] == pytest.approx(float(np.mean(np.abs(p - y))), rel=1e-8)
    w, b = model.get_weights()
    np.testing.assert_allclose(w[:, 0], [1.0, -2.0, 0.5], atol=0.05)
    np.testing.assert_allclose(b, [0.3], atol=0.05)


def test_mse_accepts_vector_targets_for_one_output(rng):
    x = rng.standard_normal((50, 2))
    y = x[:, 0] * 2.0
    model = fnn.Sequential([L.Dense(1)], input_shape=(2,), dtype="float64")
    model.compile(optimizers.SGD(learning_rate=0.1), loss="mse", metrics=("mae", "mse"))
    model.fit(x, y, batch_size=10, epochs=20, verbose=0)
    logs = model.evaluate(x, y)
    assert logs["loss"] == pytest.approx(logs["mse"], rel=1e-10)
    assert logs["loss"] < 1e-2


def test_sparse_from_logits_with_a_linear_last_layer(rng):
    x, y = blobs(rng, n=120)
    model = fnn.Sequential([L.Dense(16, activation="relu"), L.Dense(3)], input_shape=(4,), dtype="float64")
    model.compile(optimizers.Adam(learning_rate=0.02),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = model.fit(x, y, batch_size=16, epochs=15, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    z = model.predict(x)                                   # logits, not probabilities
    assert not np.allclose(z.sum(axis=1), 1.0)
    zmax = z.max(axis=1, keepdims=True)
    logp = z - zmax - np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
    logs = model.evaluate(x, y)
    assert logs["loss"] == pytest.approx(float(-logp[np.arange(len(y)), y].mean()), rel=1e-8)
    assert logs["accuracy"] == pytest.approx(np.mean(z.argmax(axis=1) == y))
    assert logs["accuracy"] > 0.9


def test_binary_from_logits_with_a_linear_last_layer(rng):
    x = rng.standard_normal((120, 2))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float64)
    model = fnn.Sequential([L.Dense(1)], input_shape=(2,), dtype="float64")
    model.compile(optimizers.Adam(learning_rate=0.05), loss=losses.BinaryCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=20, verbose=0)
    z = model.predict(x)[:, 0]
    logs = model.evaluate(x, y)
    expected = float(np.mean(np.logaddexp(0.0, z) - y * z))
    assert logs["loss"] == pytest.approx(expected, rel=1e-8)
    assert logs["accuracy"] == pytest.approx(np.mean((z > 0) == (y > 0.5)))
    assert logs["accuracy"] > 0.9


# ---- verbosity ----------------------------------------------------------------------------------
def test_verbose_one_prints_progress(rng, capsys):
    x, y = blobs(rng, n=40)
    model = mlp()
    model.compile("sgd")
    capsys.readouterr()
    model.fit(x, y, batch_size=8, epochs=2, verbose=1, validation_split=0.2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "loss" in out and "accuracy" in out and "val_loss" in out and "samples/s" in out
    assert "32/32" in out


def test_verbose_zero_prints_nothing(rng, capsys):
    x, y = blobs(rng, n=40)
    model = mlp()
    model.compile("sgd")
    capsys.readouterr()
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.2)
    model.evaluate(x, y)
    model.predict(x)
    model.train_on_batch(x, y)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ---- shuffling and optimizer state --------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [8, 13])
def test_shuffle_false_trains_in_order(rng, batch_size):
    x, y = blobs(rng, n=50)
    base = mlp()
    a = clone(base, optimizers.SGD(learning_rate=0.1, momentum=0.9))
    b = clone(base, optimizers.SGD(learning_rate=0.1, momentum=0.9))
    c = clone(base, optimizers.SGD(learning_rate=0.1, momentum=0.9))
    a.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
    for _ in range(2):
        for start in range(0, len(x), batch_size):
            b.train_on_batch(x[start:start + batch_size], y[start:start + batch_size])
    assert_weights_equal(a.get_weights(), b.get_weights())
    assert a.optimizer.iterations == b.optimizer.iterations == 2 * -(-50 // batch_size)
    c.fit(x, y, batch_size=batch_size, epochs=2, shuffle=True, verbose=0)
    assert not weights_equal(a.get_weights(), c.get_weights())


@pytest.mark.parametrize("opt", [lambda: optimizers.Adam(learning_rate=0.01),
                                 lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True)],
                         ids=["adam", "sgd-nesterov"])
def test_optimizer_state_persists_across_fit_calls(rng, opt):
    x, y = blobs(rng, n=48)
    base = mlp()
    once = clone(base, opt())
    twice = clone(base, opt())
    once.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    for _ in range(3):
        twice.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert twice.optimizer.iterations == once.optimizer.iterations == 9
    assert_weights_equal(once.get_weights(), twice.get_weights())
    assert sorted(once.optimizer.state) == sorted(twice.optimizer.state)
    for key in once.optimizer.state:
        np.testing.assert_array_equal(once.optimizer.state[key], twice.optimizer.state[key])


# ---- planned buffers ----------------------------------------------------------------------------
class BufferProbe(Callback):
    def __init__(self):
        self.snapshots = []

    def on_epoch_end(self, epoch, logs=None):
        m = self.model
        self.snapshots.append((
            [{k: id(v) for k, v in layer._bufs.items()} for layer in m.layers],
            {k: id(v) for k, v in m._grad_bufs.items()},
            id(m._flat_params), id(m._flat_grads), {k: id(v) for k, v in m.optimizer.state.items()},
        ))


def test_no_new_buffers_after_the_first_epoch(rng):
    x, y = blobs(rng, n=100, d=8)                         # 100 = 3 * 32 + 4: a partial last batch
    model = fnn.Sequential([L.Dense(64, activation="relu"), L.Dropout(0.2), L.Dense(32, activation="tanh"),
                            L.Dense(3, activation="softmax")], input_shape=(8,))
    model.compile("adam")
    probe = BufferProbe()
    model.fit(x, y, batch_size=32, epochs=4, validation_split=0.1, verbose=0, callbacks=[probe])
    first = probe.snapshots[0]
    assert any(first[0]), "fit should plan layer buffers"
    for later in probe.snapshots[1:]:
        assert later == first
    model.fit(x, y, batch_size=32, epochs=2, validation_split=0.1, verbose=0, callbacks=[probe])
    assert probe.snapshots[-1] == first


class MemoryProbe(Callback):
    def __init__(self):
        self.current = []

    def on_epoch_end(self, epoch, logs=None):
        self.current.append(tracemalloc.get_traced_memory()[0])


def test_memory_does_not_grow_with_epochs(rng):
    x, y = blobs(rng, n=256, d=32)
    model = fnn.Sequential([L.Dense(256, activation="relu"), L.Dropout(0.1),
                            L.Dense(3, activation="softmax")], input_shape=(32,))
    model.compile("adam")
    probe = MemoryProbe()
    tracemalloc.start()
    try:
        model.fit(x, y, batch_size=64, epochs=6, validation_split=0.25, verbose=0, callbacks=[probe])
    finally:
        tracemalloc.stop()
    one_buffer = 64 * 256 * 4                              # one (batch, 256) float32 activation
    growth = probe.current[-1] - probe.current[1]
    assert growth < one_buffer, f"traced memory grew by {growth} bytes over 4 epochs: {probe.current}"


# ---- inputs and outputs do not alias ------------------------------------------------------------
@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_does_not_modify_the_caller_arrays(rng, shuffle):
    x = rng.standard_normal((40, 6))
    y = rng.integers(0, 3, 40)
    x0, y0 = x.copy(), y.copy()
    model = fnn.Sequential([L.Dropout(0.5), L.LeakyReLU(0.1), L.Dense(8, activation="relu"), L.Dropout(0.5),
                            L.Dense(3, activation="softmax")], input_shape=(6,), dtype="float64")
    model.compile("adam")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=shuffle, validation_data=(x, y), verbose=0)
    model.train_on_batch(x, y)
    model.evaluate(x, y)
    model.predict(x)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


@pytest.mark.parametrize("layers, shape", [
    (lambda: [L.Dense(4), L.Softmax()], (5,)),
    (lambda: [L.Dropout(0.5)], (5,)),
    (lambda: [L.Flatten()], (2, 3)),
    (lambda: [L.Flatten(), L.Dropout(0.2)], (2, 3)),
])
@pytest.mark.parametrize("batch_size", [256, 3])
def test_predict_returns_fresh_arrays(rng, layers, shape, batch_size):
    model = fnn.Sequential(layers(), input_shape=shape, dtype="float64")
    x = rng.standard_normal((7,) + shape)
    p1 = model.predict(x, batch_size=batch_size)
    assert not np.shares_memory(p1, x)
    expected = p1.copy()
    p1[...] = 123.0                                   # the caller owns the result
    p2 = model.predict(x, batch_size=batch_size)
    np.testing.assert_array_equal(p2, expected)
    assert not np.shares_memory(p1, p2)


@pytest.mark.parametrize("head, loss", [
    (lambda: [L.Dense(3), L.Softmax()], "sparse_categorical_crossentropy"),
    (lambda: [L.Dense(3), L.Softmax()], "categorical_crossentropy"),
    (lambda: [L.Dense(1), L.Sigmoid()], "binary_crossentropy"),
    (lambda: [L.Dense(3, activation="sigmoid")], "categorical_crossentropy"),   # not fused
    (lambda: [L.Dense(2, activation="softmax")], "binary_crossentropy"),        # not fused
])
def test_evaluate_matches_predict_for_activation_layers(rng, head, loss):
    x, y = blobs(rng, n=45)
    model = fnn.Sequential([L.Dense(8, activation="tanh")] + head(), input_shape=(4,), dtype="float64")
    model.compile(optimizers.Adam(learning_rate=0.01), loss=loss)
    k = model.output_shape[0]
    if loss == "sparse_categorical_crossentropy":
        t = y
    elif loss == "categorical_crossentropy":
        t = np.eye(3)[y]
    else:
        t = np.eye(2)[y % 2] if k == 2 else (y % 2).astype(np.float64)
    hist = model.fit(x, t, batch_size=9, epochs=5, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    p = model.predict(x)
    logs = model.evaluate(x, t, batch_size=10)
    assert all(type(v) is float for v in logs.values())
    if loss == "sparse_categorical_crossentropy":
        expected = sparse_xent(p, t)
    elif loss == "categorical_crossentropy":
        expected = float(-(t * np.log(p)).sum(axis=1).mean())
    else:
        expected = bce(p, t.reshape(p.shape))
    assert logs["loss"] == pytest.approx(expected, rel=1e-8)


def test_summary_of_an_unbuilt_model():
    model = fnn.Sequential([L.Dense(4, name="later")])
    text = model.summary()
    assert "later" in text and "Total params: 0" in text


def test_progress_bar_reads_the_logs_only_when_it_draws():
    """fit hands the bar a function: on the GPU, reading the running loss waits for the device."""
    import io

    from fastnn._progress import ProgressBar
    calls, stream = [], io.StringIO()
    bar = ProgressBar(10, 0, 1, stream=stream, interval=3600.0)
    bar.update(5, lambda: calls.append(5) or {"loss": 1.0})
    assert calls == [] and "loss" not in stream.getvalue()
    bar.interval = 0.0
    bar.update(6, lambda: calls.append(6) or {"loss": 0.5})
    assert calls == [6] and "6/10" in stream.getvalue() and "loss: 0.5000" in stream.getvalue()
