"""Conv2D: forward and every gradient against torch conv2d, the C kernels against the numpy
reference, finite-difference gradient checks through the layer harness, thread-count
invariance, input errors, and small CNN models (fit, save/load)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import check_layer, run_concurrently

import fastnn as fnn
from fastnn import _core
from fastnn.backend import cpu, numpy_ref
from fastnn.layers import Conv2D, Dense, Flatten, MaxPool2D

# (n, c, h, w, filters, kernel_size, stride, padding); the comments name the kernel's path
CASES = [
    (2, 1, 5, 5, 3, 1, 1, 0),                    # 1x1: the image is the column matrix
    (3, 3, 7, 9, 4, 3, 1, 1),                    # stride 1: wide columns, padded
    (2, 2, 8, 7, 5, (3, 5), (2, 1), (1, 2)),     # strided im2col, rectangular everything
    (2, 4, 9, 9, 2, 5, 2, "same"),
    (2, 3, 6, 8, 3, (2, 4), 1, "same"),          # even kernel: the extra padding at bottom/right
    (3, 8, 11, 7, 6, 3, 2, "valid"),
    (1, 5, 13, 13, 8, 5, 1, 2),
    (2, 6, 10, 10, 3, 1, 2, 0),                  # 1x1 with stride 2: im2col
    (2, 1, 28, 28, 16, 3, 1, 1),                 # the first layer of cnn64
    (2, 7, 5, 6, 3, (1, 3), (1, 2), (0, 1)),
    (2, 3, 7, 7, 4, (2, 3), 1, 0),               # stride 1 without padding
    (37, 3, 9, 9, 4, 3, 1, 1),                   # many image groups and blocks of images
    # the edges of AVX2's rule for the implicit forward (fnn_gemm_rows_take): 144 taps and rows of
    # whole vectors take it, 135 taps do not; 14 wide (16 lanes, as many as the wide columns) does
    # not in float; 12 wide does in double (3 vectors of 4); 7 wide does (two rows per call)
    (2, 16, 16, 16, 8, 3, 1, 1),
    (2, 15, 16, 16, 8, 3, 1, 1),
    (2, 16, 14, 14, 7, 3, 1, 1),
    (2, 17, 12, 12, 7, 3, 1, 1),
    (3, 16, 7, 7, 9, 3, 1, 1),
]
# large enough for tiles of output rows (the column buffer is capped) and, with 1x1, tiles of dy
BIG_CASES = [
    (2, 64, 40, 40, 8, 3, 1, 1),
    (2, 32, 50, 50, 4, 3, 2, 1),
    (2, 4, 40, 40, 64, 1, 1, 0),
]


def _pads(layer):
    return layer._pads


def _make(case, dtype, activation=None, use_bias=True):
    n, c, h, w, f, k, s, p = case
    layer = Conv2D(f, k, stride=s, padding=p, activation=activation, use_bias=use_bias)
    layer.build((c, h, w), dtype=dtype)
    return layer


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-4) if np.dtype(dtype) == np.float32 else dict(rtol=1e-10, atol=1e-10)


def _case_id(case):
    return "-".join(str(v).replace(" ", "") for v in case)


# ---- against torch -------------------------------------------------------------------------

@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("case", CASES + BIG_CASES[:1], ids=_case_id)
def test_conv2d_matches_torch(case, activation, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, c, h, w = case[:4]
    layer = _make(case, dtype, activation)
    wts = [rng.standard_normal(p.shape).astype(dtype) for p in layer.get_weights()]
    layer.set_weights(wts)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y = layer.forward(x, training=True)
    r = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(r)

    pt, pb, pl, pr = _pads(layer)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    wt = torch.from_numpy(wts[0].copy()).requires_grad_(True)
    bt = torch.from_numpy(wts[1].copy()).requires_grad_(True)
    zt = F.conv2d(F.pad(xt, (pl, pr, pt, pb)), wt, bt, stride=layer.stride)
    yt, rt = zt, r
    if activation == "relu":
        # torch's gradient through fastnn's ReLU mask: an output within rounding of 0 may have
        # the other sign in torch, and its mask would then move the input gradients it feeds
        # (576 of them here) by the full product, a difference of the kink, not of the kernels
        yt, rt = torch.relu(zt), r * (y > 0)
    (zt * torch.from_numpy(rt)).sum().backward()
    tol = _tol(dtype)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads[0], wt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads[1], bt.grad.numpy(), **tol)


@pytest.mark.parametrize("h, w, k, s, expected", [
    (7, 7, 3, 1, (7, 7)), (8, 8, 3, 2, (4, 4)), (7, 9, (2, 4), 2, (4, 5)), (5, 6, 4, 3, (2, 2)),
    (1, 1, 3, 1, (1, 1)),
])
def test_same_padding_output_size_as_keras(h, w, k, s, expected):
    layer = Conv2D(2, k, stride=s, padding="same")
    layer.build((1, h, w))
    assert layer.output_shape == (2,) + expected
    kh, kw = (k, k) if isinstance(k, int) else k
    pt, pb, pl, pr = layer._pads
    assert pb - pt in (0, 1) and pr - pl in (0, 1)            # any odd row/column at the bottom/right
    assert (expected[0] - 1) * (s if isinstance(s, int) else s[0]) + kh <= h + pt + pb


# ---- C kernels against the numpy reference ---------------------------------------------------

@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("case", CASES + BIG_CASES, ids=_case_id)
def test_cpu_matches_numpy_ref(case, relu, dtype, rng):
    n, c, h, w, f = case[:5]
    layer = _make(case, dtype)
    stride, pads = layer.stride, layer._pads
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal(layer.params[0].shape).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    out, mask = {}, None
    for be in (cpu, numpy_ref):
        y = np.empty((n,) + layer.output_shape, dtype=dtype)
        be.conv2d_fwd(x, wt, b, y, stride, pads, relu=relu)
        # both backwards masked by fastnn's forward (see test_conv2d_matches_torch: an output
        # within rounding of 0 may be positive in one backend and 0 in the other)
        mask = y if mask is None else mask
        dy = np.random.default_rng(7).standard_normal(y.shape).astype(dtype)
        dw, db, dx = np.empty_like(wt), np.empty_like(b), np.empty_like(x)
        be.conv2d_bwd(x, wt, dy, dw, db, dx, stride, pads, y=mask, relu=relu)
        out[be.name] = (y, dw, db, dx)
    for a, b_, what in zip(out["cpu"], out["numpy_ref"], ("y", "dw", "db", "dx")):
        np.testing.assert_allclose(a, b_, err_msg=what, **_tol(dtype))


def test_backward_without_input_gradient_or_bias(rng):
    x = rng.standard_normal((4, 3, 6, 6))
    w = rng.standard_normal((5, 3, 3, 3))
    dy = rng.standard_normal((4, 5, 6, 6))
    dw_ref, db_ref, dx_ref = np.empty_like(w), np.empty(5), np.empty_like(x)
    numpy_ref.conv2d_bwd(x, w, dy, dw_ref, db_ref, dx_ref, (1, 1), (1, 1, 1, 1))
    dw = np.empty_like(w)
    assert cpu.conv2d_bwd(x, w, dy, dw, None, None, (1, 1), (1, 1, 1, 1)) is None
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12 * np.abs(dw_ref).max())


def test_empty_batch_gives_zero_gradients():
    x = np.empty((0, 2, 5, 5))
    w = np.ones((3, 2, 3, 3))
    y = np.empty((0, 3, 3, 3))
    cpu.conv2d_fwd(x, w, None, y, (1, 1), (0, 0, 0, 0))
    dw, db = np.full_like(w, 7.0), np.full(3, 7.0)
    cpu.conv2d_bwd(x, w, y, dw, db, np.empty_like(x), (1, 1), (0, 0, 0, 0))
    assert not dw.any() and not db.any()


# ---- finite differences through the layer harness --------------------------------------------

def _preact(layer, x):
    ws = layer.get_weights()
    y = np.empty((x.shape[0],) + layer.output_shape)
    numpy_ref.conv2d_fwd(x, ws[0], ws[1] if len(ws) > 1 else None, y, layer.stride, layer._pads)
    return y


@pytest.mark.parametrize("make, shape", [
    (lambda: Conv2D(3, 3, padding=1, activation="relu"), (2, 5, 6)),
    (lambda: Conv2D(2, (2, 3), stride=(2, 1), padding="same", use_bias=False), (3, 5, 7)),
    (lambda: Conv2D(4, 1), (3, 4, 4)),
    (lambda: Conv2D(2, 3, stride=2, padding=(1, 0), activation="tanh"), (2, 7, 6)),
    (lambda: Conv2D(3, 2, activation="sigmoid"), (1, 4, 5)),
    (lambda: Conv2D(3, 3, padding="same", activation="softmax"), (2, 4, 4)),
    (lambda: Conv2D(2, 3, padding="valid", activation="leaky_relu"), (2, 5, 5)),
], ids=["relu", "rect-same-nobias", "1x1", "stride2-tanh", "sigmoid", "channel-softmax", "leaky"])
def test_conv2d_layer_harness(make, shape, rng, tmp_path):
    check_layer(make, shape, rng, kink=_preact, save_load_dir=tmp_path)


def test_channel_softmax_sums_to_one(rng):
    layer = Conv2D(4, 3, padding=1, activation="softmax")
    y = layer.forward(rng.standard_normal((2, 3, 5, 5)), training=False)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


# ---- threads -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", [(64, 16, 14, 14, 32, 3, 1, 1), (16, 1, 28, 28, 16, 3, 1, 1),
                                  (9, 3, 11, 11, 4, 3, 2, "same"), (3, 4, 40, 40, 64, 1, 1, 0),
                                  (3, 64, 40, 40, 8, 3, 1, 1), (1, 16, 14, 14, 32, 3, 1, 1),
                                  (1, 4, 40, 40, 64, 1, 1, 0), (1, 3, 30, 30, 4, 5, 2, 2),
                                  (8, 32, 16, 16, 64, 3, 1, 1), (6, 8, 7, 7, 16, 3, 1, 1)], ids=_case_id)
def test_results_do_not_depend_on_thread_count(case, rng):
    n, c, h, w, f = case[:5]
    layer = _make(case, np.float32, "relu")
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    dy = rng.standard_normal((n,) + layer.output_shape).astype(np.float32)
    got = []
    for threads in (1, 2, 3):
        fnn.set_num_threads(threads)
        y = layer.forward(x, training=True).copy()
        dx = layer.backward(dy).copy()
        got.append((y, dx, layer.grads[0].copy(), layer.grads[1].copy()))
    for other in got[1:]:
        for a, b in zip(got[0], other):
            np.testing.assert_array_equal(a, b)


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc", [
    (dict(filters=0, kernel_size=3), ValueError),
    (dict(filters=2.5, kernel_size=3), TypeError),
    (dict(filters=2, kernel_size=0), ValueError),
    (dict(filters=2, kernel_size=(3, 3, 3)), ValueError),
    (dict(filters=2, kernel_size="3"), TypeError),
    (dict(filters=2, kernel_size=3, stride=0), ValueError),
    (dict(filters=2, kernel_size=3, stride=(1, 0)), ValueError),
    (dict(filters=2, kernel_size=3, padding=-1), ValueError),
    (dict(filters=2, kernel_size=3, padding=(1, -2)), ValueError),
    (dict(filters=2, kernel_size=3, padding="full"), ValueError),
    (dict(filters=2, kernel_size=3, padding=None), TypeError),
    (dict(filters=2, kernel_size=3, activation="swish"), ValueError),
    (dict(filters=2, kernel_size=3, use_bias=1), TypeError),
])
def test_bad_constructor_arguments_name_the_layer(kwargs, exc):
    with pytest.raises(exc, match="Conv2D.*conv_named"):
        Conv2D(**kwargs, name="conv_named")


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match="conv_big.*kernel"):
        Conv2D(2, 5, name="conv_big").build((1, 4, 9))
    Conv2D(2, 5, padding=1).build((1, 3, 3))          # fits once padded
    model = fnn.Sequential([Conv2D(2, (3, 8), name="conv_wide")])
    with pytest.raises(ValueError, match="conv_wide"):
        model.predict(np.zeros((1, 1, 5, 5)))


def test_absurd_sizes_are_value_errors():
    with pytest.raises(ValueError, match="conv_huge"):
        Conv2D(2, 3, padding=10 ** 10, name="conv_huge").build((1, 4, 4))
    with pytest.raises(ValueError, match="conv_huge2"):
        Conv2D(2, 3, stride=2 ** 40, name="conv_huge2").build((1, 4, 4))
    with pytest.raises(ValueError):
        cpu.conv2d_workspace((1, 3, 8, 8), (4, 3, 3, 3), (1, 1), (10 ** 9,) * 4)


BIG = 2 ** 31 - 1


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("x_shape, w_shape, stride, pad", [
    ((1, 3, 8, 8), (4, 3, 3, 3), (1, 1), (10 ** 9,) * 4),        # c * hp * wp
    ((1, BIG, BIG, BIG), (4, BIG, BIG, BIG), (1, 1), (0,) * 4),  # c * kh * kw
    ((1, 1, 2 ** 20, 2 ** 20), (BIG, 1, 1, 2), (1, 1), (0,) * 4),  # f * columns
    ((1, 2 ** 16, 2 ** 16, 2 ** 16), (4, 2 ** 16, 2 ** 8, 2 ** 8), (1, 1), (0,) * 4),  # columns * c*kh*kw
    ((2 ** 40, 1, 2 ** 16, 2 ** 16), (1, 1, 1, 1), (1, 1), (0,) * 4),  # n * h * w
    ((1, 1, 8, 8), (1, 1, 3, 3), (BIG, BIG), (BIG,) * 4),        # strides and padding at the limit
])
def test_absurd_geometries_are_refused_without_overflow(backward, x_shape, w_shape, stride, pad):
    """Shapes whose workspace sizes would overflow int64 are refused; the C code bounds the products
    before forming them (a signed overflow there was caught by tools/sanitize.sh)."""
    try:
        need = _core.conv2d_workspace(backward, x_shape, w_shape, stride, pad, 2)
    except ValueError:
        return
    assert 0 <= need < 2 ** 62


@pytest.mark.parametrize("shape", [(3, 8), (8,), (1, 2, 3, 4)])
def test_wrong_rank_names_the_layer(shape):
    with pytest.raises(ValueError, match="conv_rank.*\\(N, C, H, W\\)"):
        Conv2D(2, 1, name="conv_rank").build(shape)


def test_channel_mismatch_names_the_layer_and_shapes(rng):
    layer = Conv2D(2, 3, name="conv_ch")
    layer.build((3, 8, 8))
    with pytest.raises(ValueError, match="conv_ch.*3, 8, 8.*\\(2, 4, 8, 8\\)"):
        layer.forward(rng.standard_normal((2, 4, 8, 8)))
    model = fnn.Sequential([Conv2D(2, 3, name="conv_m")], input_shape=(3, 8, 8))
    with pytest.raises(ValueError):
        model.predict(rng.standard_normal((2, 1, 8, 8)))


def test_kernel_binding_checks_shapes():
    x, w = np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError):       # wrong output shape
        cpu.conv2d_fwd(x, w, None, np.zeros((2, 4, 5, 5)), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError):       # channel mismatch
        cpu.conv2d_fwd(x, np.zeros((4, 2, 3, 3)), None, np.zeros((2, 4, 3, 3)), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError):       # bias length
        cpu.conv2d_fwd(x, w, np.zeros(3), np.zeros((2, 4, 3, 3)), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError):       # stride 0
        cpu.conv2d_fwd(x, w, None, np.zeros((2, 4, 3, 3)), (0, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError):       # workspace too small
        cpu.conv2d_fwd(x, w, None, np.zeros((2, 4, 3, 3)), (1, 1), (0, 0, 0, 0), ws=np.zeros(1))
    with pytest.raises(ValueError):       # relu without the forward output
        cpu.conv2d_bwd(x, w, np.zeros((2, 4, 3, 3)), np.zeros_like(w), None, None, (1, 1), (0, 0, 0, 0),
                       relu=True)
    with pytest.raises((ValueError, TypeError)):       # wrong rank
        cpu.conv2d_fwd(x[0], w, None, np.zeros((2, 4, 3, 3)), (1, 1), (0, 0, 0, 0))


# ---- models --------------------------------------------------------------------------------

def _cnn(dtype="float32"):
    return fnn.Sequential([
        Conv2D(6, 3, padding="same", activation="relu"), MaxPool2D(2),
        Conv2D(8, (3, 2), stride=(1, 2), padding=(1, 0), activation="relu"),
        Flatten(), Dense(3, activation="softmax"),
    ], input_shape=(1, 8, 8), dtype=dtype)


def _blobs(rng, n=96):
    """Three classes of 8x8 images: a bright row, a bright column or a bright diagonal."""
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    for i, k in enumerate(y):
        pos = rng.integers(1, 7)
        if k == 0:
            x[i, 0, pos, :] += 1.5
        elif k == 1:
            x[i, 0, :, pos] += 1.5
        else:
            x[i, 0] += 1.5 * np.eye(8, dtype=np.float32)
    return x, y


def test_small_cnn_trains(rng):
    fnn.seed(3)
    x, y = _blobs(rng)
    model = _cnn()
    model.compile(optimizer=fnn.optimizers.SGD(learning_rate=0.05, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    hist = model.fit(x, y, batch_size=16, epochs=15, verbose=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    assert model.evaluate(x, y)["accuracy"] > 0.9


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool", [2, (3, 2)])
def test_relu_mask_moved_into_the_pool_changes_no_bit(pool, dtype, rng, monkeypatch):
    """Conv2D(relu) -> MaxPool2D leaves the ReLU mask to the pool's smaller gradient; a linear
    Activation in between turns that off. Both must train to the same bits."""
    from fastnn.layers import Activation

    def model(split):
        fnn.seed(7)
        layers = [Conv2D(4, 3, padding=1, activation="relu"), MaxPool2D(pool),
                  Conv2D(5, 3, padding=1, activation="relu"), MaxPool2D(2), Flatten(), Dense(3)]
        if split:
            layers.insert(3, Activation())
            layers.insert(1, Activation())
        m = fnn.Sequential(layers, input_shape=(2, 12, 10), dtype=dtype)
        m.compile(optimizer=fnn.optimizers.SGD(learning_rate=0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
        return m

    x = rng.standard_normal((6, 2, 12, 10)).astype(dtype)
    x[0] = 0.0                                 # ties and exact zeros in the windows
    y = rng.integers(0, 3, 6)
    fused, plain = model(False), model(True)
    seen = []
    pool_backward = MaxPool2D._backward

    def spy(self, dy, need_dx):
        seen.append(self._mask_relu_input)
        return pool_backward(self, dy, need_dx)

    monkeypatch.setattr(MaxPool2D, "_backward", spy)
    for _ in range(3):
        assert fused.train_on_batch(x, y) == plain.train_on_batch(x, y)
    assert seen == [True, True, False, False] * 3      # fused model: masked in the pool; plain: not
    assert not fused.layers[0]._relu_premasked and not fused.layers[1]._mask_relu_input
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cnn_save_load_round_trip(rng, tmp_path):
    fnn.seed(4)
    x, y = _blobs(rng, 32)
    model = _cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    path = tmp_path / "cnn.fnn"
    model.save(path)
    loaded = fnn.load_model(path)
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    assert loaded.layers[2].kernel_size == (3, 2) and loaded.layers[2].stride == (1, 2)
    assert loaded.layers[2]._pads == (1, 1, 0, 0)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # training resumes identically from the file
    a = model.train_on_batch(x[:8], y[:8])
    b = loaded.train_on_batch(x[:8], y[:8])
    assert a == b


def test_predict_matches_batched_and_threaded(rng):
    model = _cnn()
    x = rng.standard_normal((40, 1, 8, 8)).astype(np.float32)
    full = model.predict(x)
    np.testing.assert_array_equal(model.predict(x, batch_size=7), full)
    np.testing.assert_array_equal(model.predict(x, batch_size=1), full)     # one image: split in bands
    fnn.set_num_threads(1)
    np.testing.assert_array_equal(model.predict(x), full)


def test_concurrent_predict_equals_serial(rng):
    fnn.set_num_threads(2)
    model = _cnn()
    batches = [rng.standard_normal((n, 1, 8, 8)).astype(np.float32) for n in (1, 3, 17, 64)]
    expected = [model.predict(x) for x in batches]

    def work(i):
        for r in range(5):
            k = (i + r) % len(batches)
            np.testing.assert_array_equal(model.predict(batches[k]), expected[k])

    run_concurrently(6, work)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_workspace_at_any_offset(dtype, rng):
    """The implicit path keeps int64 column offsets in the workspace; a workspace not aligned for
    them (a view one element in) takes the im2col path, with the same results."""
    x = rng.standard_normal((2, 3, 9, 9)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    need = _core.conv2d_workspace(False, x.shape, w.shape, (1, 1), (1, 1, 1, 1), 1)
    ws = np.empty(need + 1, dtype)
    y1, y2 = np.empty((2, 4, 9, 9), dtype), np.empty((2, 4, 9, 9), dtype)
    _core.conv2d_fwd(x, w, b, y1, (1, 1), (1, 1, 1, 1), True, ws[:need], 1)
    _core.conv2d_fwd(x, w, b, y2, (1, 1), (1, 1, 1, 1), True, ws[1:], 1)
    np.testing.assert_allclose(y2, y1, **_tol(dtype))
