"""RandomFlip, RandomTranslation and GaussianNoise: kernels against numpy_ref (flips and shifts bit
for bit), exact adjoints, thread-count invariance, statistics of the draws, identity at inference,
the stream from fnn.seed and through model files, float64 gradient checks, the CUDA kernels on the
emulator, and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_grad_close, check_layer, numeric_grad
from test_cuda import cuda  # noqa: F401  (fixture: the CUDA backend, emulated or on a device)

import fastnn as fnn
from fastnn import _core
from fastnn import layers as L
from fastnn.backend import cpu, numpy_ref

FLAGS = [1, 2, 3]
IMAGES = [(1, 1, 1, 1), (3, 2, 4, 5), (7, 3, 1, 9), (5, 1, 8, 1), (16, 3, 11, 13), (2, 4, 33, 17)]


def _x(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _flip(be, x, flags, seed, offset):
    return be.random_flip(x, flags, seed, offset, np.empty_like(x))


def _shift(be, x, mh, mw, seed, offset, adjoint=False, fill=0.0):
    return be.random_translate(x, mh, mw, seed, offset, adjoint, fill, np.empty_like(x))


def _maxes(shape):
    h, w = shape[2:]
    return [(0, 0), (h - 1, w - 1), (h // 2, w // 3)]


# ---- kernels against numpy_ref -----------------------------------------------------------------

@pytest.mark.parametrize("shape", IMAGES)
@pytest.mark.parametrize("flags", FLAGS)
def test_flip_matches_numpy_ref_bit_for_bit(shape, flags, dtype, rng):
    x = _x(rng, shape, dtype)
    for seed, offset in ((0, 0), (12345, 2**64 - 2), (2**63 + 5, 2**32 - 1)):
        np.testing.assert_array_equal(_flip(cpu, x, flags, seed, offset), _flip(numpy_ref, x, flags, seed, offset))


@pytest.mark.parametrize("shape", IMAGES)
def test_translate_matches_numpy_ref_bit_for_bit(shape, dtype, rng):
    x = _x(rng, shape, dtype)
    for mh, mw in _maxes(shape):
        for seed, offset in ((3, 0), (2**63 + 1, 2**64 - 3)):
            for adjoint, fill in ((False, 0.0), (False, -2.5), (True, 7.0)):
                got = _shift(cpu, x, mh, mw, seed, offset, adjoint, fill)
                want = _shift(numpy_ref, x, mh, mw, seed, offset, adjoint, fill)
                np.testing.assert_array_equal(got, want, err_msg=f"max ({mh}, {mw}) adjoint={adjoint}")


@pytest.mark.parametrize("n", [0, 1, 7, 1000, 40_001])
def test_noise_matches_numpy_ref(n, dtype, rng):
    x = _x(rng, n, dtype)
    for stddev, seed, offset in ((1.0, 1, 0), (0.3, 2**62, 2**64 - 1), (0.0, 5, 9)):
        got = cpu.gaussian_noise(x, stddev, seed, offset, np.empty_like(x))
        want = numpy_ref.gaussian_noise(x, stddev, seed, offset, np.empty_like(x))
        # double libm (C) against NumPy's log/cos: a few float64 ulps, then the same rounding
        tol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    if n:
        y = cpu.gaussian_noise(x, 0.0, 3, 0, np.empty_like(x))
        np.testing.assert_array_equal(y, x)


def test_decisions_do_not_depend_on_the_dtype(rng):
    x = rng.standard_normal((9, 2, 6, 7))
    for flags in FLAGS:
        np.testing.assert_array_equal(_flip(cpu, x.astype(np.float32), flags, 4, 10),
                                      _flip(cpu, x, flags, 4, 10).astype(np.float32))
    np.testing.assert_array_equal(_shift(cpu, x.astype(np.float32), 3, 4, 8, 1, fill=1.0),
                                  _shift(cpu, x, 3, 4, 8, 1, fill=1.0).astype(np.float32))
    x = rng.standard_normal(5000)
    n32 = cpu.gaussian_noise(np.zeros(5000, np.float32), 1.0, 2, 3, np.empty(5000, np.float32))
    n64 = cpu.gaussian_noise(np.zeros(5000), 1.0, 2, 3, np.empty(5000))
    np.testing.assert_array_equal(n32, n64.astype(np.float32))     # float32 noise = float64 noise rounded


@pytest.mark.parametrize("shape", [(64, 3, 32, 32), (3, 2, 129, 257)])
def test_kernels_bit_identical_for_any_thread_count(shape, dtype, rng):
    x = _x(rng, shape, dtype)
    outs = []
    for nt in (1, 2, 3):
        fnn.set_num_threads(nt)
        outs.append([_flip(cpu, x, 3, 11, 5), _shift(cpu, x, 7, 9, 11, 5, fill=0.5),
                     _shift(cpu, x, 7, 9, 11, 5, adjoint=True),
                     cpu.gaussian_noise(x, 0.7, 11, 5, np.empty_like(x))])
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


# ---- adjoints ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", IMAGES)
def test_flip_and_translate_adjoints_are_exact(shape, rng):
    # small integers: every product and sum is exact in float64, so the identity holds exactly
    x = rng.integers(-8, 9, shape).astype(np.float64)
    dy = rng.integers(-8, 9, shape).astype(np.float64)
    for be in (cpu, numpy_ref):
        for flags in FLAGS:
            assert np.sum(_flip(be, x, flags, 21, 4) * dy) == np.sum(x * _flip(be, dy, flags, 21, 4))
        for mh, mw in _maxes(shape):
            fx = _shift(be, x, mh, mw, 21, 4)                   # fill 0: the linear part
            assert np.sum(fx * dy) == np.sum(x * _shift(be, dy, mh, mw, 21, 4, adjoint=True))


def test_layer_backward_is_the_adjoint(rng):
    for make in (lambda: L.RandomFlip("horizontal_and_vertical"), lambda: L.RandomTranslation(0.4, 0.3)):
        layer = make()
        layer.build((2, 6, 7), dtype="float64")
        x = rng.integers(-8, 9, (5, 2, 6, 7)).astype(np.float64)
        dy = rng.integers(-8, 9, x.shape).astype(np.float64)
        y = layer.forward(x)
        assert np.sum(y * dy) == np.sum(x * layer.backward(dy))


@pytest.mark.parametrize("make", [lambda: L.RandomFlip("horizontal_and_vertical"),
                                  lambda: L.RandomTranslation(0.3, 0.4, fill_value=1.5), lambda: L.GaussianNoise(0.5)])
def test_gradients_float64_through_a_small_model(make, rng, float64_default):
    """dL/dx and dL/dW of a Conv2D model after each augmentation, with the draws held fixed: the
    layers are linear (translation: affine) in x, so the numeric gradient at the same stream
    position checks the backward pass."""
    fnn.seed(3)
    aug = make()
    model = fnn.Sequential([aug, L.Conv2D(2, 3, padding=1, activation="tanh"), L.Flatten(), L.Dense(3)],
                           input_shape=(2, 5, 6))
    x = rng.standard_normal((4, 2, 5, 6))
    r = rng.standard_normal((4, 3))
    start = aug.counter

    def loss():
        aug.counter = start                       # the same draws on every evaluation
        h = x
        for layer in model.layers:
            h = layer.forward(h, training=True)
        return float(np.sum(h * r))

    loss()
    d = r
    for layer in reversed(model.layers):
        d = layer.backward(d)
    conv = model.layers[1]
    dw = conv.grads[0].copy()
    assert aug.counter != start                   # the draws moved the stream
    assert_grad_close(d, numeric_grad(loss, x), f"{aug.name}: dL/dx")
    assert_grad_close(dw, numeric_grad(loss, conv.params[0]), f"{aug.name}: dL/dW")


@pytest.mark.parametrize("make, shape", [
    (lambda: L.RandomFlip(), (2, 4, 5)), (lambda: L.RandomFlip("vertical"), (1, 3, 3)),
    (lambda: L.RandomTranslation(0.5, 0.2, fill_value=-1.0), (2, 5, 6)), (lambda: L.GaussianNoise(0.2), (3, 4)),
])
def test_layers_through_the_harness(make, shape, rng, tmp_path):
    layer = check_layer(make, shape, rng, gradcheck=False, save_load_dir=tmp_path)
    assert layer.get_weights() == [] and layer.capturable


# ---- statistics ------------------------------------------------------------------------------------

def test_flip_rate_is_one_half_per_axis():
    n = 20000
    fw, fh = numpy_ref._flip_decisions(n, 3, 99, 7)
    assert abs(fw.mean() - 0.5) < 0.015 and abs(fh.mean() - 0.5) < 0.015
    assert abs((fw & fh).mean() - 0.25) < 0.015              # independent axes
    # and the C kernel flips exactly those samples
    x = np.arange(n * 2 * 3, dtype=np.float64).reshape(n, 1, 2, 3)
    y = _flip(cpu, x, 3, 99, 7)
    np.testing.assert_array_equal(y[:, 0, 0, 0] != x[:, 0, 0, 0], fw | fh)
    got_w = y[:, 0, 0, 0] - y[:, 0, 0, 2] > 0
    np.testing.assert_array_equal(got_w, fw)
    for flags, only in ((1, fw), (2, fh)):
        fwo, fho = numpy_ref._flip_decisions(n, flags, 99, 7)
        np.testing.assert_array_equal(fwo | fho, only)


def test_shifts_cover_exactly_the_allowed_range():
    layer = L.RandomTranslation(0.29, 0.5)
    layer.build((1, 10, 9), dtype="float64")
    assert layer.max_shifts == (2, 4)                  # floor(2.9), floor(4.5)
    n = 5000
    x = np.zeros((n, 1, 10, 9))
    x[:, 0, 4, 4] = 1.0                                # one marked pixel per sample
    y = layer.forward(x)
    idx = y.reshape(n, -1).argmax(axis=1)
    assert (y.reshape(n, -1).sum(axis=1) == 1).all()   # never shifted out (|shift| <= 4)
    sy, sx = idx // 9 - 4, idx % 9 - 4
    assert set(sy.tolist()) == set(range(-2, 3)) and set(sx.tolist()) == set(range(-4, 5))
    counts = np.bincount(sx + 4) / n
    assert np.abs(counts - 1 / 9).max() < 0.03
    want_sy, want_sx = numpy_ref._translate_shifts(n, 2, 4, layer.seed, 0)
    np.testing.assert_array_equal(sy, want_sy)
    np.testing.assert_array_equal(sx, want_sx)


def test_noise_mean_and_std(dtype):
    fnn.seed(5)
    layer = L.GaussianNoise(0.25)
    x = np.full((200, 500), 3.0, dtype)
    y = layer.forward(x)
    noise = (y - 3.0).astype(np.float64)
    assert abs(noise.mean()) < 0.003 and abs(noise.std() - 0.25) < 0.003
    z = noise.ravel() / 0.25
    assert abs(np.mean(z ** 3)) < 0.03 and abs(np.mean(z ** 4) - 3) < 0.06    # skew 0, kurtosis 3
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)), np.ones_like(y))


# ---- layers in models ------------------------------------------------------------------------------

def _model(dtype="float32"):
    return fnn.Sequential([L.RandomFlip("horizontal_and_vertical"), L.RandomTranslation(0.2, 0.2, fill_value=0.5),
                           L.GaussianNoise(0.1), L.Conv2D(3, 3, activation="relu"), L.Flatten(),
                           L.Dense(2, activation="softmax")], input_shape=(1, 8, 8), dtype=dtype)


def test_identity_at_inference(rng):
    fnn.seed(1)
    model = _model()
    x = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    for layer in model.layers[:3]:
        before = layer.counter
        assert layer.forward(x, training=False) is x
        assert layer.counter == before
    h = x
    for layer in model.layers:
        h = layer.forward(h, training=False)
    np.testing.assert_array_equal(model.predict(x), h)
    counters = [layer.counter for layer in model.layers[:3]]
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.evaluate(x, np.zeros(6, np.int64))
    assert [layer.counter for layer in model.layers[:3]] == counters
    model.train_on_batch(x, np.zeros(6, np.int64))
    assert [layer.counter for layer in model.layers[:3]] == [c + s for c, s in zip(counters, (6, 12, 2 * 6 * 64))]


def test_determinism_from_fnn_seed(rng):
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    outs = []
    for seed in (7, 7, 8):
        fnn.seed(seed)
        layers = [L.RandomFlip("horizontal_and_vertical"), L.RandomTranslation(0.3, 0.3), L.GaussianNoise(1.0)]
        outs.append([])
        for layer in layers:
            layer.build((1, 8, 8))
            outs[-1].append(layer.forward(x).copy())
    for a, b in zip(outs[0], outs[1]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(outs[0], outs[2]))


def test_training_bit_identical_for_any_thread_count(rng):
    x = rng.standard_normal((40, 1, 8, 8)).astype(np.float32)
    t = rng.integers(0, 2, 40)
    weights = []
    for nt in (1, 2):
        fnn.set_num_threads(nt)
        fnn.seed(2)
        model = _model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, t, batch_size=16, epochs=2, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_save_and_load_continue_the_stream(rng, tmp_path):
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    t = rng.integers(0, 2, 8)
    fnn.seed(4)
    a = _model()
    a.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    a.train_on_batch(x, t)
    a.save(tmp_path / "aug.npz")
    b = fnn.load_model(tmp_path / "aug.npz")
    for la, lb in zip(a.layers[:3], b.layers[:3]):
        assert (la.seed, la.counter) == (lb.seed, lb.counter) and la.counter > 0
        np.testing.assert_array_equal(la.forward(x), lb.forward(x))    # the next draws are equal
    for la, lb in zip(a.layers[:3], b.layers[:3]):
        assert la.get_config() == lb.get_config() and la.counter == lb.counter
    a.train_on_batch(x, t)
    b.train_on_batch(x, t)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_config_round_trip_and_summary(capsys):
    layers = [L.RandomFlip("vertical", name="flip"), L.RandomTranslation(0.1, 0.25, fill_value=-1.0, name="shift"),
              L.GaussianNoise(0.3, name="noise")]
    for layer in layers:
        clone = type(layer)(**layer.get_config())
        assert clone.get_config() == layer.get_config()
    assert repr(layers[1]) == "RandomTranslation(height_factor=0.1, width_factor=0.25, fill_value=-1.0)"
    model = fnn.Sequential(layers + [L.Flatten(), L.Dense(2)], input_shape=(3, 8, 8))
    model.summary()
    out = capsys.readouterr().out
    for name in ("flip", "RandomFlip", "shift", "RandomTranslation", "noise", "GaussianNoise"):
        assert name in out


def test_layers_train_a_model(rng):
    fnn.seed(0)
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    t = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    model = _model()
    model.compile(optimizer=fnn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    hist = model.fit(x, t, batch_size=16, epochs=5, verbose=0)
    assert np.isfinite(hist.history["loss"]).all()


# ---- bad inputs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, exc, match", [
    (lambda: L.RandomFlip("diagonal", name="aug_bad"), ValueError, "mode"),
    (lambda: L.RandomFlip(1, name="aug_bad"), TypeError, "mode"),
    (lambda: L.RandomTranslation(1.0, 0.1, name="aug_bad"), ValueError, "height_factor"),
    (lambda: L.RandomTranslation(0.1, -0.1, name="aug_bad"), ValueError, "width_factor"),
    (lambda: L.RandomTranslation("0.1", 0.1, name="aug_bad"), TypeError, "height_factor"),
    (lambda: L.RandomTranslation(0.1, 0.1, fill_value=float("nan"), name="aug_bad"), ValueError, "fill_value"),
    (lambda: L.RandomTranslation(0.1, 0.1, fill_value=float("inf"), name="aug_bad"), ValueError, "fill_value"),
    (lambda: L.GaussianNoise(-0.1, name="aug_bad"), ValueError, "stddev"),
    (lambda: L.GaussianNoise(float("inf"), name="aug_bad"), ValueError, "stddev"),
    (lambda: L.GaussianNoise(None, name="aug_bad"), TypeError, "stddev"),
])
def test_bad_arguments_name_the_layer(make, exc, match):
    with pytest.raises(exc, match=match) as info:
        make()
    assert "aug_bad" in str(info.value)


@pytest.mark.parametrize("make", [lambda: L.RandomFlip(name="aug_x"),
                                  lambda: L.RandomTranslation(0.1, 0.1, name="aug_x")])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (1, 2, 3, 4)])
def test_wrong_ranks_name_the_layer(make, shape):
    layer = make()
    with pytest.raises(ValueError, match="aug_x"):
        layer.build(shape)
    assert not layer.built
    with pytest.raises(ValueError, match="aug_x"):
        fnn.Sequential([make()], input_shape=shape)


def test_bad_batches_and_states(rng):
    layer = L.RandomFlip(name="aug_y")
    layer.build((1, 4, 4))
    with pytest.raises(ValueError, match="aug_y"):
        layer.forward(np.ones((2, 1, 4, 5), np.float32))
    with pytest.raises(ValueError, match="aug_y"):
        layer.load_state({"seed": "-1", "counter": "0"})
    with pytest.raises(ValueError, match="aug_y"):
        layer.load_state({"seed": "1"})
    with pytest.raises(ValueError, match="aug_y"):
        layer.load_state({"seed": "1", "counter": str(2**64)})
    layer.load_state({"seed": "1", "counter": str(2**64 - 1)})
    y = layer.forward(np.ones((3, 1, 4, 4), np.float32))      # the counter wraps modulo 2^64
    assert y.shape == (3, 1, 4, 4) and layer.counter == 2


def test_kernel_bindings_check_their_arguments(rng):
    x = np.ones((2, 1, 4, 5))
    with pytest.raises(ValueError):
        _core.random_flip(x, np.empty((2, 1, 4, 4)), 1, 0, 0)
    with pytest.raises(ValueError):
        _core.random_flip(x, x, 1, 0, 0)                  # in place
    with pytest.raises(ValueError):
        _core.random_flip(x, np.empty_like(x), 4, 0, 0)
    with pytest.raises(ValueError):
        _core.random_translate(x, np.empty_like(x), 4, 0, 0, 0, False, 0.0)     # max_h >= h
    with pytest.raises(ValueError):
        _core.random_translate(x, np.empty_like(x), -1, 0, 0, 0, False, 0.0)
    with pytest.raises(ValueError):
        _core.random_translate(x, np.empty_like(x), 1, 1, 0, 0, False, float("nan"))
    with pytest.raises(ValueError):
        _core.gaussian_noise(x.ravel(), np.empty(3), 1.0, 0, 0)
    with pytest.raises(ValueError):
        _core.gaussian_noise(x.ravel(), np.empty(40), -1.0, 0, 0)
    with pytest.raises(ValueError, match="dtype"):              # mixed dtypes (Cython's buffer check)
        _core.random_flip(x.astype(np.float32), np.empty_like(x), 1, 0, 0)


# ---- CUDA kernels (test_cuda's fixture: on the emulator, and on a real GPU when there is one) ---------

@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (5, 2, 6, 7), (9, 3, 5, 4)])
def test_cuda_kernels_match_the_cpu(cuda, shape, dtype, rng):  # noqa: F811
    x = _x(rng, shape, dtype)
    xd = cuda.asarray(x)
    for seed, offset in ((1, 0), (2**63 + 9, 2**64 - 3)):
        for flags in FLAGS:
            yd = cuda.random_flip(xd, flags, seed, offset, cuda.empty(shape, dtype))
            np.testing.assert_array_equal(cuda.to_numpy(yd), _flip(cpu, x, flags, seed, offset))
        for mh, mw in _maxes(shape):
            for adjoint, fill in ((False, 0.0), (False, 2.5), (True, 2.5)):
                yd = cuda.random_translate(xd, mh, mw, seed, offset, adjoint, fill, cuda.empty(shape, dtype))
                np.testing.assert_array_equal(cuda.to_numpy(yd), _shift(cpu, x, mh, mw, seed, offset, adjoint, fill))
        yd = cuda.gaussian_noise(xd, 0.5, seed, offset, cuda.empty(shape, dtype))
        tol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(cuda.to_numpy(yd), cpu.gaussian_noise(x, 0.5, seed, offset, np.empty_like(x)),
                                   rtol=tol, atol=tol)


def test_cuda_layers_match_the_cpu(cuda, dtype, rng):  # noqa: F811
    x = _x(rng, (6, 2, 7, 8), dtype)
    dy = _x(rng, x.shape, dtype)
    for make in (lambda: L.RandomFlip("horizontal_and_vertical"), lambda: L.RandomTranslation(0.4, 0.3, 1.0),
                 lambda: L.GaussianNoise(0.3)):
        host = fnn.Sequential([make()], input_shape=x.shape[1:], dtype=dtype)
        dev = fnn.Sequential([make()], input_shape=x.shape[1:], dtype=dtype)
        dev.to("cuda")
        h, d = host.layers[0], dev.layers[0]
        d.seed, d.counter = h.seed, h.counter
        y, yd = h.forward(x), d.forward(x)
        tol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(cuda.to_numpy(yd), y, rtol=tol, atol=tol)
        np.testing.assert_allclose(cuda.to_numpy(d.backward(dy)), h.backward(dy), rtol=tol, atol=tol)
        assert d.counter == h.counter
        np.testing.assert_array_equal(dev.predict(x), x)
