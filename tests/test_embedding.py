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


# ---- Embedding -> recurrent layer through the table E W_x + b_x (training steps) ---------------

def _table_call(be, cell, idx, E, wx, wh, bx, bh, dy, seq):
    """The table path of one backend: y and the gradients (dW_x, dW_h, db_x, db_h, dE)."""
    n, t = idx.shape
    h = wh.shape[0]
    fw, bw = be.recurrent_workspace(cell, n, t, 0, h)
    ws, bws = be.empty((max(fw, 1),), dtype=E.dtype), be.empty((max(bw, 1),), dtype=E.dtype)
    table = be.linear_fwd(E, wx, bx, be.empty((E.shape[0], wx.shape[1]), dtype=E.dtype))
    y = be.recurrent_table_fwd(cell, idx, table, wh, bh, be.empty(dy.shape, dtype=E.dtype), ws, seq)
    dwh, dbx, dbh = (be.empty(a.shape, dtype=E.dtype) for a in (wh, bx, bh))
    dtable = be.recurrent_table_bwd(cell, idx, wh, ws, dy, dwh, dbx, dbh, be.empty(table.shape, dtype=E.dtype),
                                    bws, seq)
    dwx = be.matmul(E, dtable, be.empty(wx.shape, dtype=E.dtype), trans_a=True)
    dE = be.matmul(dtable, wx, be.empty(E.shape, dtype=E.dtype), trans_b=True)
    return [be.to_numpy(a) for a in (y, dwx, dwh, dbx, dbh, dE)]


def _plain_call(cell, idx, E, wx, wh, bx, bh, dy, seq):
    """The same through the embedded rows E[idx] and the plain recurrent kernels (CPU)."""
    n, t = idx.shape
    x = E[idx]
    fw, bw = cpu.recurrent_workspace(cell, n, t, x.shape[2], wh.shape[0])
    ws, bws = np.empty(fw, E.dtype), np.empty(bw, E.dtype)
    y = cpu.recurrent_fwd(cell, x, wx, wh, bx, bh, np.empty(dy.shape, E.dtype), ws, seq)
    dwx, dwh, dbx, dbh, dx = (np.empty_like(a) for a in (wx, wh, bx, bh, x))
    cpu.recurrent_bwd(cell, x, wx, wh, ws, dy, dwx, dwh, dbx, dbh, dx, bws, seq)
    dE = cpu.embedding_bwd(idx, dx, np.empty_like(E))
    return [y, dwx, dwh, dbx, dbh, dE]


def _table_case(rng, cell, dtype, n=37, t=5, v=11, d=6, h=7, seq=False):
    g = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * h
    idx = rng.integers(0, v, (n, t))
    idx[0, :] = 2                                # repeated indices within and across samples
    arrs = [rng.standard_normal(s) * sc for s, sc in [((v, d), 1), ((d, g), .3), ((h, g), .3), ((g,), 1), ((g,), 1)]]
    dy = rng.standard_normal((n, t, h) if seq else (n, h))
    return [idx] + [a.astype(dtype) for a in arrs] + [dy.astype(dtype)]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("seq", [False, True])
@pytest.mark.parametrize("n", [1, 37, 70])
def test_table_kernels_match_the_embedded_rows(cell, seq, n, dtype, rng):
    """Forward and every gradient of the table path (C, NumPy reference) equal those through
    E[idx] and the plain kernels (the same bits per forward row up to GEMM rounding), for every
    cell, with batches of one and of several chunks; bit-identical for any thread count."""
    idx, E, wx, wh, bx, bh, dy = _table_case(rng, cell, dtype, n=n, seq=seq)
    want = _plain_call(cell, idx, E, wx, wh, bx, bh, dy, seq)
    # float32: sums of ~n t terms of either sign (the bias gradients) in different orders
    tol = dict(rtol=2e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    runs = []
    for nt in (1, 2):
        fnn.set_num_threads(nt)
        runs.append(_table_call(cpu, cell, idx, E, wx, wh, bx, bh, dy, seq))
    for name, a, b, r in zip(("y", "dW_x", "dW_h", "db_x", "db_h", "dE"), runs[0], runs[1], want):
        assert np.array_equal(a, b), f"{name}: thread count changed the bits"
        np.testing.assert_allclose(a, r, err_msg=name, **tol)
    for name, a, r in zip(("y", "dW_x", "dW_h", "db_x", "db_h", "dE"),
                          _table_call(ref, cell, idx, E, wx, wh, bx, bh, dy, seq), want):
        np.testing.assert_allclose(a, r, err_msg=f"numpy_ref {name}", **tol)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cuda_table_kernels_match_the_cpu(cuda, cell, dtype, rng):  # noqa: F811
    idx, E, wx, wh, bx, bh, dy = _table_case(rng, cell, dtype, seq=True)
    dev = [cuda.asarray(a) for a in (idx, E, wx, wh, bx, bh, dy)]
    got = _table_call(cuda, cell, *dev, True)
    tol = dict(rtol=2e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    for name, a, r in zip(("y", "dW_x", "dW_h", "db_x", "db_h", "dE"), got,
                          _table_call(cpu, cell, idx, E, wx, wh, bx, bh, dy, True)):
        np.testing.assert_allclose(a, r, err_msg=name, **tol)


def test_table_kernels_check_their_arguments(rng):
    idx, E, wx, wh, bx, bh, dy = _table_case(rng, "lstm", np.float32, n=4)
    fw, bw = cpu.recurrent_workspace("lstm", 4, 5, 0, 7)
    ws, bws, table, y = np.empty(fw, np.float32), np.empty(bw, np.float32), E @ wx + bx, np.empty((4, 7), np.float32)
    bad = idx.copy()
    bad[3, 4] = 11
    with pytest.raises(ValueError, match="index"):
        cpu.recurrent_table_fwd("lstm", bad, table, wh, bh, y, ws, False)
    with pytest.raises(ValueError, match="index"):
        cpu.recurrent_table_bwd("lstm", bad, wh, ws, dy, np.empty_like(wh), np.empty_like(bx), np.empty_like(bh),
                                np.empty_like(table), bws, False)
    with pytest.raises(ValueError, match="table"):
        cpu.recurrent_table_fwd("lstm", idx, table[:, :-1].copy(), wh, bh, y, ws, False)
    with pytest.raises(ValueError, match="workspace"):
        cpu.recurrent_table_fwd("lstm", idx, table, wh, bh, y, ws[:-1], False)
    with pytest.raises(ValueError, match="output gradient"):
        cpu.recurrent_table_bwd("lstm", idx, wh, ws, dy[:3], np.empty_like(wh), np.empty_like(bx), np.empty_like(bh),
                                np.empty_like(table), bws, False)
    with pytest.raises(ValueError, match="backward workspace"):
        cpu.recurrent_table_bwd("lstm", idx, wh, ws, dy, np.empty_like(wh), np.empty_like(bx), np.empty_like(bh),
                                np.empty_like(table), bws[:-1], False)
    with pytest.raises(ValueError, match="output"):
        cpu.recurrent_table_fwd("lstm", idx, table, wh, bh, np.empty((4, 8), np.float32), ws, False)


def _emb_rnn_model(cell, v, d, t, dtype, seq=False):
    layers = [Embedding(v, d), getattr(fnn.layers, cell)(5, return_sequences=seq)]
    layers += [Flatten()] if seq else []
    model = fnn.Sequential(layers + [Dense(3, activation="softmax")], input_shape=(t,), dtype=dtype)
    model.compile(optimizer=fnn.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("cell, seq", [("LSTM", False), ("GRU", True), ("SimpleRNN", False)])
def test_training_through_the_table_matches_the_plain_path(cell, seq, dtype, rng, monkeypatch):
    """fit through the table (where recurrent.table_pays) trains as the unfused layers do, and
    the table is really used for these shapes."""
    from fastnn.layers import embedding, recurrent
    v, d, t = 12, 8, 9
    assert recurrent.table_pays(v, d, 16, t)
    x, y = _data(rng, n=64, t=t, v=v)
    # the layers' own path, whose calls are counted (a step plan would replay one captured call;
    # tests/test_step_plan.py checks that the planned table path gives these bits)
    monkeypatch.setenv("FASTNN_STEP_PLANS", "0")
    calls = []
    real = cpu.recurrent_table_fwd
    monkeypatch.setattr(cpu, "recurrent_table_fwd", lambda *a: calls.append(1) or real(*a))
    results = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(recurrent, "table_pays", lambda *a: False)
            monkeypatch.setattr(embedding, "table_pays", lambda *a: False)
        fnn.seed(5)
        model = _emb_rnn_model(cell, v, d, t, dtype, seq)
        h = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        results.append((h.history["loss"], model.get_weights()))
        if fused:
            assert len(calls) == 8                # 2 epochs of 4 batches, every one through the table
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(results[0][0], results[1][0], **tol)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, **tol)


def test_training_through_the_table_is_bit_identical_for_any_thread_count(rng):
    x, y = _data(rng, n=256, t=12, v=30)
    weights = []
    for nt in (1, 2):
        fnn.set_num_threads(nt)
        fnn.seed(3)
        model = _emb_rnn_model("LSTM", 30, 64, 12, "float32")
        model.fit(x, y, batch_size=128, epochs=2, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        assert np.array_equal(a, b)


def test_gradient_check_through_the_table_float64(rng):
    """Every gradient of an Embedding -> LSTM pair joined as in a training step (the indices
    passed through, the LSTM computing the Embedding's gradient) against central differences."""
    emb, lstm = Embedding(4, 6), LSTM(3)
    x = rng.integers(0, 4, (8, 5))
    x[0, :] = 1
    emb.build((5,), dtype="float64")
    lstm.build((5, 6), dtype="float64")
    emb.set_weights([rng.uniform(-1, 1, (4, 6))])
    lstm.set_weights([rng.uniform(-.5, .5, w.shape) for w in lstm.get_weights()])
    emb._fused_into, lstm._embedded = lstm, emb
    r = rng.standard_normal((8, 3))

    def loss():
        return float(np.sum(lstm._forward(emb._forward(x, False, False), False, False) * r))

    passed = emb._forward(x, True, False)
    assert passed is x                           # the indices pass through
    lstm._forward(passed, True, False)
    assert lstm._backward(r, True) is None and emb._backward(None, False) is None
    for what, w, g in [("embeddings", emb.params[0], emb.grads[0])] + [
            (n, w, g) for n, w, g in zip(lstm.weight_names(), lstm.params, lstm.grads)]:
        assert_grad_close(np.array(g, copy=True), numeric_grad(loss, w), what)
