"""Property-based fuzzing of every layer's forward and backward (hypothesis) against the pure-NumPy
reference backend, over random configurations and input shapes in both dtypes; and of bad inputs
to layers and to Sequential.fit/predict/evaluate, which must raise ValueError/TypeError (or
RuntimeError for a backward before forward), never crash."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_recurrent import _close, _run

import fastnn as fnn
from fastnn.backend import numpy_ref
from fastnn.layers import (
    GRU,
    LSTM,
    AvgPool2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    SimpleRNN,
    Softmax,
    Tanh,
)

ERRORS = (ValueError, TypeError)
dtypes = st.sampled_from([np.float32, np.float64])
small = st.integers(1, 4)
int_or_pair = st.one_of(small, st.tuples(small, small))


@st.composite
def layer_cases(draw):
    """(make_layer, input shape without the batch axis)."""
    kind = draw(st.sampled_from(["dense", "conv", "maxpool", "avgpool", "flatten", "act", "rnn"]))
    if kind == "dense":
        act = draw(st.sampled_from([None, "relu", "sigmoid", "tanh", "softmax", "linear"]))
        units, use_bias = draw(small), draw(st.booleans())
        return (lambda: Dense(units, activation=act, use_bias=use_bias)), (draw(st.integers(1, 9)),)
    if kind == "conv":
        f, k, s = draw(small), draw(int_or_pair), draw(int_or_pair)
        pad = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)),
                             st.sampled_from(["same", "valid"])))
        act, use_bias = draw(st.sampled_from([None, "relu"])), draw(st.booleans())
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(1, 7)))
        return (lambda: Conv2D(f, k, stride=s, padding=pad, activation=act, use_bias=use_bias)), shape
    if kind in ("maxpool", "avgpool"):
        cls = MaxPool2D if kind == "maxpool" else AvgPool2D
        pool, stride = draw(int_or_pair), draw(st.one_of(st.none(), int_or_pair))
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(1, 7)))
        return (lambda: cls(pool, stride=stride)), shape
    if kind == "flatten":
        return Flatten, tuple(draw(st.lists(small, min_size=1, max_size=3)))
    if kind == "act":
        alpha = draw(st.floats(0, 1))
        make = draw(st.sampled_from([ReLU, Sigmoid, Tanh, Softmax, lambda: LeakyReLU(alpha)]))
        return make, tuple(draw(st.lists(small, min_size=1, max_size=3)))
    cls = draw(st.sampled_from([SimpleRNN, LSTM, GRU]))
    units, seq = draw(small), draw(st.booleans())
    return (lambda: cls(units, return_sequences=seq)), (draw(small), draw(small))


@contextlib.contextmanager
def on_numpy_ref(layer):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(layer), "backend", property(lambda self: numpy_ref))
        yield


@settings(max_examples=150, deadline=None)
@given(case=layer_cases(), n=st.integers(0, 4), dtype=dtypes, seed=st.integers(0, 2**32 - 1))
def test_layer_matches_numpy_ref(case, n, dtype, seed):
    make, shape = case
    rng = np.random.default_rng(seed)
    layer = make()
    try:
        layer.build(shape, dtype=dtype)
    except ERRORS:        # e.g. a kernel larger than the padded input
        return
    # random weights (zero biases would hide bias bugs)
    layer.set_weights([rng.uniform(-1, 1, w.shape) for w in layer.get_weights()])
    x = (rng.standard_normal((n,) + shape) * 2).astype(dtype)
    r = rng.standard_normal((n,) + layer.output_shape).astype(dtype)
    got = _run(layer, x, r)
    assert got[0].shape == (n,) + layer.output_shape and got[0].dtype == dtype
    assert got[1].shape == x.shape and got[1].dtype == dtype
    with on_numpy_ref(layer):
        want = _run(layer, x, r)
    for i, (a, b) in enumerate(zip(got, want)):
        _close(a, b, dtype, f"{layer.name} {shape} output {i}")


@settings(max_examples=40, deadline=None)
@given(rate=st.floats(0, 0.95), shape=st.lists(small, min_size=1, max_size=3), n=st.integers(0, 4), dtype=dtypes,
       seed=st.integers(0, 2**32 - 1))
def test_dropout_matches_numpy_ref(rate, shape, n, dtype, seed):
    rng = np.random.default_rng(seed)
    layer = Dropout(rate)
    layer.build(tuple(shape), dtype=dtype)
    x = rng.standard_normal((n,) + tuple(shape)).astype(dtype)
    r = rng.standard_normal(x.shape).astype(dtype)
    counter = layer.counter
    got = _run(layer, x, r)
    layer.counter = counter
    with on_numpy_ref(layer):
        want = _run(layer, x, r)
    for a, b in zip(got, want):
        _close(a, b, dtype, f"dropout {rate}")


bad_arrays = st.sampled_from(["rank-1", "rank+1", "scalar", "wrong-feature", "int", "bool", "complex", "object",
                              "str", "list", "none", "nan", "float16"])


def _bad(kind, good, rng):
    return {
        "rank-1": lambda: good[0], "rank+1": lambda: good[..., None], "scalar": lambda: np.float64(1.0),
        "wrong-feature": lambda: np.concatenate([good, good], axis=-1),
        "int": lambda: good.astype(np.int64), "bool": lambda: good > 0, "complex": lambda: good.astype(complex),
        "object": lambda: good.astype(object), "str": lambda: "abc", "list": lambda: good.tolist(),
        "none": lambda: None, "nan": lambda: np.full_like(good, np.nan), "float16": lambda: good.astype(np.float16),
    }[kind]()


@settings(max_examples=100, deadline=None)
@given(case=layer_cases(), dtype=dtypes, bad=bad_arrays, where=st.sampled_from(["forward", "backward", "early"]),
       seed=st.integers(0, 2**32 - 1))
def test_layer_bad_inputs_raise_cleanly(case, dtype, bad, where, seed):
    make, shape = case
    rng = np.random.default_rng(seed)
    layer = make()
    try:
        layer.build(shape, dtype=dtype)
    except ERRORS:
        return
    x = rng.standard_normal((2,) + shape).astype(dtype)
    if where == "early":     # backward before any forward, of any dy
        with pytest.raises(RuntimeError):
            layer.backward(np.ones((2,) + layer.output_shape))
        return
    if where == "forward":
        arg = _bad(bad, x, rng)
        try:
            y = layer.forward(arg)
        except ERRORS:
            return
        # accepted: a value convertible to the right shape (ints, bools, lists, NaN, float16)
        assert y.shape == (2,) + layer.output_shape and y.dtype == dtype
        return
    layer.forward(x)
    dy = rng.standard_normal((2,) + layer.output_shape).astype(dtype)
    arg = _bad(bad, dy, rng)
    try:
        dx = layer.backward(arg)
    except ERRORS:
        return
    assert dx.shape == x.shape and dx.dtype == dtype


# ---- Sequential ----------------------------------------------------------------------------------

def _model(kind, dtype):
    if kind == "sparse":
        m = fnn.Sequential([Dense(4, activation="relu"), Dense(3, activation="softmax")], input_shape=(5,),
                           dtype=dtype)
        m.compile("sgd", loss="sparse_categorical_crossentropy", metrics=("accuracy",))
    elif kind == "binary":
        m = fnn.Sequential([Dense(1, activation="sigmoid")], input_shape=(5,), dtype=dtype)
        m.compile("adam", loss="binary_crossentropy")
    elif kind == "categorical":
        m = fnn.Sequential([Dense(3, activation="softmax")], input_shape=(5,), dtype=dtype)
        m.compile("adam", loss="categorical_crossentropy")
    else:
        m = fnn.Sequential([Dense(2)], input_shape=(5,), dtype=dtype)
        m.compile("sgd", loss="mse")
    return m


def _labels(kind, n, rng):
    return {"sparse": lambda: rng.integers(0, 3, n), "binary": lambda: rng.integers(0, 2, n).astype(float),
            "categorical": lambda: np.eye(3)[rng.integers(0, 3, n)], "mse": lambda: rng.standard_normal((n, 2))}[kind]()


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(["sparse", "binary", "categorical", "mse"]), dtype=dtypes,
       method=st.sampled_from(["fit", "evaluate", "predict", "train_on_batch"]),
       x_bad=st.sampled_from([None, "rank", "features", "nan", "inf", "int", "complex", "object", "empty", "str"]),
       y_bad=st.sampled_from([None, "n", "range", "negative", "float-labels", "nan", "rank", "object", "complex",
                              "str", "huge", "bool"]),
       seed=st.integers(0, 2**32 - 1))
def test_sequential_bad_inputs_raise_cleanly(kind, dtype, method, x_bad, y_bad, seed):
    rng = np.random.default_rng(seed)
    model = _model(kind, dtype)
    n = 6
    x = rng.standard_normal((n, 5))
    y = _labels(kind, n, rng)
    # "nan"/"inf": values above 1 and always the first one (a draw may have none above 1)
    x = {None: lambda: x, "rank": lambda: x[:, :, None], "features": lambda: x[:, :4], "nan": lambda: np.where(
        (x > 1) | (np.arange(x.size) == 0).reshape(x.shape), np.nan, x),
         "inf": lambda: np.where((x > 1) | (np.arange(x.size) == 0).reshape(x.shape), np.inf, x),
         "int": lambda: x.astype(np.int64),
         "complex": lambda: x.astype(complex), "object": lambda: x.astype(object), "empty": lambda: x[:0],
         "str": lambda: "x"}[x_bad]()
    y = {None: lambda: y, "n": lambda: y[:-1], "range": lambda: y * 0 + 7, "negative": lambda: y * 0 - 1,
         "float-labels": lambda: y + 0.5,
         "nan": lambda: np.where((rng.random(y.shape) < 0.5) | (np.arange(y.size) == 0).reshape(y.shape), np.nan, y),
         "rank": lambda: y[..., None, None], "object": lambda: y.astype(object), "complex": lambda: y.astype(complex),
         "str": lambda: np.array(["a"] * len(y)), "huge": lambda: y * 0 + 2**62, "bool": lambda: y > 0}[y_bad]()
    call = {"fit": lambda: model.fit(x, y, batch_size=4, epochs=1, verbose=0),
            "evaluate": lambda: model.evaluate(x, y, verbose=0) if _takes_verbose(model.evaluate)
            else model.evaluate(x, y),
            "predict": lambda: model.predict(x),
            "train_on_batch": lambda: model.train_on_batch(x, y)}[method]
    try:
        call()
    except ERRORS:
        return
    # accepted: must be a reasonable call (predict ignores y; NaN/inf only where nothing trains on them)
    if method != "predict":
        # categorical targets are non-negative weights, not necessarily one-hot (as Keras)
        assert y_bad in (None, "bool", "float-labels") or (y_bad in ("range", "negative", "huge", "nan")
                                                        and kind == "mse") or \
            (y_bad in ("range", "huge") and kind == "categorical"), f"labels {y_bad} accepted"
        assert x_bad in (None, "int") or (x_bad in ("nan", "inf") and method == "evaluate"), f"x {x_bad} accepted"
    else:
        assert x_bad in (None, "int", "nan", "inf", "empty"), f"x {x_bad} accepted by predict"


def _takes_verbose(fn):
    import inspect
    return "verbose" in inspect.signature(fn).parameters


@pytest.mark.parametrize("make, shape", [(Flatten, (1,)), (Flatten, (2, 3)),
                                         (lambda: Conv2D(2, 1, activation="softmax"), (1, 2, 2))])
def test_empty_batch_through_reshaping_layers(make, shape):
    """Regression: Flatten (and a softmax activation over several axes) reshaped with (N, -1),
    which NumPy refuses for N == 0 ("cannot reshape array of size 0")."""
    layer = make()
    x = np.zeros((0,) + shape)
    y = layer.forward(x)
    assert y.shape == (0,) + layer.output_shape
    assert layer.backward(np.zeros(y.shape)).shape == x.shape
