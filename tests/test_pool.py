"""MaxPool2D and AvgPool2D: forward, argmax indices and gradients against torch, the C kernels
against the numpy reference, finite-difference checks through the layer harness, thread-count
invariance, errors and model files."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import check_layer

import fastnn as fnn
from fastnn.backend import cpu, numpy_ref
from fastnn.layers import AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D

# (n, c, h, w, pool_size, stride)
CASES = [
    (2, 3, 8, 8, 2, None),
    (2, 3, 9, 7, 2, None),                 # odd sizes: the last row/column is dropped
    (1, 2, 5, 5, 3, 1),                    # overlapping windows
    (2, 2, 9, 7, (3, 2), (2, 1)),
    (2, 2, 6, 7, (2, 3), (3, 2)),          # gaps between windows
    (3, 1, 4, 4, 4, None),                 # one window per plane
    (2, 4, 7, 6, 1, 2),
    (4, 16, 28, 28, 2, 2),                 # cnn64
]


def _case_id(case):
    return "-".join(str(v).replace(" ", "") for v in case)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _geometry(case):
    n, c, h, w, pool, stride = case
    pool = _pair(pool)
    stride = pool if stride is None else _pair(stride)
    return (n, c, h, w), pool, stride, (n, c, (h - pool[0]) // stride[0] + 1, (w - pool[1]) // stride[1] + 1)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_matches_torch(case, kind, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xshape, pool, stride, _ = _geometry(case)
    layer = (MaxPool2D if kind == "max" else AvgPool2D)(case[4], stride=case[5])
    layer.build(xshape[1:], dtype=dtype)
    x = rng.standard_normal(xshape).astype(dtype)
    y = layer.forward(x, training=True)
    r = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(r)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    if kind == "max":
        yt, it = F.max_pool2d(xt, pool, stride, return_indices=True)
        np.testing.assert_array_equal(layer._cache[2]["idx"], it.numpy())
    else:
        yt = F.avg_pool2d(xt, pool, stride)
    (yt * torch.from_numpy(r)).sum().backward()
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)


# 2, 5 and 8 outputs a row: scalar, overlapped and vector SSE2; with AVX-512 (float) one, two and
# three vectors of 16 outputs, partly masked; odd widths leave a column out
@pytest.mark.parametrize("width", [4, 10, 16, 33, 40, 69])
def test_maxpool_ties_and_nan_follow_torch(width, dtype, rng, arch):
    torch = pytest.importorskip("torch")
    x = rng.integers(-2, 3, (2, 3, 6, width)).astype(dtype)      # many ties
    x[0, 0, 0, :2] = np.nan
    x[0, 1, :2, 1] = np.nan
    x[1, 2, 2:4, 2:4] = -np.inf
    x[1, 0, 4, 3] = np.nan
    yt, it = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    for be in (cpu, numpy_ref):
        y, idx = np.empty(yt.shape, dtype), np.empty(yt.shape, np.int32)
        be.maxpool2d_fwd(x, (2, 2), (2, 2), y, idx)
        np.testing.assert_array_equal(idx, it.numpy(), err_msg=be.name)
        np.testing.assert_array_equal(y, yt.numpy(), err_msg=be.name)
        y2 = np.empty(yt.shape, dtype)
        be.maxpool2d_fwd(x, (2, 2), (2, 2), y2)
        np.testing.assert_array_equal(y2, y, err_msg=be.name)
        dy = rng.standard_normal(yt.shape).astype(dtype)
        dx = be.maxpool2d_bwd(dy, idx, (2, 2), (2, 2), np.full(x.shape, np.nan, dtype))
        ref = np.zeros(x.size, dtype)
        planes = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1, 1)) * (x.shape[2] * x.shape[3])
        ref[(planes + idx).ravel()] = dy.ravel()
        np.testing.assert_array_equal(dx, ref.reshape(x.shape), err_msg=be.name)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cpu_matches_numpy_ref(case, dtype, rng):
    xshape, pool, stride, yshape = _geometry(case)
    x = rng.standard_normal(xshape).astype(dtype)
    dy = rng.standard_normal(yshape).astype(dtype)
    res = {}
    for be in (cpu, numpy_ref):
        y, idx, y_noidx = np.empty(yshape, dtype), np.empty(yshape, np.int32), np.empty(yshape, dtype)
        be.maxpool2d_fwd(x, pool, stride, y, idx)
        be.maxpool2d_fwd(x, pool, stride, y_noidx)
        dx = be.maxpool2d_bwd(dy, idx, pool, stride, np.empty(xshape, dtype))
        ya = be.avgpool2d_fwd(x, pool, stride, np.empty(yshape, dtype))
        dxa = be.avgpool2d_bwd(dy, pool, stride, np.empty(xshape, dtype))
        np.testing.assert_array_equal(y, y_noidx)
        res[be.name] = (y, idx, dx, ya, dxa)
    for a, b, what in zip(res["cpu"], res["numpy_ref"], ("max", "idx", "max dx", "avg", "avg dx")):
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(a, b, err_msg=what, **tol)


def _gap(layer, x):
    """Distance between the largest and second largest value of every window (finite
    differences must not swap the maximum)."""
    (kh, kw), (sh, sw) = layer.pool_size, layer.stride
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    win = np.sort(win.reshape(win.shape[:4] + (-1,)), axis=-1)
    return win[..., -1] - win[..., -2] if kh * kw > 1 else np.ones(win.shape[:4])


@pytest.mark.parametrize("make, shape", [
    (lambda: MaxPool2D(2), (2, 4, 5)),
    (lambda: MaxPool2D((2, 3), stride=1), (1, 4, 5)),
    (lambda: MaxPool2D(3, stride=(2, 1)), (2, 5, 4)),
    (lambda: AvgPool2D(2), (2, 4, 5)),
    (lambda: AvgPool2D((3, 2), stride=(1, 2)), (2, 5, 5)),
], ids=["max2", "max-rect-overlap", "max3-stride21", "avg2", "avg-rect"])
def test_pool_layer_harness(make, shape, rng, tmp_path):
    layer = make()
    kink = _gap if isinstance(layer, MaxPool2D) else None
    built = check_layer(make, shape, rng, kink=kink, save_load_dir=tmp_path)
    assert built.get_weights() == []


@pytest.mark.parametrize("kind", [MaxPool2D, AvgPool2D])
def test_results_do_not_depend_on_thread_count(kind, rng):
    x = rng.standard_normal((64, 16, 28, 28)).astype(np.float32)
    dy = rng.standard_normal((64, 16, 9, 14)).astype(np.float32)
    got = []
    for threads in (1, 2, 3):
        fnn.set_num_threads(threads)
        layer = kind((3, 2), stride=(3, 2))
        y = layer.forward(x, training=True).copy()
        got.append((y, layer.backward(dy).copy()))
    for other in got[1:]:
        for a, b in zip(got[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", [MaxPool2D, AvgPool2D])
def test_bad_arguments_name_the_layer(kind):
    name = kind.__name__
    with pytest.raises(ValueError, match=f"{name}.*pool_x"):
        kind(0, name="pool_x")
    with pytest.raises(ValueError, match=f"{name}.*pool_x"):
        kind(2, stride=0, name="pool_x")
    with pytest.raises(ValueError, match=f"{name}.*pool_x"):
        kind((2, 2, 2), name="pool_x")
    with pytest.raises(TypeError, match=f"{name}.*pool_x"):
        kind(2.0, name="pool_x")
    with pytest.raises(ValueError, match="pool_y.*window"):
        kind(3, name="pool_y").build((1, 2, 5))
    with pytest.raises(ValueError, match="pool_z.*\\(N, C, H, W\\)"):
        kind(2, name="pool_z").build((4, 4))
    with pytest.raises(ValueError, match="pool_v"):
        kind(2, stride=2 ** 40, name="pool_v").build((1, 4, 4))
    layer = kind(2, name="pool_w")
    layer.build((3, 4, 4))
    with pytest.raises(ValueError, match="pool_w"):
        layer.forward(np.zeros((2, 2, 4, 4)))


@pytest.mark.parametrize("dtype_", [np.float32, np.float64])
@pytest.mark.parametrize("width", [4, 10, 40])
def test_maxpool_backward_rejects_bad_indices(width, dtype_, arch):
    ow = width // 2
    for pool, stride, oh in (((2, 2), (2, 2), 2), ((3, 3), (1, 1), 2)):
        ow_ = ow if pool == (2, 2) else width - 2
        dy = np.ones((1, 1, oh, ow_), dtype_)
        for bad in (4 * width + 59, -1, 2**31 - 1):        # outside the plane
            idx = np.zeros((1, 1, oh, ow_), np.int32)
            idx[0, 0, -1, -1] = bad
            with pytest.raises(ValueError):
                cpu.maxpool2d_bwd(dy, idx, pool, stride, np.empty((1, 1, 4, width), dtype_))


def test_cnn_with_pools_save_load(rng, tmp_path):
    fnn.seed(5)
    model = fnn.Sequential([Conv2D(4, 3, padding=1, activation="relu"), MaxPool2D(2, stride=(2, 1)),
                            AvgPool2D((1, 2)), Flatten(), Dense(3)], input_shape=(2, 8, 7))
    model.compile(optimizer="sgd", loss=fnn.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.standard_normal((12, 2, 8, 7)).astype(np.float32)
    model.fit(x, rng.integers(0, 3, 12), batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "pools.fnn"
    model.save(path)
    loaded = fnn.load_model(path)
    assert loaded.layers[1].stride == (2, 1) and loaded.layers[2].pool_size == (1, 2)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
