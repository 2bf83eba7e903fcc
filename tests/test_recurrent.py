"""Recurrent layers (SimpleRNN, LSTM, GRU): PyTorch parity of outputs and every gradient, the C
backend against the numpy reference, finite-difference gradient checks, stacking and training,
thread-count invariance, gradient clipping, input errors and model files."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import check_layer

import fastnn as fnn
from fastnn import _core
from fastnn.backend import cpu, numpy_ref
from fastnn.layers import GRU, LSTM, Dense, SimpleRNN
from fastnn.optimizers import SGD

CELLS = {"rnn": SimpleRNN, "lstm": LSTM, "gru": GRU}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
# (batch, steps, features, units): T = 1, units not a multiple of 8, and batches of 1, 2 and 4
# row chunks (the C code cuts the batch into chunks of about 16 rows, threads run whole chunks)
SIZES = [(3, 1, 4, 5), (2, 6, 3, 13), (40, 5, 7, 8), (70, 3, 5, 5)]


def _close(got, want, dtype, what):
    """Within a few float32 (float64) roundings of the reference, relative to the largest
    reference value for elements near zero (gradients are sums with cancellation)."""
    rtol = 2e-5 if np.dtype(dtype) == np.float32 else 1e-10
    want = np.asarray(want)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 0.1 * scale, err_msg=what)


def _layer(cell, units, seq, input_shape, dtype, rng):
    """A built layer with its default weights plus random biases (zero biases hide bias bugs)."""
    layer = CELLS[cell](units, return_sequences=seq)
    layer.build(input_shape, dtype=dtype)
    w = layer.get_weights()
    w[2] = rng.uniform(-0.5, 0.5, w[2].shape)
    w[3] = rng.uniform(-0.5, 0.5, w[3].shape)
    layer.set_weights(w)
    return layer


def _run(layer, x, r):
    y = np.array(layer.forward(x, training=True), copy=True)
    dx = np.array(layer.backward(r), copy=True)
    return [y, dx] + [np.array(g, copy=True) for g in layer.grads]


# ---- PyTorch parity ----------------------------------------------------------------------------

@pytest.mark.parametrize("seq", [False, True], ids=["last", "seq"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cell", CELLS)
def test_matches_torch(cell, size, seq, dtype, rng):
    torch = pytest.importorskip("torch")
    n, t, f, h = size
    layer = _layer(cell, h, seq, (t, f), dtype, rng)
    x = rng.standard_normal((n, t, f)).astype(dtype)
    r = rng.standard_normal((n, t, h) if seq else (n, h)).astype(dtype)
    y, dx, dwx, dwh, dbx, dbh = _run(layer, x, r)

    tdt = torch.float32 if dtype == np.float32 else torch.float64
    mod = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](f, h, batch_first=True, dtype=tdt)
    wx, wh, bx, bh = layer.get_weights()
    with torch.no_grad():
        mod.weight_ih_l0.copy_(torch.from_numpy(wx.T.copy()))
        mod.weight_hh_l0.copy_(torch.from_numpy(wh.T.copy()))
        mod.bias_ih_l0.copy_(torch.from_numpy(bx))
        mod.bias_hh_l0.copy_(torch.from_numpy(bh))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out, _ = mod(xt)
    out = out if seq else out[:, -1]
    (out * torch.from_numpy(r)).sum().backward()

    _close(y, out.detach().numpy(), dtype, "output")
    _close(dx, xt.grad.numpy(), dtype, "dx")
    _close(dwx, mod.weight_ih_l0.grad.numpy().T, dtype, "dW_x")
    _close(dwh, mod.weight_hh_l0.grad.numpy().T, dtype, "dW_h")
    _close(dbx, mod.bias_ih_l0.grad.numpy(), dtype, "db_x")
    _close(dbh, mod.bias_hh_l0.grad.numpy(), dtype, "db_h")


# ---- the C backend against the numpy reference -------------------------------------------------

@pytest.mark.parametrize("seq", [False, True], ids=["last", "seq"])
@pytest.mark.parametrize("cell", CELLS)
def test_backend_matches_numpy_ref(cell, seq, dtype, rng, arch, monkeypatch):
    """Every GEMM kernel variant; the layer run once on each backend."""
    for n, t, f, h in [(1, 2, 3, 4), (17, 4, 5, 13), (33, 3, 2, 6), (64, 2, 9, 17)]:
        layer = _layer(cell, h, seq, (t, f), dtype, rng)
        x = rng.standard_normal((n, t, f)).astype(dtype)
        r = rng.standard_normal((n,) + layer.output_shape).astype(dtype)
        got = _run(layer, x, r)
        monkeypatch.setattr(type(layer), "backend", property(lambda self: numpy_ref))
        want = _run(layer, x, r)
        monkeypatch.undo()
        for name, a, b in zip(["y", "dx", "dW_x", "dW_h", "db_x", "db_h"], got, want):
            _close(a, b, dtype, f"{cell} {(n, t, f, h)} {name}")


def test_gate_kernels_agree_across_kernel_variants():
    """The fused gate kernels are compiled per instruction set from the same C code: with the
    GEMMs reduced to exact copies (one feature, unit weights, one step), every variant of the
    float32 nonlinearities gives the same bits."""
    x = np.linspace(-30, 30, 20001).astype(np.float32).reshape(-1, 1, 1)
    n = x.shape[0]
    original = _core.arch_get()
    results = {}
    try:
        names = ("generic", "avx2", "avx512")
        for arch in names[:names.index(_core.arch_best()) + 1]:      # those this CPU supports
            _core.arch_set(arch)
            for cell, k in GATES.items():
                fw, _ = cpu.recurrent_workspace(cell, n, 1, 1, 1)
                y = np.empty((n, 1), np.float32)
                cpu.recurrent_fwd(cell, x, np.ones((1, k), np.float32), np.zeros((1, k), np.float32),
                                  np.zeros(k, np.float32), np.zeros(k, np.float32), y, np.empty(fw, np.float32), False)
                results.setdefault(cell, []).append(y)
    finally:
        _core.arch_set(original)
    for cell, ys in results.items():
        for other in ys[1:]:
            np.testing.assert_array_equal(ys[0], other, err_msg=cell)
    # and they are accurate: h = o tanh(i g) for the LSTM, tanh for the SimpleRNN
    v = x[:, 0, 0].astype(np.float64)
    sig = 1 / (1 + np.exp(-v))
    np.testing.assert_allclose(results["rnn"][0][:, 0], np.tanh(v), rtol=3e-7, atol=0)
    np.testing.assert_allclose(results["lstm"][0][:, 0], sig * np.tanh(sig * np.tanh(v)), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("cell", CELLS)
def test_model_gradients_in_flat_buffer(cell, rng):
    """Inside a model W_x and W_h are adjacent views of one flat buffer, and the kernel writes
    [dW_x; dW_h] with one GEMM in place: same gradients as separate arrays."""
    n, t, f, h = 37, 3, 4, 8            # f * k * h is a multiple of 16: the two views touch
    model = fnn.Sequential([CELLS[cell](h)], input_shape=(t, f), dtype="float64")
    layer = model.layers[0]
    dwx, dwh = layer.grads[0], layer.grads[1]
    assert np.shares_memory(model._flat_grads, dwx)
    assert dwh.__array_interface__["data"][0] == dwx.__array_interface__["data"][0] + dwx.nbytes
    x = rng.standard_normal((n, t, f))
    r = rng.standard_normal((n, h))
    got = _run(layer, x, r)
    ref = _layer(cell, h, False, (t, f), np.float64, rng)
    ref.set_weights(layer.get_weights())
    for a, b in zip(got, _run(ref, x, r)):
        np.testing.assert_array_equal(a, b)


def test_ops_signatures_and_workspace_checks(rng):
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    wx, wh = np.zeros((2, 20), np.float32), np.zeros((5, 20), np.float32)
    b = np.zeros(20, np.float32)
    y = np.empty((4, 5), np.float32)
    fw, bw = cpu.recurrent_workspace("lstm", 4, 3, 2, 5)
    assert fw > 0 and bw > 0
    with pytest.raises(ValueError, match="workspace"):
        cpu.recurrent_fwd("lstm", x, wx, wh, b, b, y, np.empty(fw - 1, np.float32), False)
    with pytest.raises(ValueError, match="W_h"):
        cpu.recurrent_fwd("lstm", x, wx, np.zeros((5, 16), np.float32), b, b, y, np.empty(fw, np.float32), False)
    with pytest.raises(ValueError, match="output"):
        cpu.recurrent_fwd("lstm", x, wx, wh, b, b, np.empty((4, 6), np.float32), np.empty(fw, np.float32), False)
    with pytest.raises(ValueError, match="unknown cell"):
        _core.recurrent_workspace(7, 4, 3, 2, 5)
    with pytest.raises(ValueError, match="invalid sizes"):
        _core.recurrent_workspace(1, 4, 0, 2, 5)
    ws = np.empty(fw, np.float32)
    cpu.recurrent_fwd("lstm", x, wx, wh, b, b, y, ws, False)
    g = [np.empty_like(a) for a in (wx, wh, b, b)]
    with pytest.raises(ValueError, match="backward workspace"):
        cpu.recurrent_bwd("lstm", x, wx, wh, ws, y, *g, None, np.empty(bw - 1, np.float32), False)
    with pytest.raises(ValueError, match="output gradient"):
        cpu.recurrent_bwd("lstm", x, wx, wh, ws, np.empty((4, 15), np.float32), *g, None, np.empty(bw, np.float32),
                          False)


# ---- finite differences (float64) --------------------------------------------------------------

@pytest.mark.parametrize("seq", [False, True], ids=["last", "seq"])
@pytest.mark.parametrize("shape", [(1, 3), (4, 2)], ids=["T1", "T4"])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck(cell, shape, seq, rng, tmp_path):
    layer = check_layer(lambda: CELLS[cell](5, return_sequences=seq), shape, rng, batch=3,
                        expected_output_shape=(shape[0], 5) if seq else (5,), save_load_dir=tmp_path)
    assert [w.shape for w in layer.get_weights()] == [
        (shape[1], GATES[cell] * 5), (5, GATES[cell] * 5), (GATES[cell] * 5,), (GATES[cell] * 5,)]


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_chunked_batch(cell, rng):
    """A batch of several row chunks (their bias sums are added across chunks)."""
    check_layer(lambda: CELLS[cell](3, return_sequences=True), (3, 2), rng, batch=40)


# ---- layer behaviour -----------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_defaults_config_and_initialisers(cell):
    layer = CELLS[cell](7)
    assert layer.return_sequences is False
    assert layer.get_config() == {"units": 7, "return_sequences": False, "kernel_regularizer": None,
                                  "recurrent_regularizer": None, "name": layer.name}
    layer.build((5, 3))
    wx, wh, bx, bh = layer.get_weights()
    k = GATES[cell]
    assert wx.dtype == np.float32 and wx.shape == (3, 7 * k) and wh.shape == (7, 7 * k)
    for g in range(k):     # orthogonal per gate block
        block = wh[:, g * 7:(g + 1) * 7].astype(np.float64)
        np.testing.assert_allclose(block.T @ block, np.eye(7), atol=1e-5)
    assert not bx.any() and not bh.any()
    assert repr(layer) == (f"{type(layer).__name__}(units=7, return_sequences=False, kernel_regularizer=None, "
                           "recurrent_regularizer=None)")


def test_return_sequences_last_step_equals_last_output(rng):
    seq = _layer("lstm", 6, True, (5, 3), np.float64, rng)
    last = LSTM(6)
    last.build((5, 3), dtype=np.float64)
    last.set_weights(seq.get_weights())
    x = rng.standard_normal((4, 5, 3))
    np.testing.assert_array_equal(seq.forward(x)[:, -1], last.forward(x))


def test_empty_batch(rng):
    layer = _layer("gru", 4, True, (3, 2), np.float32, rng)
    y = layer.forward(np.zeros((0, 3, 2), np.float32))
    assert y.shape == (0, 3, 4)
    dx = layer.backward(np.zeros((0, 3, 4), np.float32))
    assert dx.shape == (0, 3, 2)
    assert all(not g.any() for g in layer.grads)


def test_saturated_gates_stay_finite(dtype):
    """Huge pre-activations saturate every gate: outputs and gradients stay finite, in [-1, 1]."""
    for cell in CELLS:
        layer = CELLS[cell](3, return_sequences=True)
        layer.build((4, 2), dtype=dtype)
        w = layer.get_weights()
        layer.set_weights([np.full_like(w[0], 1e4), np.full_like(w[1], -1e4), w[2], w[3]])
        x = np.array([[[1, -1], [-50, 3], [200, 0], [-1e3, 1e3]]] * 2, dtype=dtype)
        y = layer.forward(x)
        assert np.isfinite(y).all() and np.abs(y).max() <= 1
        dx = layer.backward(np.ones_like(y))
        assert np.isfinite(dx).all() and all(np.isfinite(g).all() for g in layer.grads)


# ---- stacking and training ---------------------------------------------------------------------

def _sequence_task(rng, n=256, t=6):
    """Class = sign of the sum of the first feature over the steps (needs memory of all steps)."""
    x = rng.standard_normal((n, t, 2)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)
    return x, y


@pytest.mark.parametrize("first, second", [("lstm", "lstm"), ("gru", "rnn"), ("rnn", "gru")])
def test_stacked_layers_train_with_fit(first, second, rng):
    fnn.seed(1)
    x, y = _sequence_task(rng)
    model = fnn.Sequential([CELLS[first](16, return_sequences=True), CELLS[second](16),
                            Dense(2, activation="softmax")], input_shape=x.shape[1:])
    assert model.layers[0].output_shape == (6, 16) and model.layers[1].output_shape == (16,)
    model.compile(optimizer=fnn.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy")
    before = model.evaluate(x, y)["loss"]
    hist = model.fit(x, y, batch_size=32, epochs=15, verbose=0)
    after = model.evaluate(x, y)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert after["loss"] < 0.5 * before and after["accuracy"] > 0.9


def test_stacked_gradients_match_numpy_ref(rng, monkeypatch):
    """The gradient flowing from the upper recurrent layer into the lower one (a full dy
    sequence), through a model's train step."""
    fnn.seed(2)
    x, y = _sequence_task(rng, n=40, t=4)
    results = []
    for be in (cpu, numpy_ref):
        model = fnn.Sequential([GRU(6, return_sequences=True), LSTM(5, return_sequences=True), SimpleRNN(4),
                                Dense(2, activation="softmax")], input_shape=(4, 2), dtype="float64")
        if results:
            model.set_weights(results[0][0])
        for layer in model.layers:
            monkeypatch.setattr(type(layer), "backend", property(lambda self, be=be: be))
        model.compile(optimizer=SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy")
        w0 = model.get_weights()
        loss = model.train_on_batch(x, y)
        results.append((w0, loss, model.get_weights()))
        monkeypatch.undo()
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-12)
    for a, b in zip(results[0][2], results[1][2]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# ---- threads -------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [20, 64, 100], ids=["one-chunk", "four-chunks", "uneven"])
@pytest.mark.parametrize("cell", CELLS)
def test_bit_identical_for_any_thread_count(cell, n, rng):
    layer = _layer(cell, 24, True, (5, 7), np.float32, rng)
    x = rng.standard_normal((n, 5, 7)).astype(np.float32)
    r = rng.standard_normal((n, 5, 24)).astype(np.float32)
    runs = []
    for threads in (1, 2, 3):
        fnn.set_num_threads(threads)
        runs.append(_run(layer, x, r))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


def test_training_bit_identical_for_any_thread_count(rng):
    x, y = _sequence_task(rng, n=96)
    weights = []
    for threads in (1, 2):
        fnn.set_num_threads(threads)
        fnn.seed(3)
        model = fnn.Sequential([LSTM(12, return_sequences=True), GRU(8), Dense(2, activation="softmax")],
                               input_shape=x.shape[1:])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=48, epochs=2, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


# ---- gradient clipping on a recurrent model ------------------------------------------------------

def _clip_model(x, y, **clip):
    """An RNN model with large recurrent weights (large gradients), SGD(lr=1) without momentum;
    the same initial weights at every call."""
    fnn.seed(4)
    model = fnn.Sequential([SimpleRNN(8, return_sequences=True), LSTM(6), Dense(2, activation="softmax")],
                           input_shape=x.shape[1:], dtype="float64")
    w = model.get_weights()
    w[1] = w[1] * 3.0            # a strongly recurrent first layer
    model.set_weights(w)
    model.compile(optimizer=SGD(learning_rate=1.0, **clip), loss="sparse_categorical_crossentropy")
    return model


def _raw_gradients(x, y):
    plain = _clip_model(x, y)
    w0 = plain.get_weights()
    plain.train_on_batch(x, y)
    return w0, [g.copy() for layer in plain.layers for g in layer.grads]


def test_clipvalue_on_rnn_model(rng):
    x, y = _sequence_task(rng, n=32, t=8)
    w0, raw = _raw_gradients(x, y)
    c = 0.5 * max(float(np.abs(g).max()) for g in raw)        # clips some elements, not all
    clipped = _clip_model(x, y, clipvalue=c)
    clipped.train_on_batch(x, y)
    got = [g for layer in clipped.layers for g in layer.grads]
    for g_raw, g_clip, w_start, w_end in zip(raw, got, w0, clipped.get_weights()):
        np.testing.assert_array_equal(g_clip, np.clip(g_raw, -c, c))
        np.testing.assert_allclose(w_end, w_start - np.clip(g_raw, -c, c), rtol=1e-12, atol=1e-15)


def test_clipnorm_on_rnn_model(rng):
    x, y = _sequence_task(rng, n=32, t=8)
    w0, raw = _raw_gradients(x, y)
    norms = [float(np.linalg.norm(g)) for g in raw]
    c = float(np.median(norms))                               # some weights clipped, some not
    assert max(norms) > c and min(norms) < c
    clipped = _clip_model(x, y, clipnorm=c)
    clipped.train_on_batch(x, y)
    got = [g for layer in clipped.layers for g in layer.grads]
    for g_raw, norm, g_clip, w_start, w_end in zip(raw, norms, got, w0, clipped.get_weights()):
        expect = g_raw * (c / norm) if norm > c else g_raw    # per weight array, as Keras
        np.testing.assert_allclose(g_clip, expect, rtol=1e-12, atol=1e-15)
        assert np.linalg.norm(g_clip) <= c * (1 + 1e-12)
        np.testing.assert_allclose(w_end, w_start - expect, rtol=1e-12, atol=1e-15)


def test_clipnorm_bounds_updates_of_a_long_rnn(rng):
    """A strongly recurrent SimpleRNN over 20 steps: with clipnorm every update moves each
    weight array by at most lr * clipnorm, so after k steps no weight has moved by more than
    k * lr * clipnorm, and training stays finite."""
    x, y = _sequence_task(rng, n=64, t=20)
    fnn.seed(5)
    model = fnn.Sequential([SimpleRNN(16), Dense(2, activation="softmax")], input_shape=x.shape[1:])
    w = model.get_weights()
    model.set_weights([w[0] * 4, w[1] * 1.5] + w[2:])
    w_start = model.get_weights()
    model.compile(optimizer=SGD(learning_rate=2.0, clipnorm=0.05), loss="sparse_categorical_crossentropy")
    model.train_on_batch(x[:16], y[:16])
    norms = [np.linalg.norm(g) for layer in model.layers for g in layer.grads]
    assert max(norms) == pytest.approx(0.05, rel=1e-5)        # the largest gradients were clipped
    hist = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()
    moved = max(float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), w_start))
    assert moved <= 13 * 2.0 * 0.05 * (1 + 1e-5)


# ---- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_bad_inputs_raise_value_error_naming_the_layer(cell):
    layer = CELLS[cell](4, name="my_rnn")
    with pytest.raises(ValueError, match="my_rnn"):
        layer.forward(np.zeros((2, 5), np.float32))           # rank 2: no time axis
    with pytest.raises(ValueError, match="my_rnn"):
        CELLS[cell](4, name="my_rnn").forward(np.zeros((2, 3, 5, 1), np.float32))
    layer.forward(np.zeros((2, 3, 5), np.float32))
    with pytest.raises(ValueError, match="my_rnn"):
        layer.forward(np.zeros((2, 3, 6), np.float32))        # feature mismatch
    with pytest.raises(ValueError, match="my_rnn"):
        layer.forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="my_rnn"):
        layer.backward(np.zeros((2, 3, 4), np.float32))       # output gradient of the wrong shape
    with pytest.raises(ValueError, match="my_rnn"):
        fnn.Sequential([CELLS[cell](4, name="my_rnn")], input_shape=(5,))
    with pytest.raises(ValueError, match="second"):           # a recurrent layer needs a sequence
        fnn.Sequential([CELLS[cell](4), CELLS[cell](4, name="second")], input_shape=(5, 3))
    model = fnn.Sequential([CELLS[cell](4)], input_shape=(5, 3))
    with pytest.raises(ValueError, match=r"\(N, 5, 3\)"):
        model.predict(np.zeros((2, 5, 4), np.float32))
    with pytest.raises(ValueError):
        CELLS[cell](0)
    with pytest.raises(TypeError):
        CELLS[cell](4, return_sequences="yes")


# ---- model files ---------------------------------------------------------------------------------

def test_save_load_round_trip(rng, tmp_path):
    fnn.seed(6)
    x, y = _sequence_task(rng, n=64)
    model = fnn.Sequential([GRU(8, return_sequences=True), LSTM(8, return_sequences=True), SimpleRNN(5),
                            Dense(2, activation="softmax")], input_shape=x.shape[1:])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "rnn.fnn"
    model.save(path)
    loaded = fnn.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in model.layers]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # training resumes identically (optimizer state saved)
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
