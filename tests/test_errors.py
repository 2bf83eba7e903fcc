"""Bad input raises ValueError/TypeError with a message naming the layer and the shapes, before
any C code runs; nothing reachable from Python crashes the process (API.md, "Errors")."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import fastnn as fnn
from fastnn import _core, losses, optimizers
from fastnn import layers as L
from fastnn.callbacks import EarlyStopping

N, D, K = 20, 5, 3


# ---- helpers ------------------------------------------------------------------------------------
def make_model(loss="sparse_categorical_crossentropy", out_units=K, out_act="softmax", dtype=None):
    model = fnn.Sequential([L.Dense(4, activation="relu", name="hidden"),
                            L.Dense(out_units, activation=out_act, name="head")],
                           input_shape=(D,), dtype=dtype)
    model.compile("sgd", loss=loss)
    return model


@pytest.fixture
def xy(rng):
    return rng.standard_normal((N, D)).astype(np.float32), rng.integers(0, K, N)


class CudaLike:
    """Looks like a CuPy array to anyone checking ``__cuda_array_interface__``."""

    shape = (N, D)
    dtype = np.dtype(np.float32)
    __cuda_array_interface__ = {"shape": (N, D), "typestr": "<f4", "data": (0, False), "version": 3}


def assert_unchanged(model, before):
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    if model.optimizer is not None:
        assert model.optimizer.iterations == 0 and not model.optimizer.state


# ---- model inputs -------------------------------------------------------------------------------
CALLS = {
    "fit": lambda m, x, y: m.fit(x, y, verbose=0),
    "evaluate": lambda m, x, y: m.evaluate(x, y),
    "predict": lambda m, x, y: m.predict(x),
    "train_on_batch": lambda m, x, y: m.train_on_batch(x, y),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_wrong_feature_count(xy, call):
    x, y = xy
    model = make_model()
    before = model.get_weights()
    with pytest.raises(ValueError) as info:
        CALLS[call](model, x[:, :4], y)
    msg = str(info.value)
    assert "(N, 5)" in msg and "(20, 4)" in msg
    assert_unchanged(model, before)


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("shape", [(D,), (N, D, 1), (N, 1, D), ()])
def test_wrong_rank(xy, call, shape):
    _, y = xy
    model = make_model()
    with pytest.raises(ValueError, match=r"shape \(") as info:
        CALLS[call](model, np.ones(shape, dtype=np.float32), y)
    assert str(shape).replace(",)", ")") in str(info.value) or str(shape) in str(info.value)


def test_wrong_rank_on_an_unbuilt_model_names_the_layer(xy):
    model = fnn.Sequential([L.Dense(3, name="first_dense")])
    with pytest.raises(ValueError, match="first_dense") as info:
        model.predict(np.ones((4, 5, 2)))
    assert "(N, 5, 2)" in str(info.value)
    assert not model.built


@pytest.mark.parametrize("call", ["fit", "evaluate", "train_on_batch"])
def test_mismatched_x_and_y_lengths(xy, call):
    x, y = xy
    model = make_model()
    before = model.get_weights()
    with pytest.raises(ValueError) as info:
        CALLS[call](model, x, y[:N - 3])
    assert "20" in str(info.value) and "17" in str(info.value)
    assert_unchanged(model, before)


@pytest.mark.parametrize("call", ["fit", "evaluate", "train_on_batch"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_x(xy, call, bad):
    x, y = xy
    x = x.copy()
    x[N - 1, 2] = bad                                    # in the last batch: checked up front
    model = make_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match="finite"):
        CALLS[call](model, x, y)
    assert_unchanged(model, before)


def test_non_finite_validation_data(xy):
    x, y = xy
    xv = x.copy()
    xv[0, 0] = np.nan
    model = make_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match="finite"):
        model.fit(x, y, validation_data=(xv, y), verbose=0)
    assert_unchanged(model, before)


@pytest.mark.parametrize("labels, match", [
    (lambda y: np.where(np.arange(N) == N - 1, K, y), r"\[0, 3\)"),     # == K, in the last batch
    (lambda y: np.full(N, 100), r"\[0, 3\)"),
    (lambda y: np.where(np.arange(N) == 3, -1, y), r"\[0, 3\)"),
    (lambda y: y + 0.5, "integer"),
    (lambda y: np.full(N, np.nan), "integer"),
    (lambda y: np.full(N, np.inf), "integer"),
    (lambda y: np.eye(K)[y], r"\(N,\)"),                               # one-hot given to sparse
    (lambda y: y.reshape(4, 5), r"\(N,\)"),
])
def test_bad_sparse_labels(xy, labels, match):
    x, y = xy
    model = make_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match=match):
        model.fit(x, labels(y), verbose=0)
    with pytest.raises(ValueError, match=match):
        model.evaluate(x, labels(y))
    assert_unchanged(model, before)


def test_sparse_labels_as_whole_floats_and_column_are_accepted(xy):
    x, y = xy
    model = make_model()
    model.fit(x, y.astype(np.float64), verbose=0)
    model.fit(x, y[:, None], verbose=0)


@pytest.mark.parametrize("targets", [
    lambda y: np.eye(K + 1)[y],                           # one-hot of the wrong width
    lambda y: np.eye(K - 1)[y % (K - 1)],
    lambda y: y,                                          # integer labels given to categorical
    lambda y: -np.eye(K)[y],
    lambda y: np.eye(K)[y] * np.nan,
])
def test_bad_categorical_targets(xy, targets):
    x, y = xy
    model = make_model(loss="categorical_crossentropy")
    before = model.get_weights()
    with pytest.raises(ValueError, match="target|one-hot"):
        model.fit(x, targets(y), verbose=0)
    assert_unchanged(model, before)


@pytest.mark.parametrize("targets", [
    lambda y: np.full(N, 2.0), lambda y: np.full(N, -0.5), lambda y: np.full((N, 1), 1.5),
    lambda y: np.full(N, np.nan), lambda y: np.zeros((N, 2)), lambda y: np.zeros((N, 1, 1)),
])
def test_bad_binary_targets(xy, targets):
    x, _ = xy
    model = make_model(loss="binary_crossentropy", out_units=1, out_act="sigmoid")
    before = model.get_weights()
    with pytest.raises(ValueError, match="targets"):
        model.fit(x, targets(None), verbose=0)
    assert_unchanged(model, before)


def test_bad_mse_targets(xy):
    x, _ = xy
    model = make_model(loss="mse", out_units=2, out_act=None)
    for y in (np.zeros((N, 3)), np.zeros(N), np.full((N, 2), np.inf)):
        with pytest.raises(ValueError):
            model.fit(x, y, verbose=0)


@pytest.mark.parametrize("call", sorted(CALLS))
def test_empty_x(xy, call):
    _, y = xy
    model = make_model()
    with pytest.raises(ValueError, match="sample"):
        CALLS[call](model, np.zeros((0, D), np.float32), y[:0])


def test_empty_x_on_an_unbuilt_model_leaves_it_unbuilt():
    model = fnn.Sequential([L.Dense(3)])
    model.compile("sgd")
    with pytest.raises(ValueError):
        model.fit(np.zeros((0, 4)), np.zeros(0), verbose=0)
    with pytest.raises(ValueError):
        model.predict(np.zeros((3, 0)))
    assert not model.built


@pytest.mark.parametrize("bad, exc", [
    (np.array([["a"] * D] * N), TypeError),
    (np.array([[b"x"] * D] * N), TypeError),
    (np.empty((N, D), dtype=object), TypeError),
    (np.ones((N, D), dtype=np.complex64), TypeError),
    (np.zeros((N, D), dtype="datetime64[s]"), TypeError),
    (np.zeros(N, dtype=[("a", "f4"), ("b", "f4")]), TypeError),
    ("not an array", TypeError),
    (None, TypeError),
    ([[1.0, 2.0], [3.0]], TypeError),                    # ragged
    (CudaLike(), TypeError),                              # a GPU array given to a CPU model
])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_bad_array_types(xy, bad, exc, call):
    _, y = xy
    model = make_model()
    with pytest.raises(exc):
        CALLS[call](model, bad, y)


def test_cuda_like_array_message_says_cpu():
    model = make_model()
    with pytest.raises(TypeError, match="CPU|cuda"):
        model.predict(CudaLike())


def test_bool_and_int_inputs_are_converted(xy):
    _, y = xy
    model = make_model()
    assert model.predict(np.ones((3, D), dtype=bool)).dtype == np.float32
    assert model.predict(np.ones((3, D), dtype=np.int8)).dtype == np.float32
    model.fit(np.ones((N, D), dtype=np.uint16), y, verbose=0)


# ---- fit arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, exc", [
    ({"batch_size": 0}, ValueError), ({"batch_size": -1}, ValueError), ({"batch_size": 1.5}, TypeError),
    ({"batch_size": "32"}, TypeError), ({"batch_size": None}, TypeError),
    ({"epochs": -1}, ValueError), ({"epochs": 1.5}, TypeError), ({"epochs": None}, TypeError),
    ({"validation_split": 1.0}, ValueError), ({"validation_split": -0.1}, ValueError),
    ({"validation_split": 1.5}, ValueError), ({"validation_split": float("nan")}, ValueError),
    ({"validation_split": "0.2"}, TypeError),
    ({"validation_split": 0.01}, ValueError),            # rounds to no validation sample
    ({"validation_data": (np.ones((4, D)),)}, ValueError),
    ({"validation_data": np.ones((4, D))}, ValueError),
    ({"validation_data": (np.ones((4, D + 1)), np.zeros(4))}, ValueError),
    ({"validation_data": (np.ones((4, D)), np.zeros(3))}, ValueError),
    ({"validation_data": (np.ones((4, D)), np.full(4, K))}, ValueError),
    ({"verbose": 5}, ValueError),
    ({"callbacks": [print]}, TypeError),
    ({"callbacks": ["EarlyStopping"]}, TypeError),
])
def test_bad_fit_arguments(xy, kwargs, exc):
    x, y = xy
    model = make_model()
    before = model.get_weights()
    kwargs.setdefault("verbose", 0)
    with pytest.raises(exc):
        model.fit(x, y, **kwargs)
    assert_unchanged(model, before)


@pytest.mark.parametrize("call", ["evaluate", "predict"])
@pytest.mark.parametrize("batch_size, exc", [(0, ValueError), (-3, ValueError), (2.0, TypeError)])
def test_bad_inference_batch_size(xy, call, batch_size, exc):
    x, y = xy
    model = make_model()
    with pytest.raises(exc, match="batch_size"):
        if call == "predict":
            model.predict(x, batch_size=batch_size)
        else:
            model.evaluate(x, y, batch_size=batch_size)


# ---- names and hyper-parameters -----------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"loss": "hinge"}, {"loss": "Sparse_Categorical_Crossentropy"}, {"loss": None}, {"loss": 3},
    {"optimizer": "nadam"}, {"optimizer": None}, {"optimizer": optimizers.SGD},
    {"metrics": ("f1",)}, {"metrics": "precision"}, {"metrics": ("accuracy", "auc")},
])
def test_unknown_compile_names(kwargs):
    model = make_model()
    with pytest.raises((ValueError, TypeError)) as info:
        model.compile(**kwargs)
    name = next(iter(kwargs))
    assert name in str(info.value) or "Optimizer" in str(info.value) or "Loss" in str(info.value)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: L.Dense(3, activation="gelu"), ValueError, "gelu"),
    (lambda: L.Dense(3, activation="RELU"), ValueError, "RELU"),
    (lambda: L.Dense(3, activation=np.tanh), ValueError, "activation"),
    (lambda: L.Dense(3, kernel_initializer="ones"), ValueError, "ones"),
    (lambda: L.Dense(3, kernel_initializer=None), ValueError, "initializer"),
    (lambda: L.Dense(0), ValueError, "units"),
    (lambda: L.Dense(-2), ValueError, "units"),
    (lambda: L.Dense(2.0), TypeError, "units"),
    (lambda: L.Dense("3"), TypeError, "units"),
    (lambda: L.Dense(3, use_bias="yes"), TypeError, "use_bias"),
    (lambda: L.Dense(3, name=5), TypeError, "name"),
    (lambda: L.Dropout(1.0), ValueError, "rate"),
    (lambda: L.Dropout(1.5), ValueError, "rate"),
    (lambda: L.Dropout(-0.1), ValueError, "rate"),
    (lambda: L.Dropout(float("nan")), ValueError, "rate"),
    (lambda: L.Dropout("0.5"), TypeError, "rate"),
    (lambda: L.LeakyReLU(alpha=-1), ValueError, "alpha"),
    (lambda: L.LeakyReLU(alpha=float("inf")), ValueError, "alpha"),
    (lambda: L.LeakyReLU(alpha=None), TypeError, "alpha"),
    (lambda: optimizers.SGD(learning_rate=0), ValueError, "learning_rate"),
    (lambda: optimizers.SGD(learning_rate=-0.1), ValueError, "learning_rate"),
    (lambda: optimizers.SGD(momentum=-0.5), ValueError, "momentum"),
    (lambda: optimizers.SGD(nesterov=True), ValueError, "momentum"),
    (lambda: optimizers.Adam(beta_1=1.0), ValueError, "beta_1"),
    (lambda: optimizers.Adam(beta_2=-0.1), ValueError, "beta_2"),
    (lambda: optimizers.Adam(epsilon=-1e-7), ValueError, "epsilon"),
    (lambda: optimizers.Adam(clipnorm=0), ValueError, "clipnorm"),
    (lambda: optimizers.Adam(clipvalue=-1), ValueError, "clipvalue"),
    (lambda: optimizers.SGD(weight_decay=-1), ValueError, "weight_decay"),
    (lambda: losses.BinaryCrossentropy(from_logits="yes"), TypeError, "from_logits"),
    (lambda: EarlyStopping(patience=-1), ValueError, "patience"),
    (lambda: EarlyStopping(mode="best"), ValueError, "mode"),
    (lambda: EarlyStopping(monitor=None), TypeError, "monitor"),
    (lambda: fnn.Sequential(dtype="int32"), TypeError, "dtype"),
    (lambda: fnn.Sequential(dtype="float16"), TypeError, "dtype"),
    (lambda: fnn.Sequential(name=3), TypeError, "name"),
    (lambda: fnn.Sequential([L.Dense(3), "relu"]), TypeError, "Layer"),
    (lambda: fnn.Sequential([]).build((3,)), ValueError, "layer"),
    (lambda: fnn.Sequential([L.Dense(3)], input_shape=(0,)), ValueError, r"\(0,\)"),
    (lambda: fnn.Sequential([L.Dense(3)], input_shape=(-4,)), ValueError, "-4"),
    (lambda: fnn.Sequential([L.Dense(3)], input_shape=5), TypeError, "input_shape"),
    (lambda: fnn.Sequential([L.Dense(3)], input_shape=(4, 2)), ValueError, "Flatten"),
    (lambda: fnn.Sequential([L.Dense(3), L.Softmax()], input_shape=(4,)).add(L.Dense(2, activation="swish")),
     ValueError, "swish"),
    (lambda: fnn.set_default_dtype("int64"), TypeError, "dtype"),
])
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_adding_a_layer_twice():
    dense = L.Dense(3)
    model = fnn.Sequential([dense])
    with pytest.raises(ValueError, match=dense.name):
        model.add(dense)
    with pytest.raises(TypeError):
        model.add(np.ones(3))


def test_reusing_a_layer_built_for_another_shape():
    dense = L.Dense(3, name="shared")
    fnn.Sequential([dense], input_shape=(4,))
    with pytest.raises(ValueError, match="shared"):
        fnn.Sequential([dense], input_shape=(5,))
    with pytest.raises(ValueError, match="shared"):
        fnn.Sequential([dense], input_shape=(4,), dtype="float64")


# ---- weights ------------------------------------------------------------------------------------
def test_set_weights_wrong_count_or_shape():
    model = make_model()
    w = model.get_weights()
    with pytest.raises(ValueError, match="4 arrays"):
        model.set_weights(w[:-1])
    with pytest.raises(ValueError, match="4 arrays"):
        model.set_weights(w + [np.zeros(3)])
    with pytest.raises(ValueError, match=r"hidden.*\(5, 4\).*\(4, 5\)"):
        model.set_weights([w[0].T] + w[1:])
    with pytest.raises(ValueError, match=r"head"):
        model.set_weights(w[:3] + [np.zeros(K + 1)])
    with pytest.raises(ValueError, match="finite"):
        model.set_weights(w[:1] + [np.full(4, np.nan)] + w[2:])
    with pytest.raises(TypeError):
        model.set_weights(w[:1] + [np.array(["a"] * 4)] + w[2:])
    with pytest.raises(TypeError):
        model.set_weights(5)
    # new values for the first layer, a bad array for the last: the model is left as it was
    with pytest.raises(ValueError, match="head"):
        model.set_weights([np.full_like(w[0], 0.5), np.full_like(w[1], 0.5), w[2], np.zeros(K + 1)])
    with pytest.raises(ValueError, match="finite"):
        model.set_weights([np.full_like(w[0], 0.5), w[1], w[2], np.full_like(w[3], np.inf)])
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(w, after))     # a failed set changes nothing


def test_set_weights_on_an_unbuilt_model_or_layer():
    # API.md, Errors: unbuilt models raise ValueError or TypeError
    with pytest.raises((ValueError, TypeError), match="built"):
        fnn.Sequential([L.Dense(3)]).set_weights([np.zeros((2, 3)), np.zeros(3)])
    with pytest.raises((ValueError, TypeError), match="build"):
        L.Dense(3).set_weights([np.zeros((2, 3)), np.zeros(3)])


# ---- layers used directly -----------------------------------------------------------------------
def test_layer_forward_wrong_shape_names_the_layer():
    dense = L.Dense(3, name="my_dense")
    dense.build((4,))
    with pytest.raises(ValueError, match=r"my_dense.*\(N, 4\).*\(2, 5\)"):
        dense.forward(np.ones((2, 5)))
    with pytest.raises(ValueError, match="my_dense"):
        L.Dense(3, name="my_dense").forward(np.ones(4))
    with pytest.raises(TypeError):
        dense.forward(np.ones((2, 4), dtype=complex))


@pytest.mark.parametrize("make", [lambda: L.Dense(3), lambda: L.ReLU(), lambda: L.Sigmoid(), lambda: L.Tanh(),
                                  lambda: L.Softmax(), lambda: L.LeakyReLU(0.1), lambda: L.Dropout(0.5),
                                  lambda: L.Flatten()], ids=lambda f: type(f()).__name__)
def test_backward_before_forward(make):
    layer = make()
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((2, 3)))
    layer.build((3,))
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((2, 3)))
    layer.forward(np.ones((2, 3)), training=False)           # inference caches nothing
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.ones((2, 3)))


def test_backward_with_a_wrong_gradient_shape():
    dense = L.Dense(3, name="dd")
    dense.forward(np.ones((2, 4)), training=True)
    with pytest.raises(ValueError, match=r"dd.*\(2, 3\).*\(3, 3\)"):
        dense.backward(np.ones((3, 3)))
    with pytest.raises(ValueError, match="dd"):
        dense.backward(np.ones((2, 4)))


# ---- fnn.ops ------------------------------------------------------------------------------------
def f32(*shape):
    return np.ones(shape, dtype=np.float32)


def read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("call, exc", [
    (lambda: fnn.ops.matmul(f32(3, 4), f32(5, 2)), ValueError),
    (lambda: fnn.ops.matmul(f32(3, 4), f32(3, 2), trans_a=False), ValueError),
    (lambda: fnn.ops.matmul(f32(3, 4), f32(2, 5), trans_b=True), ValueError),
    (lambda: fnn.ops.matmul(np.ones((3, 4), int), np.ones((4, 2), int)), TypeError),
    (lambda: fnn.ops.matmul(f32(3, 4), np.ones((4, 2), int)), TypeError),
    (lambda: fnn.ops.matmul(np.ones((3, 4), np.float16), np.ones((4, 2), np.float16)), TypeError),
    (lambda: fnn.ops.matmul(f32(2, 3, 4), f32(4, 2)), ValueError),
    (lambda: fnn.ops.matmul(f32(4), f32(4, 2)), ValueError),
    (lambda: fnn.ops.matmul(f32(3, 4), f32(4)), ValueError),
    (lambda: fnn.ops.matmul(f32(3, 4), np.ones((4, 2), np.float64)), TypeError),
    (lambda: fnn.ops.matmul(f32(3, 4), f32(4, 2), out=read_only(f32(3, 2))), ValueError),
    (lambda: fnn.ops.matmul(f32(3, 4), f32(4, 2), out=f32(2, 3)), ValueError),
    (lambda: fnn.ops.matmul(f32(3, 4), f32(4, 2), out=f32(3, 2, 1)), ValueError),
    (lambda: fnn.ops.matmul(f32(3, 4), f32(4, 2), out=np.ones((3, 2))), ValueError),
    (lambda: fnn.ops.matmul(f32(3, 4), f32(4, 2), out=f32(3, 4)[:, ::2]), ValueError),
    (lambda: fnn.ops.matmul(f32(3, 4), f32(4, 2), out=f32(4, 2)[::-1][:3]), ValueError),
    (lambda: fnn.ops.matmul(f32(3, 4), f32(4, 2), out=[[0.0] * 2] * 3), TypeError),
    (lambda: fnn.ops.matmul("ab", f32(4, 2)), TypeError),
    (lambda: fnn.ops.matmul(CudaLike(), f32(4, 2)), TypeError),
    (lambda: fnn.ops.matmul(np.ones((3, 4), complex), np.ones((4, 2), complex)), TypeError),
    (lambda: fnn.ops.relu(np.ones(3, int)), TypeError),
    (lambda: fnn.ops.sigmoid(f32(3), out=read_only(f32(3))), ValueError),
    (lambda: fnn.ops.tanh(f32(3), out=f32(4)), ValueError),
    (lambda: fnn.ops.tanh(f32(3), out=np.ones(3)), ValueError),
    (lambda: fnn.ops.softmax(f32(2, 3), axis=2), ValueError),
    (lambda: fnn.ops.softmax(f32(2, 3), axis=1.0), ValueError),
    (lambda: fnn.ops.softmax(np.float32(1.0)), ValueError),
    (lambda: fnn.ops.softmax(np.array([["a"]])), TypeError),
])
def test_ops_reject_bad_arguments(call, exc):
    with pytest.raises(exc):
        call()


def test_matmul_out_overlapping_an_input():
    a = f32(4, 4)
    with pytest.raises(ValueError, match="overlap"):
        fnn.ops.matmul(a, f32(4, 4), out=a)
    with pytest.raises(ValueError, match="overlap"):
        fnn.ops.matmul(f32(4, 4), a, out=a)


def test_matmul_error_names_the_shapes():
    with pytest.raises(ValueError) as info:
        fnn.ops.matmul(f32(3, 4), f32(5, 2))
    assert "(3, 4)" in str(info.value) and "(5, 2)" in str(info.value)


# ---- process-wide settings and devices ----------------------------------------------------------
@pytest.mark.parametrize("n, exc", [(0, ValueError), (-2, ValueError), ("2", TypeError), (2.0, TypeError),
                                    (None, TypeError), (True, TypeError)])
def test_set_num_threads_rejects(n, exc):
    before = fnn.get_num_threads()
    with pytest.raises(exc):
        fnn.set_num_threads(n)
    assert fnn.get_num_threads() == before


@pytest.mark.parametrize("s, exc", [(-1, ValueError), (1.5, TypeError), ("7", TypeError), (None, TypeError)])
def test_seed_rejects(s, exc):
    with pytest.raises(exc):
        fnn.seed(s)


def test_to_cuda_without_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)        # as if CuPy were not installed
    assert fnn.cuda_available() is False
    model = make_model()
    with pytest.raises((ValueError, RuntimeError, ImportError)) as info:
        model.to("cuda")
    assert "cuda" in str(info.value).lower()
    assert model.device == "cpu"
    x = np.ones((2, D))
    assert model.predict(x).shape == (2, K)              # still usable on the CPU


@pytest.mark.parametrize("device", ["tpu", "gpu", "CUDA:0", "", 5, None])
def test_to_an_unknown_device(device):
    model = make_model()
    with pytest.raises((ValueError, TypeError)):
        model.to(device)
    assert model.device == "cpu"


def test_to_cpu_returns_the_model():
    model = make_model()
    assert model.to("cpu") is model and model.device == "cpu"


# ---- fnn._core: the last line of defence --------------------------------------------------------
def f64(*shape):
    return np.ones(shape, dtype=np.float64)


i64 = np.int64

CORE_CALLS = {
    "gemm out too small": lambda: _core.gemm(f32(3, 4), f32(4, 5), f32(2, 5)),
    "gemm out too narrow": lambda: _core.gemm(f32(3, 4), f32(4, 5), f32(3, 4)),
    "gemm inner": lambda: _core.gemm(f32(3, 4), f32(3, 5), f32(3, 5)),
    "gemm trans inner": lambda: _core.gemm(f32(3, 4), f32(4, 5), f32(4, 5), trans_a=True),
    "gemm bias length": lambda: _core.gemm(f32(3, 4), f32(4, 5), f32(3, 5), bias=f32(3)),
    "gemm bias row length": lambda: _core.gemm(f32(3, 4), f32(4, 5), f32(3, 5), bias=f32(5), bias_row=True),
    "gemm mixed dtypes": lambda: _core.gemm(f32(3, 4), f64(4, 5), f32(3, 5)),
    "gemm read-only out": lambda: _core.gemm(f32(3, 4), f32(4, 5), read_only(f32(3, 5))),
    "gemm strided columns": lambda: _core.gemm(f32(4, 8)[:, ::2], f32(4, 5), f32(4, 5)),
    "gemm reversed rows": lambda: _core.gemm(f32(3, 4)[::-1], f32(4, 5), f32(3, 5)),
    "gemm 1-D": lambda: _core.gemm(f32(3), f32(4, 5), f32(3, 5)),
    "gemm None out": lambda: _core.gemm(f32(3, 4), f32(4, 5), None),
    "gemm None a": lambda: _core.gemm(None, f32(4, 5), f32(3, 5)),
    "bias_grad": lambda: _core.bias_grad(f32(3, 5), f32(4)),
    "act_fwd lengths": lambda: _core.act_fwd(1, f32(5), f32(4)),
    "act_fwd None out": lambda: _core.act_fwd(1, f32(5), None),
    "act_fwd code": lambda: _core.act_fwd(7, f32(5), f32(5)),
    "act_fwd negative code": lambda: _core.act_fwd(-1, f32(5), f32(5)),
    "act_bwd lengths": lambda: _core.act_bwd(2, f32(5), f32(4), f32(5)),
    "act_bwd out length": lambda: _core.act_bwd(2, f32(5), f32(5), f32(6)),
    "mul": lambda: _core.mul(f32(5), f32(5), f32(2)),
    "dropout lengths": lambda: _core.dropout_fwd(f32(5), f32(5), f32(4), 0.5, 1, 0),
    "dropout rate": lambda: _core.dropout_fwd(f32(5), f32(5), f32(5), 1.0, 1, 0),
    "dropout negative seed": lambda: _core.dropout_fwd(f32(5), f32(5), f32(5), 0.5, -1, 0),
    "softmax_fwd": lambda: _core.softmax_fwd(f32(3, 5), f32(3, 4)),
    "softmax_bwd": lambda: _core.softmax_bwd(f32(3, 5), f32(3, 5), f32(2, 5)),
    "softmax_xent labels length": lambda: _core.softmax_xent(f32(3, 4), labels=np.zeros(2, i64)),
    "softmax_xent labels out of range": lambda: _core.softmax_xent(
        f32(3, 4), labels=np.array([0, 4, 1], i64)),
    "softmax_xent negative label": lambda: _core.softmax_xent(f32(3, 4), labels=np.array([0, -1, 1], i64)),
    "softmax_xent int32 labels": lambda: _core.softmax_xent(f32(3, 4), labels=np.zeros(3, np.int32)),
    "softmax_xent onehot width": lambda: _core.softmax_xent(f32(3, 4), onehot=f32(3, 5)),
    "softmax_xent both targets": lambda: _core.softmax_xent(
        f32(3, 4), labels=np.zeros(3, i64), onehot=f32(3, 4)),
    "softmax_xent no target": lambda: _core.softmax_xent(f32(3, 4)),
    "softmax_xent grad shape": lambda: _core.softmax_xent(f32(3, 4), labels=np.zeros(3, i64), grad=f32(3, 3)),
    "softmax_xent prob shape": lambda: _core.softmax_xent(f32(3, 4), labels=np.zeros(3, i64), prob=f32(2, 4)),
    "softmax_xent no classes": lambda: _core.softmax_xent(f32(3, 0), labels=np.zeros(3, i64)),
    "sigmoid_bce": lambda: _core.sigmoid_bce(f32(5), f32(4)),
    "sigmoid_bce grad": lambda: _core.sigmoid_bce(f32(5), f32(5), grad=f32(3)),
    "mse": lambda: _core.mse(f32(5), f32(6)),
    "mse grad": lambda: _core.mse(f32(5), f32(5), grad=f32(1)),
    "sgd grad": lambda: _core.sgd_step(f32(5), f32(4), f32(5), 0.1, 0.9, 0.0, False, True),
    "sgd buffer": lambda: _core.sgd_step(f32(5), f32(5), f32(2), 0.1, 0.9, 0.0, False, True),
    "sgd None buffer": lambda: _core.sgd_step(f32(5), f32(5), None, 0.1, 0.9, 0.0, False, True),
    "adam moment": lambda: _core.adam_step(f32(5), f32(5), f32(4), f32(5), 1, 0.1, 0.9, 0.99, 1e-7, 0.0),
    "adam step 0": lambda: _core.adam_step(f32(5), f32(5), f32(5), f32(5), 0, 0.1, 0.9, 0.99, 1e-7, 0.0),
    "arch unknown": lambda: _core.arch_set("sse2"),
}


@pytest.mark.parametrize("case", sorted(CORE_CALLS))
def test_core_rejects_mismatched_arguments(case):
    with pytest.raises((ValueError, TypeError, OverflowError)):
        CORE_CALLS[case]()


def test_core_gemm_with_many_threads_or_none_is_still_correct():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.arange(20, dtype=np.float32).reshape(4, 5)
    for nt in (-5, 0, 1, 64, 10000):
        out = np.full((3, 5), np.nan, dtype=np.float32)
        _core.gemm(a, b, out, n_threads=nt)
        np.testing.assert_allclose(out, a @ b, rtol=1e-6)


def test_core_gemm_with_no_inner_dimension_gives_the_bias():
    out = np.full((3, 5), 7.0, dtype=np.float32)
    _core.gemm(f32(3, 0), f32(0, 5), out, bias=np.arange(5, dtype=np.float32))
    np.testing.assert_array_equal(out, np.tile(np.arange(5, dtype=np.float32), (3, 1)))


# ---- losses called directly ---------------------------------------------------------------------
@pytest.mark.parametrize("loss, y_true, y_pred", [
    (losses.SparseCategoricalCrossentropy(), np.array([0, 3]), np.full((2, 3), 1 / 3)),
    (losses.SparseCategoricalCrossentropy(), np.array([0, 1, 2]), np.full((2, 3), 1 / 3)),
    (losses.CategoricalCrossentropy(), np.eye(4)[[0, 1]], np.full((2, 3), 1 / 3)),
    (losses.BinaryCrossentropy(), np.array([0.0, 2.0]), np.full((2, 1), 0.5)),
    (losses.MeanSquaredError(), np.zeros((2, 2)), np.zeros((2, 3))),
    (losses.MeanSquaredError(), np.zeros((2, 3)), np.array(["a", "b"])),
    (losses.MeanSquaredError(), np.float64(1.0), np.zeros(3)),
    (losses.BinaryCrossentropy(), np.float64(1.0), np.full(3, 0.5)),
    (losses.SparseCategoricalCrossentropy(), np.int64(1), np.full((1, 3), 1 / 3)),
    (losses.MeanSquaredError(), np.zeros(3), np.float64(1.0)),
])
def test_losses_called_directly_reject_bad_input(loss, y_true, y_pred):
    with pytest.raises((ValueError, TypeError)):
        loss(y_true, y_pred)
