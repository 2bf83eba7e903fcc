"""Test helpers: tolerances, a central finite-difference gradient, and the one layer harness that
every layer test goes through (build, forward, backward, get/set weights, save/load, gradcheck),
after Keras' ``layer_test``, and a runner of concurrent threads."""
from __future__ import annotations

import threading

import numpy as np

import fastnn as fnn


def rtol_for(dtype) -> float:
    """A relative tolerance a few ulps above rounding for elementwise kernels."""
    return 2e-6 if np.dtype(dtype) == np.float32 else 1e-13


def gemm_tol(dtype, k: int) -> float:
    """Relative error bound of a length-k dot product (forward error grows with k)."""
    return 4.0 * (k + 2) * float(np.finfo(dtype).eps)


def numeric_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function f() with respect to the array x, which is
    perturbed in place (and restored)."""
    g = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)            # a view: x must be contiguous
    assert np.shares_memory(flat, x)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        g.reshape(-1)[i] = (fp - fm) / (2 * h)
    return g


def assert_grad_close(analytic, numeric, what: str, rtol: float = 1e-6, atol: float = 1e-8):
    analytic = np.asarray(analytic, dtype=np.float64)
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} vs {numeric.shape}"
    scale = max(1.0, float(np.abs(numeric).max(initial=0.0)))
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol * scale, err_msg=what)


def random_like_weights(layer, rng) -> list:
    """Random non-zero weights of the layer's shapes (zero biases would hide bias bugs)."""
    return [rng.uniform(-1.0, 1.0, size=w.shape) for w in layer.get_weights()]


def check_layer(make_layer, input_shape, rng, *, batch: int = 3, dtype="float64", expected_output_shape=None,
                draw_input=None, kink=None, gradcheck: bool = True, save_load_dir=None):
    """Run a layer through the common checks and return the built layer.

    Parameters
    ----------
    make_layer : callable returning a new, unbuilt layer
    input_shape : shape without the batch axis
    draw_input : callable(rng, shape) -> ndarray, default standard normal
    kink : callable(layer, x) -> ndarray of values that must stay away from 0 (e.g. ReLU
        pre-activations) so finite differences do not straddle a kink; inputs are redrawn until
        they do
    gradcheck : compare dL/dx and every parameter gradient with central differences of
        L = sum(y * R)
    save_load_dir : a directory; when given, a model holding a layer made from the layer's
        config with the same weights is saved, loaded and must predict the same outputs
    """
    dt = np.dtype(dtype)
    draw_input = draw_input or (lambda r, shape: r.standard_normal(shape))
    shape = tuple(input_shape)
    x_shape = (batch,) + shape

    # -- backward before forward, unbuilt and built
    layer = make_layer()
    assert not layer.built
    try:
        layer.backward(np.ones((batch,) + shape))
    except RuntimeError:
        pass
    else:
        raise AssertionError(f"{layer.name}: backward before forward did not raise RuntimeError")

    # -- build
    layer.build(shape, dtype=dt)
    assert layer.built and layer.dtype == dt and layer.input_shape == shape
    out_shape = tuple(layer.compute_output_shape(shape))
    assert tuple(layer.output_shape) == out_shape
    if expected_output_shape is not None:
        assert out_shape == tuple(expected_output_shape)
    try:
        layer.backward(np.ones((batch,) + out_shape))
    except RuntimeError:
        pass
    else:
        raise AssertionError(f"{layer.name}: backward before forward (built) did not raise RuntimeError")

    # -- weights: dtype, grads shaped like weights, set/get round trip, copies
    weights = layer.get_weights()
    assert len(layer.grads) == len(layer.params) == len(weights)
    for w, g in zip(weights, layer.grads):
        assert w.dtype == dt and g.dtype == dt and g.shape == w.shape
    new = random_like_weights(layer, rng)
    layer.set_weights(new)
    got = layer.get_weights()
    for w, n in zip(got, new):
        assert w.shape == n.shape and w.dtype == dt
        np.testing.assert_array_equal(w, n.astype(dt))
        w[...] = 123.0            # get_weights returns copies
    for w, n in zip(layer.get_weights(), new):
        np.testing.assert_array_equal(w, n.astype(dt))
    assert layer.count_params() == sum(w.size for w in new)

    # -- inputs away from kinks
    for _ in range(100):
        x = np.ascontiguousarray(draw_input(rng, x_shape), dtype=dt)
        if kink is None or np.abs(kink(layer, x)).min() > 1e-3:
            break
    else:
        raise AssertionError("could not draw an input away from the kinks")
    x_keep = x.copy()

    # -- forward: shape, dtype, fresh output per call, input untouched
    y = layer.forward(x, training=True)
    assert y.shape == (batch,) + out_shape and y.dtype == dt
    y_keep = y.copy()
    x2 = np.ascontiguousarray(draw_input(rng, x_shape), dtype=dt)
    y2 = layer.forward(x2, training=True)
    assert not np.may_share_memory(y, y2), f"{layer.name}: two forward calls returned aliasing arrays"
    np.testing.assert_array_equal(y, y_keep,
                                  err_msg=f"{layer.name}: a second forward changed the first output")
    np.testing.assert_array_equal(x, x_keep, err_msg=f"{layer.name}: forward modified its input")
    y_eval = layer.forward(x, training=False)
    if gradcheck:       # deterministic layers compute the same function in both modes
        np.testing.assert_allclose(y_eval, y, rtol=1e-12 if dt == np.float64 else 1e-6, atol=0)

    # -- backward: shapes and dtypes
    r = rng.standard_normal((batch,) + out_shape)
    layer.forward(x, training=True)
    dx = layer.backward(r)
    assert dx.shape == x.shape and dx.dtype == dt
    grads = [np.array(g, copy=True) for g in layer.grads]
    for g, w in zip(grads, new):
        assert g.shape == w.shape

    if gradcheck:
        assert dt == np.float64, "gradient checks need float64"
        dx = np.array(dx, copy=True)

        def loss():
            return float(np.sum(layer.forward(x, training=False) * r))

        assert_grad_close(dx, numeric_grad(loss, x), f"{layer.name}: dL/dx")
        for i, p in enumerate(layer.params):
            assert_grad_close(grads[i], numeric_grad(loss, p), f"{layer.name}: gradient of weight {i}")

    # -- a model file round trip of a layer made from the config
    if save_load_dir is not None:
        clone = type(layer)(**layer.get_config())
        model = fnn.Sequential([clone], input_shape=shape, dtype=dt)
        model.set_weights(new)
        path = f"{save_load_dir}/{layer.name}.fnn"
        model.save(path)
        loaded = fnn.load_model(path)
        assert type(loaded.layers[0]) is type(layer)
        for a, b in zip(loaded.get_weights(), new):
            np.testing.assert_array_equal(a, b.astype(dt))
        np.testing.assert_allclose(loaded.predict(x), layer.forward(x, training=False),
                                   rtol=1e-12 if dt == np.float64 else 1e-6, atol=0)
    return layer


def run_concurrently(n, target, timeout=60.0):
    """Run target(i) in n threads released together by a barrier; re-raise the first error."""
    barrier = threading.Barrier(n)
    errors = []

    def wrap(i):
        try:
            barrier.wait(timeout=timeout)
            target(i)
        except BaseException as err:   # noqa: BLE001 - reported in the main thread
            errors.append((i, err))

    threads = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        i, err = errors[0]
        raise AssertionError(f"thread {i} failed: {err!r}") from err
