"""BatchNormalization and the global pooling layers: kernels against numpy_ref, float64 gradient
checks, PyTorch parity, thread-count invariance, non-trainable weights (optimizers, files,
summary), the fold into Dense/Conv2D in inference plans, training, and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_grad_close, check_layer, numeric_grad

import fastnn as fnn
from fastnn import _inference
from fastnn import layers as L
from fastnn.backend import cpu, numpy_ref

BN_SHAPES = {"2d": (5,), "3d": (4, 3), "4d": (3, 4, 5)}      # without the batch axis
FLAGS = [(True, True), (False, True), (True, False), (False, False)]


def _bn_arrays(rng, view, dtype, gamma=True, beta=True):
    ch = view[1]
    x = (rng.standard_normal(view) * 2 + 3).astype(dtype)
    g = rng.uniform(0.5, 1.5, ch).astype(dtype) if gamma else None
    b = rng.standard_normal(ch).astype(dtype) if beta else None
    return x, g, b


def _run_bn(be, x, g, b, dy, momentum=0.9, eps=1e-3):
    """Every output of the three ops on one backend."""
    ch, dt = x.shape[1], x.dtype
    y, sm, si = np.empty_like(x), np.empty(ch, dt), np.empty(ch, dt)
    mm, mv = np.linspace(-1, 1, ch).astype(dt), np.linspace(0.5, 2, ch).astype(dt)
    mm0, mv0 = mm.copy(), mv.copy()
    be.batchnorm_fwd_train(x, g, b, y, sm, si, mm, mv, momentum, eps)
    dx, dg, db = np.empty_like(x), np.empty(ch, dt), np.empty(ch, dt)
    be.batchnorm_bwd(x, g, sm, si, dy, dx, dg, db)
    yi = np.empty_like(x)
    be.batchnorm_fwd_infer(x, g, b, mm0, mv0, yi, eps)
    return {"y": y, "mean": sm, "invstd": si, "moving_mean": mm, "moving_var": mv, "dx": dx, "dgamma": dg,
            "dbeta": db, "y_infer": yi}


# ---- kernels ----------------------------------------------------------------------------------

@pytest.mark.parametrize("view", [(1, 1, 1), (7, 3, 1), (33, 17, 1), (129, 40, 1), (2, 5, 49), (3, 7, 17),
                                  (4, 3, 1023), (1, 2, 33)])
@pytest.mark.parametrize("gamma, beta", FLAGS)
def test_kernels_match_numpy_ref(view, gamma, beta, dtype, rng):
    x, g, b = _bn_arrays(rng, view, dtype, gamma, beta)
    dy = rng.standard_normal(view).astype(dtype)
    got, want = _run_bn(cpu, x, g, b, dy), _run_bn(numpy_ref, x, g, b, dy)
    tol = 2e-5 if dtype == np.float32 else 1e-11
    for key in got:
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=tol, atol=tol * scale, err_msg=key)


@pytest.mark.parametrize("view", [(4096, 24, 1), (64, 16, 256), (8, 3, 5000)])
def test_kernels_bit_identical_for_any_thread_count(view, dtype, rng):
    x, g, b = _bn_arrays(rng, view, dtype)
    dy = rng.standard_normal(view).astype(dtype)
    fnn.set_num_threads(1)
    one = _run_bn(cpu, x, g, b, dy)
    fnn.set_num_threads(2)
    two = _run_bn(cpu, x, g, b, dy)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)


def test_kernels_bit_identical_on_every_cpu_variant(dtype, rng):
    """The per-channel work has a baseline and an AVX2 build of the same arithmetic."""
    from conftest import ARCHS, arch_available

    from fastnn import _core
    x, g, b = _bn_arrays(rng, (16, 5, 99), dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    original, results = _core.arch_get(), []
    try:
        for name in (a for a in ARCHS if arch_available(a)):
            _core.arch_set(name)
            results.append(_run_bn(cpu, x, g, b, dy))
    finally:
        _core.arch_set(original)
    for other in results[1:]:
        for key in other:
            np.testing.assert_array_equal(other[key], results[0][key], err_msg=key)


@pytest.mark.parametrize("view", [(9, 20, 1), (3, 4, 50)])
def test_fused_relu_gives_the_bits_of_the_separate_relu(view, dtype, rng):
    """BatchNormalization -> ReLU in training: the kernels' relu flag against the ReLU applied
    (and its mask) separately, bit for bit, on every backend."""
    x, g, b = _bn_arrays(rng, view, dtype)
    x -= 3      # half the outputs negative
    dy = rng.standard_normal(view).astype(dtype)
    for be in (cpu, numpy_ref):
        ch = view[1]
        outs = []
        for fused in (True, False):
            y, sm, si = np.empty_like(x), np.empty(ch, dtype), np.empty(ch, dtype)
            be.batchnorm_fwd_train(x, g, b, y, sm, si, None, None, 0.9, 1e-3, relu=fused)
            if not fused:
                be.act_fwd(1, y, y)
            d = dy if fused else be.act_bwd(1, y, dy, np.empty_like(dy))
            dx, dg, db = np.empty_like(x), np.empty(ch, dtype), np.empty(ch, dtype)
            be.batchnorm_bwd(x, g, sm, si, d, dx, dg, db, y=y, relu=fused)
            outs.append((y, dx, dg, db))
        assert (outs[0][0] == 0).any()
        for a, c in zip(*outs):
            np.testing.assert_array_equal(a, c)


def test_fit_fuses_batchnorm_and_relu_without_changing_the_bits(rng):
    class UnfusedReLU(L.ReLU):      # only the ReLU class itself is fused
        pass

    results = []
    x, y = _data(rng, n=64)
    for relu in (L.ReLU, UnfusedReLU):
        fnn.seed(4)
        model = fnn.Sequential([L.Conv2D(4, 3), L.BatchNormalization(), relu(), L.GlobalAveragePooling2D(),
                                L.Dense(6), L.BatchNormalization(), relu(), L.Dense(3, activation="softmax")],
                               input_shape=(1, 8, 8))
        model.compile("adam")
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_variance_is_accurate_for_a_large_mean(rng):
    """The one-pass moments are taken around a shift (the channel's first value)."""
    x = (1e4 + rng.standard_normal((512, 3, 1))).astype(np.float32)
    out = _run_bn(cpu, x, None, None, np.zeros_like(x), momentum=0.0)
    want = x.astype(np.float64).var(axis=(0, 2))
    np.testing.assert_allclose(out["moving_var"], want, rtol=1e-3)


def test_kernel_bindings_check_their_arguments(rng):
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    y, v3, v2 = np.empty_like(x), np.ones(3, np.float32), np.ones(2, np.float32)
    with pytest.raises(ValueError, match="gamma"):
        cpu.batchnorm_fwd_train(x, v2, None, y, None, None, None, None, 0.9, 1e-3)
    with pytest.raises(ValueError, match="eps"):
        cpu.batchnorm_fwd_infer(x, None, None, v3, v3, y, 0.0)
    with pytest.raises(ValueError, match="momentum"):
        cpu.batchnorm_fwd_train(x, None, None, y, None, None, None, None, 1.5, 1e-3)
    with pytest.raises(ValueError, match="at least one sample"):
        cpu.batchnorm_fwd_train(x[:0], None, None, y[:0], None, None, None, None, 0.9, 1e-3)
    with pytest.raises(ValueError, match="differ"):
        cpu.batchnorm_fwd_infer(x, None, None, v3, v3, y[:2], 1e-3)


# ---- the layer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("rank", list(BN_SHAPES))
@pytest.mark.parametrize("center, scale", FLAGS)
def test_batchnorm_gradients_float64(rank, center, scale, rng):
    shape = BN_SHAPES[rank]
    layer = L.BatchNormalization(momentum=0.8, center=center, scale=scale)
    layer.build(shape, dtype="float64")
    names = (["gamma"] if scale else []) + (["beta"] if center else []) + ["moving_mean", "moving_variance"]
    assert layer.weight_names() == names and len(layer.params) == int(center) + int(scale)
    assert [g.shape for g in layer.grads] == [p.shape for p in layer.params]
    ws = [rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()]
    layer.set_weights(ws)
    x = rng.standard_normal((4,) + shape) * 1.5 + 0.5
    r = rng.standard_normal((4,) + shape)
    layer.forward(x, training=True)
    dx = np.array(layer.backward(r), copy=True)
    grads = [np.array(g, copy=True) for g in layer.grads]

    def loss():
        return float(np.sum(layer.forward(x, training=True) * r))

    assert_grad_close(dx, numeric_grad(loss, x), "dL/dx", rtol=1e-5, atol=1e-7)
    for i, p in enumerate(layer.params):
        assert_grad_close(grads[i], numeric_grad(loss, p), f"d{names[i]}", rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rank", list(BN_SHAPES))
def test_batchnorm_statistics_follow_api_formulas(rank, dtype, rng):
    shape = BN_SHAPES[rank]
    layer = L.BatchNormalization(momentum=0.7, epsilon=1e-2)
    layer.build(shape, dtype=dtype)
    gamma, beta = rng.uniform(0.5, 2, layer.params[0].shape), rng.standard_normal(layer.params[0].shape)
    layer.set_weights([gamma, beta, np.zeros_like(gamma), np.ones_like(gamma)])
    axes = (0, 2, 3) if len(shape) == 3 else tuple(range(len(shape)))
    bshape = (1, -1, 1, 1) if len(shape) == 3 else (1,) * len(shape) + (-1,)
    mm, mv = np.zeros_like(gamma), np.ones_like(gamma)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for _ in range(3):
        x = (rng.standard_normal((6,) + shape) * 3 + 1).astype(dtype)
        y = layer.forward(x, training=True)
        xd = x.astype(np.float64)
        mean, var = xd.mean(axis=axes), xd.var(axis=axes)
        want = (xd - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-2) * gamma.reshape(bshape) + \
            beta.reshape(bshape)
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
        mm, mv = 0.7 * mm + 0.3 * mean, 0.7 * mv + 0.3 * var
        np.testing.assert_allclose(layer.get_weights()[2], mm, rtol=tol, atol=tol)
        np.testing.assert_allclose(layer.get_weights()[3], mv, rtol=tol, atol=tol)
    x = rng.standard_normal((2,) + shape).astype(dtype)
    want = (x - mm.reshape(bshape)) / np.sqrt(mv.reshape(bshape) + 1e-2) * gamma.reshape(bshape) + \
        beta.reshape(bshape)
    np.testing.assert_allclose(layer.forward(x, training=False), want, rtol=10 * tol, atol=10 * tol)


def test_batchnorm_layer_basics(rng, tmp_path):
    layer = L.BatchNormalization(momentum=0.5, epsilon=0.01, center=False, name="bn")
    assert repr(layer) == "BatchNormalization(momentum=0.5, epsilon=0.01, center=False, scale=True)"
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((2, 3)))
    layer.build((3,), dtype="float64")
    assert [w.tolist() for w in layer.get_weights()] == [[1.0] * 3, [0.0] * 3, [1.0] * 3]
    assert layer.count_params() == 9 and layer.count_non_trainable_params() == 6
    model = fnn.Sequential([L.BatchNormalization(**layer.get_config())], input_shape=(3,), dtype="float64")
    ws = [rng.uniform(0.5, 1.5, 3) for _ in range(3)]
    model.set_weights(ws)
    model.save(tmp_path / "bn.npz")
    loaded = fnn.load_model(tmp_path / "bn.npz")
    for a, b in zip(loaded.get_weights(), ws):
        np.testing.assert_array_equal(a, b)
    x = rng.standard_normal((4, 3))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("make", [L.GlobalAveragePooling2D, L.GlobalMaxPooling2D])
@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 1, 1), (1, 7, 3)])
def test_global_pooling_through_the_harness(make, shape, rng, tmp_path):
    layer = check_layer(make, shape, rng, expected_output_shape=shape[:1], save_load_dir=tmp_path)
    assert layer.get_weights() == [] and layer.capturable


def test_global_pooling_values(dtype, rng):
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    layer = L.GlobalAveragePooling2D()
    layer.build(x.shape[1:], dtype=dtype)
    np.testing.assert_allclose(layer.forward(x, training=False), x.mean(axis=(2, 3)), rtol=tol, atol=tol)
    layer = L.GlobalMaxPooling2D()
    layer.build(x.shape[1:], dtype=dtype)
    np.testing.assert_array_equal(layer.forward(x), x.max(axis=(2, 3)))
    dx = layer.backward(np.ones((3, 4), dtype))
    flat = x.reshape(3, 4, -1)
    want = np.zeros_like(flat)
    np.put_along_axis(want, flat.argmax(axis=2)[..., None], 1, axis=2)
    np.testing.assert_array_equal(dx, want.reshape(x.shape))


# ---- bad inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, match", [
    ({"momentum": 1.0}, ValueError, "momentum"),
    ({"momentum": -0.1}, ValueError, "momentum"),
    ({"momentum": "0.9"}, TypeError, "momentum"),
    ({"epsilon": 0.0}, ValueError, "epsilon"),
    ({"epsilon": -1e-3}, ValueError, "epsilon"),
    ({"epsilon": float("nan")}, ValueError, "epsilon"),
    ({"center": 1}, TypeError, "center"),
    ({"scale": "yes"}, TypeError, "scale"),
    ({"name": 3}, TypeError, "name"),
])
def test_batchnorm_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match) as info:
        L.BatchNormalization(**kwargs, **({} if "name" in kwargs else {"name": "bn_bad"}))
    if "name" not in kwargs:
        assert "bn_bad" in str(info.value)


@pytest.mark.parametrize("make, shape", [
    (lambda: L.BatchNormalization(name="bn_x"), (2, 3, 4, 5)),
    (lambda: L.GlobalAveragePooling2D(name="bn_x"), (3, 4)),
    (lambda: L.GlobalMaxPooling2D(name="bn_x"), (5,)),
])
def test_wrong_ranks_name_the_layer(make, shape):
    layer = make()
    with pytest.raises(ValueError, match="bn_x"):
        layer.build(shape)
    assert not layer.built and layer.params == [] and layer.non_trainable == []
    with pytest.raises(ValueError, match="bn_x"):
        fnn.Sequential([make()], input_shape=shape)


def test_bad_batches_name_the_layer(rng):
    layer = L.BatchNormalization(name="bn_y")
    layer.build((3,))
    with pytest.raises(ValueError, match="bn_y"):
        layer.forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="bn_y"):
        layer.forward(np.ones((0, 3), np.float32), training=True)
    assert layer.forward(np.ones((0, 3), np.float32), training=False).shape == (0, 3)
    with pytest.raises(ValueError, match="bn_y"):
        layer.set_weights([np.ones(3)] * 3)
    with pytest.raises(ValueError, match="bn_y"):
        layer.set_weights([np.ones(3)] * 3 + [np.full(3, np.nan)])
    np.testing.assert_array_equal(layer.get_weights()[3], np.ones(3))     # nothing half-set


# ---- models: non-trainable weights, fit, files, summary ----------------------------------------

def _cnn(**bn):
    return [L.Conv2D(4, 3, padding="same"), L.BatchNormalization(**bn), L.ReLU(), L.MaxPool2D(2),
            L.Conv2D(6, 3, use_bias=False), L.BatchNormalization(**bn), L.ReLU(), L.GlobalAveragePooling2D(),
            L.Dense(8), L.BatchNormalization(**bn), L.Dense(3, activation="softmax")]


def _data(rng, n=48, shape=(1, 8, 8), k=3):
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    y = (x.reshape(n, -1)[:, :k].argmax(axis=1)).astype(np.int64)
    return x, y


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", lambda: fnn.optimizers.SGD(0.1, weight_decay=0.5)])
def test_optimizers_never_touch_moving_statistics(optimizer, rng):
    """A fit step changes the moving statistics only by the momentum rule, whatever the optimizer
    (weight decay and Adam's update with a zero gradient included)."""
    model = fnn.Sequential([L.Dense(5), L.BatchNormalization(momentum=0.6)], input_shape=(4,), dtype="float64")
    model.compile(optimizer=optimizer() if callable(optimizer) else optimizer, loss="mse")
    bn = model.layers[1]
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 5))
    for _ in range(3):
        w, b = model.layers[0].get_weights()
        mm, mv = bn.get_weights()[2:]
        z = x @ w + b
        model.train_on_batch(x, y)
        np.testing.assert_allclose(bn.get_weights()[2], 0.6 * mm + 0.4 * z.mean(0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(bn.get_weights()[3], 0.6 * mv + 0.4 * z.var(0), rtol=1e-12, atol=1e-12)
    assert not any(np.shares_memory(model._flat_params, a) for a in bn.non_trainable)


def test_summary_and_weights_of_a_cnn(rng, tmp_path, capsys):
    model = fnn.Sequential(_cnn(), input_shape=(1, 8, 8))
    text = model.summary()
    assert "BatchNormalization" in text and "GlobalAveragePooling2D" in text
    assert "Non-trainable params: 36" in text          # 2 * (4 + 6 + 8)
    assert f"Total params: {model.count_params():,}" in text
    assert len(model.get_weights()) == 2 + 4 + 1 + 4 + 2 + 4 + 2
    model.compile("adam")
    x, y = _data(rng)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = fnn.load_model(tmp_path / "m.npz")
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x[:3]), model.predict(x[:3]))
    # optimizer state restored too: one more step gives the same weights
    model.train_on_batch(x[:16], y[:16])
    loaded.train_on_batch(x[:16], y[:16])
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cnn_with_batchnorm_trains(rng):
    fnn.seed(3)
    y = rng.integers(0, 3, 256)
    x = (rng.standard_normal((256, 1, 8, 8)) + y[:, None, None, None]).astype(np.float32)
    model = fnn.Sequential(_cnn(momentum=0.9), input_shape=(1, 8, 8))
    model.compile(fnn.optimizers.Adam(0.01))
    before = model.evaluate(x, y)["loss"]
    hist = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    after = model.evaluate(x, y)
    assert after["loss"] < 0.5 * before and after["accuracy"] > 0.9


def test_training_is_bit_identical_for_any_thread_count(rng):
    x, y = _data(rng, n=64, shape=(3, 16, 16))
    results = []
    for nt in (1, 2):
        fnn.seed(11)
        fnn.set_num_threads(nt)
        model = fnn.Sequential([L.Conv2D(16, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
                                L.GlobalMaxPooling2D(), L.Dense(32), L.BatchNormalization(), L.ReLU(),
                                L.Dense(3, activation="softmax")], input_shape=(3, 16, 16))
        model.compile("adam")
        model.fit(x, y, epochs=2, batch_size=32, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_digits_bn_demo_reaches_its_accuracy(capsys):
    """``python -m fastnn demo digits_bn`` (seeded as the demo runs it): >= 0.97 on held-out digits
    (0.984-0.991 over seeds 0-4 when written)."""
    from fastnn.demo import DEMOS
    fnn.seed(0)
    assert DEMOS["digits_bn"](verbose=0) >= 0.97
    assert "digits bn: test accuracy" in capsys.readouterr().out


# ---- inference plans and the fold ---------------------------------------------------------------

def _close_to_unfolded(model, x, dtype):
    got = model.predict(x)
    want = model._forward(np.ascontiguousarray(x, dtype=model.dtype), False, False)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max())))
    return got, want


def test_fold_follows_fit_and_set_weights(dtype, rng):
    model = fnn.Sequential(_cnn(momentum=0.5), input_shape=(1, 8, 8), dtype=dtype)
    model.compile("adam")
    x, y = _data(rng)
    x = x.astype(dtype)
    plan = _inference.plan_for(model, x[:2])
    assert plan is not None and len(plan.folds) == 3
    # 2 folded convolutions with ReLU, maxpool, global pool, folded dense, dense + softmax
    assert len(plan.calls) == 7
    first, _ = _close_to_unfolded(model, x[:2], dtype)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    second, _ = _close_to_unfolded(model, x[:2], dtype)
    assert not np.allclose(first, second)
    ws = model.get_weights()
    ws[3] = ws[3] + 1.0          # the first BatchNormalization's moving mean
    model.set_weights(ws)
    third, _ = _close_to_unfolded(model, x[:2], dtype)
    assert not np.allclose(second, third)
    bn = model.layers[1]
    bn.forward(rng.standard_normal((4, 4, 8, 8)), training=True)     # moving statistics move
    _close_to_unfolded(model, x[:2], dtype)


def test_fold_follows_a_custom_training_loop(rng):
    """Optimizer.apply_gradients (a custom loop over layer.params) updates weights in place too:
    folded plans must see it (the optimizer, not Sequential, marks the weights changed)."""
    model = fnn.Sequential(_cnn(momentum=0.5), input_shape=(1, 8, 8))
    x = _data(rng)[0][:2].astype(np.float32)
    first, _ = _close_to_unfolded(model, x, np.float32)
    conv = model.layers[0]
    fnn.optimizers.SGD(0.5).apply_gradients([(np.ones_like(p), p) for p in conv.params])
    second, _ = _close_to_unfolded(model, x, np.float32)
    assert not np.allclose(first, second)


@pytest.mark.parametrize("center, scale", FLAGS)
@pytest.mark.parametrize("use_bias", [True, False])
def test_fold_without_beta_gamma_or_bias(center, scale, use_bias, rng):
    model = fnn.Sequential([L.Dense(6, use_bias=use_bias), L.BatchNormalization(center=center, scale=scale),
                            L.Dense(2)],
                           input_shape=(5,), dtype="float64")
    model.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in model.get_weights()])
    assert len(_inference.plan_for(model, np.zeros((1, 5))).folds) == 1
    _close_to_unfolded(model, rng.standard_normal((3, 5)), np.float64)


def test_unfolded_batchnorm_is_captured_bit_for_bit(dtype, rng):
    """After an activation (or first in the model) BatchNormalization is its own captured kernel:
    the plan then gives the layers' bits exactly."""
    model = fnn.Sequential([L.BatchNormalization(), L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(),
                            L.GlobalAveragePooling2D(), L.Dense(5, activation="tanh"),
                            L.BatchNormalization(center=False), L.Dense(3)],
                           input_shape=(2, 6, 6), dtype=dtype)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in model.get_weights()])
    x = rng.standard_normal((3, 2, 6, 6)).astype(dtype)
    plan = _inference.plan_for(model, x)
    assert plan is not None and plan.folds == [] and len(plan.calls) == 8     # Dense(tanh): GEMM + tanh
    np.testing.assert_array_equal(model.predict(x), model._forward(x, False, False))
    w = model.layers[2].non_trainable[1]
    w[...] = 2.0          # plans see in-place changes of unfolded layers without any notice
    np.testing.assert_array_equal(model.predict(x), model._forward(x, False, False))


def test_fold_rounding_is_small(rng):
    """What the fold changes: float32 predict against the layer-by-layer forward, on trained
    weights (the figure README quotes)."""
    fnn.seed(5)
    x, y = _data(rng, n=128)
    model = fnn.Sequential(_cnn(momentum=0.9), input_shape=(1, 8, 8))
    model.compile("adam")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    got, want = _close_to_unfolded(model, x[:8], np.float32)
    assert np.abs(got - want).max() <= 1e-5


# ---- PyTorch parity ---------------------------------------------------------------------------

torch = pytest.importorskip("torch")
TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


@pytest.mark.parametrize("rank", list(BN_SHAPES))
def test_batchnorm_vs_torch(rank, dtype, rng):
    """torch.nn.BatchNorm1d/2d in training mode over several steps (momentum = 1 - Keras'), then
    in eval mode. torch's running_var is the unbiased variance, so the moving variance is checked
    against API.md's formula (the biased one) and the rest against torch."""
    shape = BN_SHAPES[rank]
    ch = shape[0] if rank == "4d" else shape[-1]
    tdt = TORCH_DTYPE[dtype]
    ref = (torch.nn.BatchNorm2d if rank == "4d" else torch.nn.BatchNorm1d)(ch, eps=1e-3, momentum=0.2, dtype=tdt)
    layer = L.BatchNormalization(momentum=0.8)
    layer.build(shape, dtype=dtype)
    gamma, beta = rng.uniform(0.5, 1.5, ch), rng.standard_normal(ch)
    layer.set_weights([gamma, beta, np.zeros(ch), np.ones(ch)])
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(gamma.astype(dtype)))
        ref.bias.copy_(torch.from_numpy(beta.astype(dtype)))

    def to_torch(a):      # (N, T, F) -> (N, F, T) for BatchNorm1d
        t = torch.from_numpy(np.array(a, copy=True))
        return t.transpose(1, 2) if rank == "3d" else t

    def from_torch(t):
        t = t.transpose(1, 2) if rank == "3d" else t
        return t.detach().numpy()

    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    mv = np.ones(ch)
    axes = (0, 2, 3) if rank == "4d" else tuple(range(len(shape)))
    ref.train()
    for _ in range(3):
        x = (rng.standard_normal((8,) + shape) * 2 + 1).astype(dtype)
        dy = rng.standard_normal((8,) + shape).astype(dtype)
        xt = to_torch(x).requires_grad_(True)
        yt = ref(xt)
        yt.backward(to_torch(dy))
        y = layer.forward(x, training=True)
        dx = layer.backward(dy)
        np.testing.assert_allclose(y, from_torch(yt), **tol)
        np.testing.assert_allclose(dx, from_torch(xt.grad), **tol)
        np.testing.assert_allclose(layer.grads[0], ref.weight.grad.numpy(), **tol)
        np.testing.assert_allclose(layer.grads[1], ref.bias.grad.numpy(), **tol)
        ref.weight.grad = ref.bias.grad = None
        mv = 0.8 * mv + 0.2 * x.astype(np.float64).var(axis=axes)
        np.testing.assert_allclose(layer.get_weights()[2], ref.running_mean.numpy(), **tol)
        np.testing.assert_allclose(layer.get_weights()[3], mv, **tol)
    ref.eval()
    with torch.no_grad():
        ref.running_var.copy_(torch.from_numpy(layer.get_weights()[3]))
    x = rng.standard_normal((5,) + shape).astype(dtype)
    np.testing.assert_allclose(layer.forward(x, training=False), from_torch(ref(to_torch(x))), **tol)


@pytest.mark.parametrize("name, fn", [("avg", "adaptive_avg_pool2d"), ("max", "adaptive_max_pool2d")])
def test_global_pooling_vs_torch(name, fn, dtype, rng):
    F = torch.nn.functional
    x = rng.standard_normal((4, 5, 7, 6)).astype(dtype)
    dy = rng.standard_normal((4, 5)).astype(dtype)
    layer = L.GlobalAveragePooling2D() if name == "avg" else L.GlobalMaxPooling2D()
    layer.build(x.shape[1:], dtype=dtype)
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = getattr(F, fn)(xt, 1)[:, :, 0, 0]
    yt.backward(torch.from_numpy(dy))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)
