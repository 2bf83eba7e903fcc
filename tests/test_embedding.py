"""Embedding: the kernels against NumPy and PyTorch, the float64 gradient check, thread-count
invariance bit for bit, checked integer inputs through every Sequential entry point, model files,
inference plans, and the CUDA backend on the emulator."""
from __future__ import annotations

import cuda_emu  # noqa: F401  (the cuda fixture below installs it)
import numpy as np
import pytest
from helpers import assert_grad_close, numeric_grad
from test_cuda import cuda  # noqa: F401  (fixture: the CUDA backend, emulated or on a device)

import fastnn as fnn
from fastnn import _core, _inference
from fastnn.backend import cpu
from fastnn.backend import numpy_ref as ref
from fastnn.layers import LSTM, Dense, Embedding, Flatten


def _model(v=50, d=6, t=7, dtype="float64", head="dense"):
    layers = [Embedding(v, d)]
    layers += [Flatten()] if head == "dense" else [LSTM(5)]
    layers.append(Dense(3, activation="softmax"))
    model = fnn.Sequential(layers, input_shape=(t,), dtype=dtype)
    model.compile(optimizer=fnn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    return model


# ---- kernels ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1,), (5,), (3, 7), (2, 3, 4), (0, 3)])
@pytest.mark.parametrize("v, d", [(1, 1), (13, 17), (100, 64)])
def test_ops_match_numpy(shape, v, d, dtype, rng):
    w = rng.standard_normal((v, d)).astype(dtype)
    idx = rng.integers(0, v, shape)
    dy = rng.standard_normal(shape + (d,)).astype(dtype)
    y = cpu.embedding_fwd(idx, w, np.empty(shape + (d,), dtype))
    np.testing.assert_array_equal(y, w[idx])
    dw = cpu.embedding_bwd(idx, dy, np.full((v, d), np.nan, dtype))
    want = ref.embedding_bwd(idx, dy, np.empty((v, d), dtype))
    np.testing.assert_array_equal(dw, want)      # the same summation order: the same bits


def test_kernels_check_indices_themselves(dtype):
    """The last line of defence: C returns a status (a ValueError) instead of reading outside w."""
    w = np.zeros((4, 3), dtype)
    for bad in ([0, 4], [-1], [2**62]):
        idx = np.array(bad, dtype=np.int64)
        y = np.full((len(bad), 3), 7.0, dtype)
        with pytest.raises(ValueError, match="embedding index out of range"):
            _core.embedding_fwd(idx, w, y, 1)
        assert (y == 7.0).all(), "nothing is written before the check"
        with pytest.raises(ValueError, match="embedding index out of range"):
            _core.embedding_bwd(idx, np.zeros((len(bad), 3), dtype), np.zeros((4, 3), dtype), 1)
    with pytest.raises(ValueError, match="output has shape"):
        _core.embedding_fwd(np.zeros(2, np.int64), w, np.zeros((2, 4), dtype), 1)
    with pytest.raises(ValueError, match="gradient has shape"):
        _core.embedding_bwd(np.zeros(2, np.int64), np.zeros((3, 3), dtype), np.zeros((4, 3), dtype), 1)
    with pytest.raises((ValueError, TypeError)):
        _core.embedding_fwd(np.zeros(2, np.int32), w, np.zeros((2, 3), dtype), 1)


@pytest.mark.parametrize("v, d", [(3, 64), (1000, 64), (7, 33), (50, 8)])
def test_thread_count_does_not_change_the_bits(v, d, dtype, rng):
    # many repeated indices (v small against n), sizes the kernels split over 2 to 4 threads
    n = 24000
    idx = rng.integers(0, v, n)
    idx[::3] = 0                       # a frequent "padding" index
    w = rng.standard_normal((v, d)).astype(dtype)
    dy = rng.standard_normal((n, d)).astype(dtype)
    outs = []
    for nt in (1, 2, 3, 4):
        y = np.empty((n, d), dtype)
        dw = np.empty((v, d), dtype)
        _core.embedding_fwd(idx, w, y, nt)
        _core.embedding_bwd(idx, dy, dw, nt)
        outs.append((y, dw))
    for y, dw in outs[1:]:
        assert np.array_equal(y, outs[0][0]) and np.array_equal(dw, outs[0][1])


def test_training_is_bit_identical_for_any_thread_count(rng):
    x = rng.integers(0, 30, (256, 12))
    x[:, ::2] = 1
    y = rng.integers(0, 3, 256)
    weights = []
    for nt in (1, 2):
        fnn.set_num_threads(nt)
        fnn.seed(3)
        model = _model(v=30, d=64, t=12, dtype="float32")
        model.fit(x, y, batch_size=128, epochs=2, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        assert np.array_equal(a, b)


# ---- layer: gradient check, PyTorch ------------------------------------------------------------

def test_gradient_check_float64(rng):
    """d(loss)/d(embeddings) against central differences, through Embedding -> Flatten -> Dense."""
    emb, flat, dense = Embedding(6, 4), Flatten(), Dense(3, activation="tanh")
    x = rng.integers(0, 6, (5, 7))
    x[0, :3] = 2                                  # repeated indices in one sample and across samples
    emb.build((7,), dtype="float64")
    emb.set_weights([rng.uniform(-1, 1, (6, 4))])
    flat.build((7, 4), dtype="float64")
    dense.build((28,), dtype="float64")
    dense.set_weights([rng.uniform(-0.5, 0.5, (28, 3)), rng.uniform(-0.5, 0.5, 3)])
    r = rng.standard_normal((5, 3))

    def loss():
        return float(np.sum(dense.forward(flat.forward(emb.forward(x, False), False), False) * r))

    out = dense.forward(flat.forward(emb.forward(x, True), True), True)
    assert out.shape == (5, 3)
    assert emb.backward(flat.backward(dense.backward(r))) is None      # no gradient for indices
    analytic = np.array(emb.grads[0], copy=True)
    assert_grad_close(analytic, numeric_grad(loss, emb.params[0]), "embeddings")
    assert (analytic[[i for i in range(6) if i not in x]] == 0).all()


@pytest.mark.parametrize("shape", [(4,), (3, 9), (2, 3, 5)])
def test_matches_torch_embedding(shape, dtype, rng):
    torch = pytest.importorskip("torch")
    v, d = 11, 6
    layer = Embedding(v, d)
    layer.build(shape[1:], dtype=dtype)
    w = rng.standard_normal((v, d)).astype(dtype)
    layer.set_weights([w])
    x = rng.integers(0, v, shape)
    x.reshape(-1)[: x.size // 2] = 3                   # many repeats of one index
    r = rng.standard_normal(shape + (d,)).astype(dtype)
    emb = torch.nn.Embedding(v, d, dtype=torch.float32 if dtype == np.float32 else torch.float64)
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(w))
    yt = emb(torch.from_numpy(x))
    (yt * torch.from_numpy(r)).sum().backward()
    y = layer.forward(x, training=True)
    layer.backward(r)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads[0], emb.weight.grad.numpy(), **tol)


def test_initializer_and_config(rng):
    fnn.seed(11)
    a = Embedding(300, 20)
    a.build((4,))
    w = a.get_weights()[0]
    assert w.dtype == np.float32 and w.shape == (300, 20)
    assert np.abs(w).max() <= 0.05 and np.abs(w).max() > 0.04 and abs(w.mean()) < 0.005
    fnn.seed(11)
    b = Embedding(300, 20)
    b.build((4,), dtype="float64")
    np.testing.assert_array_equal(b.get_weights()[0].astype(np.float32), w)     # drawn in float64, cast
    c = Embedding(5, 2, embeddings_initializer="zeros")
    c.build((1,))
    assert (c.get_weights()[0] == 0).all()
    assert a.get_config()["embeddings_initializer"] == "uniform"
    assert "Embedding(input_dim=300, output_dim=20" in repr(a)
    for bad in (0, -1):
        with pytest.raises(ValueError):
            Embedding(bad, 3)
    for bad in (2.0, "3", None, True):
        with pytest.raises(TypeError):
            Embedding(bad, 3)
    with pytest.raises(ValueError):
        Embedding(3, 4, embeddings_initializer="nope")


# ---- bad inputs -------------------------------------------------------------------------------

BAD = [
    ("out of range", np.array([[0, 5]]), ValueError, r"\[0, 5\)"),
    ("negative", np.array([[0, -1]]), ValueError, "index -1"),
    ("fraction", np.array([[0.0, 1.5]]), ValueError, "non-integer"),
    ("nan", np.array([[0.0, np.nan]]), ValueError, "NaN"),
    ("inf", np.array([[0.0, np.inf]]), ValueError, "NaN or infinite"),
    ("float too large", np.array([[0.0, 5.0]]), ValueError, r"\[0, 5\)"),
    ("uint64 huge", np.array([[0, 2**63 + 5]], dtype=np.uint64), ValueError, r"\[0, 5\)"),
    ("bool", np.array([[True, False]]), TypeError, "integer indices"),
    ("strings", np.array([["a", "b"]]), TypeError, None),
    ("complex", np.array([[1j, 0]]), TypeError, None),
    ("str", "12", TypeError, None),
    ("ragged", [[0, 1], [2]], TypeError, None),
    ("None", None, TypeError, None),
]


@pytest.mark.parametrize("label, x, exc, match", BAD, ids=[b[0] for b in BAD])
def test_bad_indices_are_refused_everywhere(label, x, exc, match, monkeypatch):
    model = _model(v=5, d=3, t=2)
    good = np.array([[0, 1], [2, 3], [4, 0]])
    y = np.array([0, 1, 2])
    calls = []
    for name in ("embedding_fwd", "embedding_bwd"):       # no kernel may run for a bad input
        monkeypatch.setattr(_core, name, lambda *a, _n=name: calls.append(_n))
    layer = Embedding(5, 3)
    with pytest.raises(exc, match=match):
        layer.forward(x)
    with pytest.raises(exc, match=match):
        model.predict(x)
    with pytest.raises(exc, match=match):
        model.fit(x, y[:1], verbose=0)
    with pytest.raises(exc, match=match):
        model.evaluate(x, y[:1])
    with pytest.raises(exc, match=match):
        model.train_on_batch(x, y[:1])
    with pytest.raises(exc, match=match):
        model.fit(good, y, validation_data=(x, y[:1]), verbose=0)
    assert calls == []


def test_wrong_shapes(rng):
    model = _model(v=5, d=3, t=4)
    for x in (np.zeros((2, 3), np.int64), np.zeros((2, 4, 1), np.int64), np.zeros(2, np.int64),
              np.zeros((0, 4), np.int64), np.int64(3)):
        with pytest.raises(ValueError):
            model.predict(x)
    layer = Embedding(5, 3)
    with pytest.raises(ValueError, match="batch"):
        layer.forward(np.int64(1))
    layer.forward(np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError):
        layer.forward(np.zeros((2, 5), np.int64))
    with pytest.raises(ValueError, match="output gradient"):
        layer.backward(np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="first layer"):
        fnn.Sequential([Dense(3), Embedding(5, 2)], input_shape=(4,))


# ---- Sequential ------------------------------------------------------------------------------

def _data(rng, n=200, t=8, v=20):
    x = rng.integers(0, v, (n, t))
    y = (x[:, 0] < v // 2).astype(np.int64) + (x[:, 1] < 3)
    return x, y


@pytest.mark.parametrize("model_dtype", ["float32", "float64"])
def test_integer_dtypes_and_whole_floats_train_identically(model_dtype, rng):
    x, y = _data(rng)
    val = (x[:40], y[:40])
    results = []
    for kind in (np.int64, np.int32, np.uint8, np.int16, np.float32, np.float64):
        xk = x.astype(kind)
        fnn.seed(5)
        model = _model(v=20, d=4, t=8, dtype=model_dtype, head="lstm")
        h = model.fit(xk, y, batch_size=32, epochs=2, verbose=0, validation_data=(val[0].astype(kind), val[1]))
        h2 = model.fit(xk, y, batch_size=32, epochs=1, verbose=0, validation_split=0.25, shuffle=False)
        loss = model.train_on_batch(xk[:16], y[:16])
        results.append((h.history, h2.history, loss, model.evaluate(xk, y), model.predict(xk[:5]),
                        model.predict(xk), model.get_weights()))
    first = results[0]
    assert first[0]["loss"][1] < first[0]["loss"][0]
    for r in results[1:]:
        assert r[0] == first[0] and r[1] == first[1] and r[2] == first[2] and r[3] == first[3]
        for a, b in zip(r[4:6] + tuple(r[6]), first[4:6] + tuple(first[6])):
            np.testing.assert_array_equal(a, b)


def test_model_on_index_vectors(rng, tmp_path):
    """(N,) indices -> (N, output_dim), as Keras."""
    x = rng.integers(0, 10, 300)
    y = x % 2
    fnn.seed(1)
    model = fnn.Sequential([Embedding(10, 8), Dense(2, activation="softmax")])
    model.compile(optimizer=fnn.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    assert model.layers[0].output_shape == (8,) and model.input_shape == ()
    assert model.evaluate(x, y)["accuracy"] == 1.0
    assert model.predict(x[:3]).shape == (3, 2)
    model.save(tmp_path / "vec.fnn")
    np.testing.assert_array_equal(fnn.load_model(tmp_path / "vec.fnn").predict(x), model.predict(x))


def test_summary_save_load_and_plans(rng, tmp_path):
    x, y = _data(rng, t=6)
    fnn.seed(2)
    model = _model(v=20, d=5, t=6, dtype="float32", head="lstm")
    model.fit(x, y, epochs=1, verbose=0)
    text = model.summary()
    assert "Embedding" in text and "(None, 6, 5)" in text and "100" in text
    path = tmp_path / "emb.fnn"
    model.save(path)
    loaded = fnn.load_model(path)
    assert type(loaded.layers[0]) is Embedding and loaded.layers[0].get_config() == model.layers[0].get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # small batches run through an inference plan whose input buffer holds the int64 indices
    plan = _inference.plan_for(model, np.ascontiguousarray(x[:2], dtype=np.int64))
    assert plan is not None and plan.x.dtype == np.int64
    layer_by_layer = model._forward(np.ascontiguousarray(x[:2], dtype=np.int64), False, False)
    np.testing.assert_array_equal(model.predict(x[:2].astype(np.uint8)), layer_by_layer)
    np.testing.assert_array_equal(model.predict(x[:2].astype(np.float32)), layer_by_layer)
    with pytest.raises(ValueError):
        model.predict(x[:2] + 20)            # range still checked on the planned path
    loaded.fit(x, y, epochs=1, verbose=0)    # optimizer state restored; training continues


@pytest.mark.parametrize("head", ["dense", "lstm"])
@pytest.mark.parametrize("batch", [1, 5])
def test_plans_give_the_bits_of_the_layers(head, batch, dtype, rng):
    model = _model(v=30, d=4, t=6, dtype=dtype, head=head)
    for _ in range(3):       # captured on the first call, replayed after
        x = rng.integers(0, 30, (batch, 6))
        want = model._forward(x, False, False).copy()
        np.testing.assert_array_equal(model.predict(x.astype(np.int32)), want)
    plan = _inference.plan_for(model, x)
    assert plan is not None and plan.x.dtype == np.int64 and len(plan.calls) >= 2
    np.testing.assert_array_equal(plan.run(x), want)
    with pytest.raises(ValueError, match="format"):
        plan.run(x.astype(dtype))           # the plan's input buffer takes int64 indices only


# ---- CUDA backend (emulated without a GPU) ------------------------------------------------------

@pytest.mark.parametrize("shape, v, d", [((3, 7), 13, 17), ((5,), 4, 1), ((2, 3, 4), 100, 8), ((0, 2), 3, 2)])
def test_cuda_ops_match_the_cpu(cuda, shape, v, d, dtype, rng):  # noqa: F811
    w = rng.standard_normal((v, d)).astype(dtype)
    idx = rng.integers(0, v, shape)
    idx.reshape(-1)[::2] = v - 1
    dy = rng.standard_normal(shape + (d,)).astype(dtype)
    y = cuda.embedding_fwd(cuda.asarray(idx), cuda.asarray(w), cuda.empty(shape + (d,), dtype))
    np.testing.assert_array_equal(cuda.to_numpy(y), w[idx])
    dw = cuda.embedding_bwd(cuda.asarray(idx), cuda.asarray(dy), cuda.empty((v, d), dtype))
    want = cpu.embedding_bwd(idx, dy, np.empty((v, d), dtype))
    np.testing.assert_array_equal(cuda.to_numpy(dw), want)     # the same order of additions


def test_cuda_model_matches_the_cpu(cuda, rng, tmp_path):  # noqa: F811
    x, y = _data(rng, n=96, t=5, v=12)
    results = []
    for device in ("cpu", "cuda"):
        fnn.seed(4)
        model = _model(v=12, d=4, t=5, dtype="float64", head="lstm").to(device)
        h = model.fit(x.astype(np.int32), y, batch_size=32, epochs=2, verbose=0, validation_split=0.25)
        results.append((h.history, model.predict(x), model.get_weights(), model))
    for a, b in zip(results[0][2], results[1][2]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)
    gpu_model = results[1][3]
    with pytest.raises(ValueError):
        gpu_model.predict(x + 12)
    gpu_model.save(tmp_path / "gpu.fnn")
    np.testing.assert_allclose(fnn.load_model(tmp_path / "gpu.fnn").predict(x), results[1][1], rtol=1e-12)


# ---- demo -------------------------------------------------------------------------------------

def test_code_sequences_are_deterministic_and_labelled():
    from fastnn.demo import CODES_STEPS, MARKER_A, MARKER_B, make_code_sequences
    x, y = make_code_sequences(300)
    x2, y2 = make_code_sequences(300)
    assert np.array_equal(x, x2) and np.array_equal(y, y2) and x.dtype == np.int64
    assert x.shape == (300, CODES_STEPS) and 0.3 < y.mean() < 0.7
    for row, label in zip(x, y):
        (a,), (b,) = np.flatnonzero(row == MARKER_A), np.flatnonzero(row == MARKER_B)
        assert label == (a < b)
        start = np.flatnonzero(row)[0]
        assert (row[:start] == 0).all() and (row[start:] > 0).all() and CODES_STEPS - start >= 10


def test_codes_lstm_demo_reaches_its_accuracy(capsys):
    from fastnn import demo
    fnn.seed(0)
    assert demo.codes_lstm(verbose=0) >= 0.95
    assert "codes lstm: test accuracy" in capsys.readouterr().out
