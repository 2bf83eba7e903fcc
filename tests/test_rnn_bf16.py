"""Recurrent layers under "mixed_bfloat16": every product of SimpleRNN, LSTM and GRU takes bf16-rounded
inputs (x, W_x, h_{t-1}, W_h, the gate pre-activation gradients dG) with float32 sums; the gate math,
the states and the bias gradients stay float32.

The C results are checked against float64 on the rounded operands *teacher-forced*: each step's
reference is computed from the C's own h_{t-1} (forward) and the C's own rounded dG (backward, read
from its workspace), because a rounding of a computed value (h, dG) may go the other way when the
value lies within float32 error of a bf16 midpoint, and one such flip moves everything after it by a
bf16 amount. Teacher-forced, each output is a float64 sum of the same rounded terms, and the bound is
float32 accumulation's: k 2^-24 of the sum of |terms|."""
from __future__ import annotations

import ctypes
import time

import cuda_emu
import numpy as np
import pytest

import fastnn as fnn
from fastnn import _core
from fastnn.backend import numpy_ref
from fastnn.layers import GRU, LSTM, Dense, Embedding, SimpleRNN

CELLS = {"rnn": 0, "lstm": 1, "gru": 2}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
EPS = 2.0 ** -24

# (cell, n, t, f, h): edge shapes (a single sample, step, feature or unit; odd sizes) and one with
# two chunks of the batch (n >= 32), whose chunks run on their own threads
SHAPES = [(c, n, t, f, h) for c in CELLS for (n, t, f, h) in
          [(1, 1, 1, 1), (3, 5, 4, 7), (5, 1, 3, 2), (2, 6, 1, 1), (4, 3, 7, 17)]] + [("lstm", 40, 3, 5, 6)]


def rounded(x):
    """The bf16 value of each element of x, as float64."""
    x = np.asarray(x, np.float32)
    return numpy_ref.round_bf16(x, np.empty(x.shape, np.float32)).astype(np.float64)


def _inputs(rng, cell, n, t, f, h):
    k = GATES[cell] * h
    x = rng.standard_normal((n, t, f)).astype(np.float32)
    wx = (rng.standard_normal((f, k)) / np.sqrt(f)).astype(np.float32)
    wh = (rng.standard_normal((h, k)) / np.sqrt(h)).astype(np.float32)
    bx, bh = (0.3 * rng.standard_normal(k)).astype(np.float32), (0.3 * rng.standard_normal(k)).astype(np.float32)
    return x, wx, wh, bx, bh


def _c_run(cell, x, wx, wh, bx, bh, dy, seq, n_threads=1, bf16=True):
    """The C forward and backward: y, ws, the gradients and bws."""
    n, t, f = x.shape
    h = wh.shape[0]
    fw, bw = _core.recurrent_workspace(CELLS[cell], n, t, f, h)
    ws, bws = np.zeros(fw, np.float32), np.zeros(bw, np.float32)
    y = np.empty((n, t * h if seq else h), np.float32)
    _core.recurrent_fwd(CELLS[cell], x, wx, wh, bx, bh, y, ws, seq, n_threads, bf16)
    g = {"wx": np.empty_like(wx), "wh": np.empty_like(wh), "bx": np.empty_like(bx), "bh": np.empty_like(bh),
         "x": np.empty_like(x)}
    _core.recurrent_bwd(CELLS[cell], x, wx, wh, ws, dy.reshape(n, -1), g["wx"], g["wh"], g["bx"], g["bh"], g["x"],
                        bws, seq, n_threads, bf16)
    return y, ws, g, bws


def _sig(v):
    return 1 / (1 + np.exp(-v))


def _teacher_forward(cell, x, wx, wh, bx, bh, hs):
    """Float64 forward on the rounded operands, each step from the C's h_{t-1} (hs, (n, t, h), rounded
    here): the states, the gate values kept for backward, and each step's bound (float32 accumulation
    of the pre-activations, added up over the steps for the LSTM's cell state)."""
    n, t, _ = x.shape
    h = wh.shape[0]
    xq, wxq, whq = rounded(x), rounded(wx), rounded(wh)
    bx, bh = bx.astype(np.float64), bh.astype(np.float64)
    k = x.shape[2] + h + 2
    out, gates, bounds = np.empty((n, t, h)), [], []
    c, acc = np.zeros((n, h)), 0.0
    for s in range(t):
        hp = rounded(hs[:, s - 1]) if s > 0 else np.zeros((n, h))
        a, b = xq[:, s] @ wxq + bx, hp @ whq + bh
        scale = np.abs(xq[:, s]) @ np.abs(wxq) + np.abs(hp) @ np.abs(whq) + np.abs(bx) + np.abs(bh)
        acc = (acc if cell == "lstm" else 0.0) + 2 * k * EPS * scale.max()
        if cell == "rnn":
            hn = np.tanh(a + b)
            gates.append({"h": hn})
        elif cell == "lstm":
            z = a + b
            i, f_, g, o = _sig(z[:, :h]), _sig(z[:, h:2 * h]), np.tanh(z[:, 2 * h:3 * h]), _sig(z[:, 3 * h:])
            cp = c
            c = f_ * c + i * g
            hn = o * np.tanh(c)
            gates.append({"i": i, "f": f_, "g": g, "o": o, "c": c, "cp": cp})
        else:
            r = _sig(a[:, :h] + b[:, :h])
            z = _sig(a[:, h:2 * h] + b[:, h:2 * h])
            nn = np.tanh(a[:, 2 * h:] + r * b[:, 2 * h:])
            hp_raw = hs[:, s - 1].astype(np.float64) if s > 0 else np.zeros((n, h))
            hn = (1 - z) * nn + z * hp_raw
            gates.append({"r": r, "z": z, "n": nn, "bn": b[:, 2 * h:], "hp": hp_raw})
        out[:, s] = hn
        bounds.append(acc + 2e-6)      # + the gate functions' float32 error (C's tanh: 2e-7 relative)
    return out, gates, bounds


def _states(cell, x, wx, wh, bx, bh, n_threads=1):
    """The C's h_t of every step (a forward with return_sequences)."""
    n, t, _ = x.shape
    h = wh.shape[0]
    y = np.empty((n, t * h), np.float32)
    ws = np.zeros(_core.recurrent_workspace(CELLS[cell], *x.shape, h)[0], np.float32)
    _core.recurrent_fwd(CELLS[cell], x, wx, wh, bx, bh, y, ws, True, n_threads, True)
    return y.reshape(n, t, h)


@pytest.mark.parametrize("cell, n, t, f, h", SHAPES)
def test_forward_matches_rounded_float64_teacher_forced(rng, cell, n, t, f, h):
    x, wx, wh, bx, bh = _inputs(rng, cell, n, t, f, h)
    hs = _states(cell, x, wx, wh, bx, bh)
    want, _, bounds = _teacher_forward(cell, x, wx, wh, bx, bh, hs)
    for s in range(t):
        np.testing.assert_allclose(hs[:, s], want[:, s], rtol=0, atol=bounds[s], err_msg=f"step {s}")
    # return_sequences=False: the last state, the same bits
    y = np.empty((n, h), np.float32)
    ws = np.zeros(_core.recurrent_workspace(CELLS[cell], n, t, f, h)[0], np.float32)
    _core.recurrent_fwd(CELLS[cell], x, wx, wh, bx, bh, y, ws, False, 1, True)
    np.testing.assert_array_equal(y, hs[:, -1])


def _dg_from_workspace(cell, bws, n, t, h):
    """The C's rounded gate gradients (n, t, kg) from its backward workspace (rnn.c: dG first, at the
    first 64-byte line, rows of ldg, step s of sample i at row s n + i for a single chunk, n < 32)."""
    kg = h if cell == "rnn" else 4 * h
    ldg = (kg + 15) // 16 * 16
    ldg += 16 if ldg % 256 == 0 else 0
    at = (64 - bws.ctypes.data % 64) % 64 // 4
    return bws[at:at + n * t * ldg].reshape(t, n, ldg)[:, :, :kg].transpose(1, 0, 2).astype(np.float64)


def _split(cell, dg, h):
    """The x-side and h-side blocks of the gate gradients (a GRU's n block differs: dn_x, r dn_h)."""
    if cell != "gru":
        return dg, dg
    return np.concatenate([dg[..., :2 * h], dg[..., 3 * h:]], -1), dg[..., :3 * h]


def _gate_grad(cell, gates, d, dc, h):
    """Float64 pre-activation gradients of one step for dL/dh_t = d: (x side, h side, direct part of
    dL/dh_{t-1}, LSTM dL/dc_{t-1})."""
    if cell == "rnn":
        v = d * (1 - gates["h"] ** 2)
        return v, v, 0, None
    if cell == "lstm":
        i, f_, g, o, c, cp = (gates[k] for k in ("i", "f", "g", "o", "c", "cp"))
        tc = np.tanh(c)
        dcc = dc + d * o * (1 - tc ** 2)
        v = np.concatenate([dcc * g * i * (1 - i), dcc * cp * f_ * (1 - f_), dcc * i * (1 - g ** 2),
                            d * tc * o * (1 - o)], -1)
        return v, v, 0, dcc * f_
    r, z, nn, bn, hp = gates["r"], gates["z"], gates["n"], gates["bn"], gates["hp"]
    dn = d * (1 - z) * (1 - nn ** 2)
    dr, dz = dn * bn * r * (1 - r), d * (hp - nn) * z * (1 - z)
    return np.concatenate([dr, dz, dn], -1), np.concatenate([dr, dz, dn * r], -1), d * z, None


@pytest.mark.parametrize("seq", [True, False])
@pytest.mark.parametrize("cell, n, t, f, h", [s for s in SHAPES if s[1] < 32])
def test_backward_matches_rounded_float64_teacher_forced(rng, cell, n, t, f, h, seq):
    x, wx, wh, bx, bh = _inputs(rng, cell, n, t, f, h)
    dy = rng.standard_normal((n, t, h) if seq else (n, h)).astype(np.float32)
    hs = _states(cell, x, wx, wh, bx, bh)
    _, gates, _ = _teacher_forward(cell, x, wx, wh, bx, bh, hs)
    _, _, got, bws = _c_run(cell, x, wx, wh, bx, bh, dy, seq)
    dg = _dg_from_workspace(cell, bws, n, t, h)
    np.testing.assert_array_equal(dg, rounded(dg))          # rounded to bf16 in place
    dgx, dgh = _split(cell, dg, h)
    # the products of the rounded operands: dx, dW_x, dW_h
    xq, wxq, whq = rounded(x), rounded(wx), rounded(wh)
    hq = np.concatenate([np.zeros((n, 1, h)), rounded(hs[:, :-1])], 1)

    def close(name, got_v, want, scale, k):
        excess = np.abs(got_v - want) / (2 * (k + 2) * EPS * scale + 1e-30)
        assert excess.max() <= 1, (name, excess.max())

    close("dx", got["x"], dgx @ wxq.T, np.abs(dgx) @ np.abs(wxq).T, wxq.shape[1])
    close("dW_x", got["wx"], np.einsum("ntf,ntk->fk", xq, dgx), np.einsum("ntf,ntk->fk", np.abs(xq), np.abs(dgx)),
          n * t)
    close("dW_h", got["wh"], np.einsum("nth,ntk->hk", hq, dgh), np.einsum("nth,ntk->hk", np.abs(hq), np.abs(dgh)),
          n * t)
    # dG against the gate math in float64 from the C's own dG_{t+1} (rounded): within one bf16 step of
    # the float64 value and equal to its rounding almost everywhere; the bias gradients are the sums
    # of the unrounded values
    want_dg, sums, dnext, dc, direct = [], [np.zeros(dgx.shape[-1]), np.zeros(dgh.shape[-1])], 0, 0, 0
    for s in reversed(range(t)):
        d = dnext + direct + (dy[:, s] if seq else (dy if s == t - 1 else 0))
        vx, vh, direct, dc = _gate_grad(cell, gates[s], d, dc, h)
        want_dg.insert(0, (vx, vh))
        sums[0] += vx.sum(0)
        sums[1] += vh.sum(0)
        dnext = dgh[:, s] @ whq.T
    wx_all = np.stack([v[0] for v in want_dg], 1)
    wh_all = np.stack([v[1] for v in want_dg], 1)
    for have, want in ((dgx, wx_all), (dgh, wh_all)):
        assert np.all(np.abs(have - want) <= 2.0 ** -7 * np.abs(want) + 1e-6)
        # float32 and float64 gate math round differently only near a bf16 tie: rare, so at most
        # 2 % of the values, or two of a small array (one in 12 failed 2 % on 13 % of seeds)
        assert np.sum(have != rounded(want)) <= max(2, 0.02 * have.size)
    for name, have, want, ref in (("db_x", got["bx"], sums[0], wx_all), ("db_h", got["bh"], sums[1], wh_all)):
        np.testing.assert_allclose(have, want, rtol=0, atol=3e-5 * np.abs(ref).sum((0, 1)).max() + 1e-6,
                                   err_msg=name)


@pytest.mark.parametrize("cell", list(CELLS))
def test_bf16_path_differs_from_float32(rng, cell):
    """A no-op flag would pass the checks above only if they were loose: the bf16 results differ from
    the float32 ones by far more than those bounds."""
    x, wx, wh, bx, bh = _inputs(rng, cell, 6, 5, 9, 11)
    dy = rng.standard_normal((6, 5, 11)).astype(np.float32)
    a = _c_run(cell, x, wx, wh, bx, bh, dy, True, bf16=True)
    b = _c_run(cell, x, wx, wh, bx, bh, dy, True, bf16=False)
    assert np.abs(a[0] - b[0]).max() > 1e-4
    for k in ("x", "wx", "wh"):
        assert np.abs(a[2][k] - b[2][k]).max() > 1e-4 * np.abs(b[2][k]).max(), k


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("n", [5, 40, 70])
def test_same_bits_for_one_and_two_threads(rng, cell, n):
    x, wx, wh, bx, bh = _inputs(rng, cell, n, 4, 6, 9)
    dy = rng.standard_normal((n, 4, 9)).astype(np.float32)
    for seq in (True, False):
        d = dy if seq else np.ascontiguousarray(dy[:, -1])
        one, two = _c_run(cell, x, wx, wh, bx, bh, d, seq, 1), _c_run(cell, x, wx, wh, bx, bh, d, seq, 2)
        np.testing.assert_array_equal(one[0], two[0])
        for k in one[2]:
            np.testing.assert_array_equal(one[2][k], two[2][k], err_msg=k)


@pytest.mark.parametrize("cell", list(CELLS))
def test_numpy_ref_computes_the_same_rounded_products(rng, cell):
    """numpy_ref's bf16 recurrence in float64 against the C's: end to end (no teacher forcing), so a
    rounding may flip and carry through the later steps; the gap must still be far below the gap to
    float32 numerics. A flip is rare (the gap ratio reached 0.1 in 0.75 % of 400 draws for GRU, at
    most 0.52), so over 5 draws at most one may reach 0.1 and none the float32 gap."""
    n, t, f, h = 4, 5, 6, 7
    flipped = 0
    for _ in range(5):
        x, wx, wh, bx, bh = _inputs(rng, cell, n, t, f, h)
        dy = rng.standard_normal((n, t, h)).astype(np.float32)
        y, _, got, _ = _c_run(cell, x, wx, wh, bx, bh, dy, True)
        ref = {}
        for bf16 in (True, False):
            a = [v.astype(np.float64) for v in (x, wx, wh, bx, bh)]
            ws = np.zeros(numpy_ref.recurrent_workspace(cell, n, t, f, h)[0])
            yr = numpy_ref.recurrent_fwd(cell, *a, np.empty((n, t, h)), ws, True, bf16=bf16)
            g = {k: np.empty(v.shape) for k, v in got.items()}
            numpy_ref.recurrent_bwd(cell, a[0], a[1], a[2], ws, dy.astype(np.float64), g["wx"], g["wh"], g["bx"],
                                    g["bh"], g["x"], None, True, bf16=bf16)
            ref[bf16] = {"y": yr.reshape(n, -1), **g}
        ratio = 0.0
        for k, v in {"y": y, **got}.items():
            near, far = np.abs(v - ref[True][k]).max(), np.abs(v - ref[False][k]).max()
            assert near < far, (k, near, far)
            ratio = max(ratio, near / far)
        flipped += ratio >= 0.1
    assert flipped <= 1


def test_float64_and_table_reject_bf16(rng):
    x, wx, wh, bx, bh = (v.astype(np.float64) for v in _inputs(rng, "lstm", 2, 3, 4, 5))
    fw, bw = _core.recurrent_workspace(1, 2, 3, 4, 5)
    y, ws = np.empty((2, 5)), np.zeros(fw)
    with pytest.raises(ValueError, match="float32"):
        _core.recurrent_fwd(1, x, wx, wh, bx, bh, y, ws, False, 1, True)
    g = [np.empty_like(v) for v in (wx, wh, bx, bh, x)]
    with pytest.raises(ValueError, match="float32"):
        _core.recurrent_bwd(1, x, wx, wh, ws, np.zeros((2, 5)), *g, np.zeros(bw), False, 1, True)
    from fastnn.backend import cuda as cuda_backend
    with pytest.raises(ValueError, match="float32"):
        cuda_backend.recurrent_fwd("lstm", x, wx, wh, bx, bh, y, ws, False, bf16=True)


def test_c_entries_reject_bf16_for_float64_tables_and_unknown_flags(rng):
    """The C entries themselves (the bindings check first): FNN_RNN_BF16 on the float64 entries and on
    the table entries, and an unknown flag bit, give FNN_ERR_ARG before the output is written."""
    lib = ctypes.CDLL(_core.__file__)
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    n, t, f, h = 2, 3, 4, 5

    def call(entry, dtype, flags):
        x, wx, wh, bx, bh = (v.astype(dtype) for v in _inputs(rng, "lstm", n, t, f, h))
        ws = np.zeros(_core.recurrent_workspace(1, n, t, f, h)[0], dtype)
        y = np.full((n, h), 7, dtype)
        fn = getattr(lib, entry)
        fn.argtypes = [ctypes.c_int, i64, i64, i64, i64] + [vp] * 7 + [ctypes.c_int]
        st = fn(flags, n, t, f, h, *(a.ctypes.data for a in (x, wx, wh, bx, bh, y, ws)), 1)
        return st, np.all(y == 7)

    assert call("fnn_lstm_fwd_f32", np.float32, 2) == (0, False)          # FNN_RNN_BF16 = 2, accepted
    assert call("fnn_lstm_fwd_f64", np.float64, 2) == (-1, True)
    assert call("fnn_lstm_fwd_f32", np.float32, 4) == (-1, True)
    table = lib.fnn_recurrent_table_fwd_f32
    table.argtypes = [ctypes.c_int] * 2 + [i64] * 4 + [vp, vp, i64, vp, vp, vp, vp, ctypes.c_int]
    idx = np.zeros((n, t), np.int64)
    p, wh, bh = np.zeros((3, 4 * h), np.float32), np.zeros((h, 4 * h), np.float32), np.zeros(4 * h, np.float32)
    y, ws = np.full((n, h), 7, np.float32), np.zeros(_core.recurrent_workspace(1, n, t, 0, h)[0], np.float32)
    ptr = [a.ctypes.data for a in (idx, p)] + [4 * h] + [a.ctypes.data for a in (wh, bh, y, ws)]
    assert table(1, 2, n, t, h, 3, *ptr, 1) == -1 and np.all(y == 7)
    assert table(1, 0, n, t, h, 3, *ptr, 1) == 0


def _seq_model(dtype, cells=("lstm", "gru", "rnn")):
    kinds = {"rnn": SimpleRNN, "lstm": LSTM, "gru": GRU}
    body = [kinds[c](7, return_sequences=i + 1 < len(cells)) for i, c in enumerate(cells)]
    return fnn.Sequential(body + [Dense(3, activation="softmax")], input_shape=(5, 4), dtype=dtype)


def test_layers_plans_and_training_follow_the_policy(rng):
    """The layers pass the policy to the kernels (a model's forward equals the bf16 kernels'), the
    predict plan gives the layer path's bits, and an Embedding in front keeps the per-step path."""
    fnn.seed(3)
    model = _seq_model("mixed_bfloat16", ("lstm",))
    x = rng.standard_normal((6, 5, 4)).astype(np.float32)
    wx, wh, bx, bh = model.layers[0].get_weights()
    y = np.empty((6, 7), np.float32)
    ws = np.zeros(_core.recurrent_workspace(1, 6, 5, 4, 7)[0], np.float32)
    _core.recurrent_fwd(1, x, wx, wh, bx, bh, y, ws, False, 1, True)
    np.testing.assert_array_equal(model.layers[0].forward(x), y)
    model = _seq_model("mixed_bfloat16")
    model.compile("adam", "sparse_categorical_crossentropy")
    labels = rng.integers(0, 3, 6)
    for _ in range(2):
        model.train_on_batch(x, labels)
        layer_path = x
        for layer in model.layers:
            layer_path = layer.forward(layer_path)
        np.testing.assert_array_equal(model.predict(x, batch_size=6), layer_path)
    emb = fnn.Sequential([Embedding(50, 4), LSTM(6), Dense(2, activation="softmax")], input_shape=(30,),
                         dtype="mixed_bfloat16")
    emb.compile("sgd", "sparse_categorical_crossentropy")
    idx = rng.integers(0, 50, (40, 30))
    loss = emb.train_on_batch(idx, rng.integers(0, 2, 40))
    assert np.isfinite(loss) and emb.layers[1]._embedded is None


def test_cuda_backend_matches_cpu(rng, monkeypatch):
    """The CUDA backend (CuPy emulator) rounds the same operands: the CPU's results up to float32
    order (and the odd flipped rounding), far closer than the float32 model. Compared over all the
    weights at once: a bias that barely moved in two steps differs from the float32 model's by as
    little as one flipped bf16 rounding (seen: 1.6e-5 against 1.1e-5 on a bias of 0.006)."""
    cuda_emu.install(monkeypatch)
    from fastnn.backend import cuda as cuda_backend
    monkeypatch.setattr(cuda_backend, "_state", {"cp": None, "module": None, "fns": {}, "geo": {}, "scratch": {}})
    x = rng.standard_normal((8, 5, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 8)
    weights = {}
    for name, dtype, device in (("cpu", "mixed_bfloat16", "cpu"), ("gpu", "mixed_bfloat16", "cuda"),
                                ("f32", "float32", "cuda")):
        fnn.seed(5)
        model = _seq_model(dtype)
        model.compile("sgd", "sparse_categorical_crossentropy")
        if device == "cuda":
            model.to("cuda")
        for _ in range(2):
            model.train_on_batch(x, labels)
        model.to("cpu")
        weights[name] = model.get_weights()
    cpu, gpu, f32 = (np.concatenate([w.ravel() for w in weights[k]]) for k in ("cpu", "gpu", "f32"))
    near, far = np.abs(gpu - cpu).max(), np.abs(f32 - cpu).max()
    assert near <= 1e-5 * max(1.0, np.abs(cpu).max()) or near < 0.05 * far, (near, far)


def test_digits_lstm_reaches_float32_accuracy_within_half_a_point(capsys):
    """The digits_lstm demo (about 3.5 s a run here), mean test accuracy over seeds 0 and 1.
    Measured on this code (AMD EPYC Zen 1, `ref` bf16 variant), float32 -> mixed_bfloat16:
    0.9822 -> 0.9756 with seed 0 (3 of the 450 test samples: one run alone misses the half
    point), 0.9778 -> 0.9800, 0.9778 -> 0.9889, 0.9733 -> 0.9800 and 0.9800 -> 0.9800 with seeds
    1 to 4. The first two seeds, not a chosen one."""
    from fastnn import demo
    acc = {"float32": 0.0, "mixed_bfloat16": 0.0}
    start = time.perf_counter()
    for seed in (0, 1):
        for dt in acc:
            fnn.set_default_dtype(dt)
            fnn.seed(seed)
            try:
                acc[dt] += demo.digits_lstm(verbose=0) / 2
            finally:
                fnn.set_default_dtype("float32")
    assert acc["mixed_bfloat16"] >= acc["float32"] - 0.005, (acc, time.perf_counter() - start)
