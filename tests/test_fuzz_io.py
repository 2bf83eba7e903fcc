"""Property-based fuzzing of ``fnn.load_model`` (hypothesis) over mutated model files: flipped
bytes, truncations, swapped or retyped or reshaped arrays, JSON header mutations and crafted
``.npy`` headers declaring huge shapes. The property: ``load_model`` raises ``ModelFileError`` or
returns a model whose weights have exactly the shapes its architecture implies and whose
``predict`` works; never a crash, a MemoryError or another exception type."""
from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_io import get_header, read_archive, with_header, write_archive

import fastnn as fnn
from fastnn import io as fio
from fastnn import layers as L


# the function-scoped tmp_path is reused by every example on purpose: each writes its own file
# name before loading it, and nothing is carried between examples
def fuzz(n):
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _models():
    mlp = fnn.Sequential([L.Dense(6, activation="relu"), L.Dropout(0.25), L.Dense(3, activation="softmax")],
                         input_shape=(4,), name="mlp")
    mlp.compile("adam", loss="sparse_categorical_crossentropy", metrics=("accuracy",))
    mlp.fit(np.random.default_rng(0).standard_normal((8, 4)), np.arange(8) % 3, epochs=1, verbose=0)
    cnn = fnn.Sequential([L.Conv2D(2, 3, padding="same", activation="relu"), L.MaxPool2D(2), L.Flatten(),
                          L.Dense(2)], input_shape=(1, 6, 6), dtype="float64", name="cnn")
    rnn = fnn.Sequential([L.GRU(3, return_sequences=True), L.LSTM(2), L.Dense(1, activation="sigmoid")],
                         input_shape=(3, 2), name="rnn")
    rnn.compile(fnn.optimizers.SGD(0.1, momentum=0.9), loss="binary_crossentropy")
    rnn.fit(np.ones((4, 3, 2)), np.ones(4), epochs=1, verbose=0)
    return {"mlp": mlp, "cnn": cnn, "rnn": rnn}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{name: (raw bytes, arrays)} of three saved models (dense + dropout with Adam state, a CNN in
    float64, stacked recurrent layers with SGD momentum)."""
    out = {}
    for name, model in _models().items():
        path = tmp_path_factory.mktemp("fuzz_io") / f"{name}.fnn"
        model.save(path)
        out[name] = (path.read_bytes(), read_archive(path))
    return out


def check_load(path):
    """The property: ModelFileError, or a usable model with the architecture's weight shapes."""
    try:
        model = fnn.load_model(path)
    except fnn.ModelFileError as err:
        assert str(err)
        return None
    shape = tuple(model.input_shape)
    for layer in model.layers:
        want = [tuple(s) for s, _ in layer.param_specs(shape)]
        got = layer.get_weights()
        assert [w.shape for w in got] == want and all(w.dtype == model.dtype for w in got)
        shape = tuple(layer.compute_output_shape(shape))
    if math.prod(model.input_shape) <= 10**5:
        y = model.predict(np.ones((2,) + tuple(model.input_shape)))
        assert y.shape == (2,) + shape
    return model


names = st.sampled_from(["mlp", "cnn", "rnn"])


# ---- bytes -------------------------------------------------------------------------------------

@fuzz(60)
@given(name=names, flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                                  min_size=1, max_size=8))
def test_flipped_bytes(saved, tmp_path, name, flips):
    raw = bytearray(saved[name][0])
    for where, mask in flips:
        raw[int(where * len(raw))] ^= mask
    path = tmp_path / "flipped.fnn"
    path.write_bytes(bytes(raw))
    check_load(path)


@fuzz(40)
@given(name=names, keep=st.floats(0, 1, exclude_max=True))
def test_truncated(saved, tmp_path, name, keep):
    raw = saved[name][0]
    path = tmp_path / "truncated.fnn"
    path.write_bytes(raw[:int(keep * len(raw))])
    assert check_load(path) is None


# ---- arrays ------------------------------------------------------------------------------------

def _weight_keys(arrays):
    return sorted(k for k in arrays if k != fio._HEADER)


WRONG_DTYPES = [np.int32, np.int64, np.float16, np.bool_, np.complex64, np.complex128, np.uint8,
                np.dtype([("a", "<f4"), ("b", "<i4")]), np.dtype(">f8"), np.dtype(">f4"), np.float32, np.float64]


@fuzz(60)
@given(name=names, data=st.data(),
       change=st.sampled_from(["swap", "dtype", "shape", "transpose", "scalar", "empty", "delete", "extra_dim"]))
def test_mutated_arrays(saved, tmp_path, name, data, change):
    arrays = dict(saved[name][1])
    keys = _weight_keys(arrays)
    key = data.draw(st.sampled_from(keys), label="key")
    a = arrays[key]
    if change == "swap":
        other = data.draw(st.sampled_from(keys), label="other")
        arrays[key], arrays[other] = arrays[other], a
    elif change == "dtype":
        dt = np.dtype(data.draw(st.sampled_from(WRONG_DTYPES), label="dtype"))
        arrays[key] = np.zeros(a.shape, dt) if dt.names else a.astype(dt)
    elif change == "shape":
        shape = tuple(data.draw(st.lists(st.integers(0, 7), max_size=3), label="shape"))
        arrays[key] = np.resize(a, shape).astype(a.dtype)
    elif change == "transpose":
        arrays[key] = a.T.copy()
    elif change == "scalar":
        arrays[key] = np.asarray(a.reshape(-1)[:1].sum(), a.dtype)
    elif change == "empty":
        arrays[key] = np.zeros((0,) + a.shape[1:], a.dtype)
    elif change == "delete":
        del arrays[key]
    else:
        arrays[key] = a[..., None]
    path = tmp_path / "arrays.fnn"
    write_archive(path, arrays)
    model = check_load(path)
    if model is not None and change in ("delete", "extra_dim", "empty", "scalar"):
        raise AssertionError(f"a file with a {change} array loaded")


# ---- crafted .npy headers ------------------------------------------------------------------------

def _npy_bytes(shape, descr, payload: bytes, version=(1, 0)) -> bytes:
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, header)
    else:
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue() + payload


def _zip(path, members: dict, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, blob in members.items():
            zf.writestr(name + ".npy", blob)


@fuzz(40)
@given(name=names, data=st.data(), huge=st.sampled_from([10**12, 2**40, 2**62, 10**9, 3 * 2**31]),
       descr=st.sampled_from(["<f8", "<f4", "|u1", "|b1", "<c16", "<i8"]),
       compress=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]), version=st.sampled_from([(1, 0), (2, 0)]),
       payload=st.integers(0, 64))
def test_member_declaring_a_huge_shape(saved, tmp_path, name, data, huge, descr, compress, version, payload):
    """A member whose .npy header declares (huge,) or (huge, k) with a tiny payload: refused before
    anything is allocated (this raised MemoryError)."""
    arrays = saved[name][1]
    members = {}
    for k, v in arrays.items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.asarray(v), allow_pickle=False)
        members[k] = buf.getvalue()
    key = data.draw(st.sampled_from(sorted(members)), label="key")
    shape = data.draw(st.sampled_from([(huge,), (huge, 3), (3, huge), (huge, huge)]), label="shape")
    members[key] = _npy_bytes(shape, descr, b"\0" * payload, version)
    path = tmp_path / "huge.fnn"
    _zip(path, members, compress)
    assert check_load(path) is None


def test_huge_member_raises_model_file_error_not_memory_error(saved, tmp_path):
    """Regression: the first weight declared as (10**12,) float64 with 8 bytes of data."""
    arrays = saved["mlp"][1]
    members = {}
    for k, v in arrays.items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.asarray(v), allow_pickle=False)
        members[k] = buf.getvalue()
    members["layer0/w0"] = _npy_bytes((10**12,), "<f8", b"\0" * 8)
    path = tmp_path / "huge.fnn"
    _zip(path, members)
    with pytest.raises(fnn.ModelFileError, match="declares"):
        fnn.load_model(path)
    # the header as well, and an unused extra member is never read
    members["layer0/w0"] = _npy_bytes(arrays["layer0/w0"].shape, "<f4", arrays["layer0/w0"].tobytes())
    members["junk"] = _npy_bytes((10**12,), "<f8", b"")
    _zip(path, members)
    assert check_load(path) is not None
    members[fio._HEADER] = _npy_bytes((10**12,), "|u1", b"{}")
    _zip(path, members)
    with pytest.raises(fnn.ModelFileError):
        fnn.load_model(path)


def test_member_declaring_more_than_the_zip_holds(saved, tmp_path):
    """A zip directory entry claiming a huge uncompressed size for a small deflated member."""
    raw = saved["mlp"][0]
    buf = io.BytesIO(raw)
    with zipfile.ZipFile(buf) as zf:
        contents = {i.filename: zf.read(i) for i in zf.infolist()}
    path = tmp_path / "bomb.fnn"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n, blob in contents.items():
            zf.writestr(n, blob)
    assert check_load(path) is not None          # deflated members are fine
    data = bytearray(path.read_bytes())
    # patch the central directory's uncompressed size of the first weight to 2**31
    start = 0
    while True:
        start = data.find(b"PK\x01\x02", start)
        if start < 0:
            break
        fname_len = int.from_bytes(data[start + 28:start + 30], "little")
        fname = bytes(data[start + 46:start + 46 + fname_len])
        if fname == b"layer0/w0.npy":
            data[start + 24:start + 28] = (2**31).to_bytes(4, "little")
        start += 4
    path.write_bytes(bytes(data))
    assert check_load(path) is None


# ---- the JSON header ----------------------------------------------------------------------------

junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.sampled_from([10**12, -1, 0, 2**63]),
              st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["NaN", "inf", "", "Dense", "x" * 50]),
              st.text(max_size=5)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=8)


def _paths(obj, prefix=()):
    """Every key path in a JSON tree."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def _delete(obj, path):
    for k in path[:-1]:
        obj = obj[k]
    del obj[path[-1]]


@fuzz(120)
@given(name=names, data=st.data(), action=st.sampled_from(["set", "set", "delete", "class", "number"]))
def test_header_mutations(saved, tmp_path, name, data, action):
    arrays = saved[name][1]
    header = get_header(arrays)
    paths = [p for p in _paths(header) if p]
    where = data.draw(st.sampled_from(paths), label="path")
    if action == "set":
        _set(header, where, data.draw(junk, label="value"))
    elif action == "delete":
        _delete(header, where)
    elif action == "class":
        i = data.draw(st.integers(0, len(header["layers"]) - 1), label="layer")
        header["layers"][i]["class"] = data.draw(st.sampled_from(
            ["Dense", "Conv2D", "LSTM", "GRU", "SimpleRNN", "Flatten", "Dropout", "MaxPool2D", "AvgPool2D",
             "ReLU", "Softmax", "Layer", "Sequential", "__import__", "dense", ""]), label="class")
    else:
        _set(header, where, data.draw(st.sampled_from([10**12, -(10**12), 2**31, 2**63, -1, 0, 1, 10**400 // 10**300,
                                                       float("nan"), 1e308, 0.5, True]), label="number"))
    path = tmp_path / "header.fnn"
    try:
        write_archive(path, with_header(arrays, header))
    except (ValueError, TypeError):     # json.dumps of a non-string key etc.
        return
    check_load(path)


@pytest.mark.parametrize("raw", [b"[" * 40 + b"]" * 40, b'{"a":' * 40 + b"1" + b"}" * 40, b"1" * 5000,
                                 b'{"format": "fastnn-model", "version": 1, "layers": ' + b"[" * 33 + b"]" * 33 + b"}",
                                 b" " * (1 << 20 + 1)])
def test_header_nesting_and_size_are_bounded(saved, tmp_path, raw):
    arrays = dict(saved["mlp"][1])
    arrays[fio._HEADER] = np.frombuffer(raw, dtype=np.uint8)
    path = tmp_path / "nested.fnn"
    write_archive(path, arrays)
    with pytest.raises(fnn.ModelFileError):
        fnn.load_model(path)


@pytest.mark.parametrize("field, value", [
    ("units", 10**12), ("units", -4), ("units", float("nan")), ("units", "NaN"), ("units", 2**63),
    ("units", [6]), ("units", {"a": 1}), ("activation", 5), ("use_bias", "yes"), ("kernel_initializer", None),
])
def test_dense_config_junk(saved, tmp_path, field, value):
    arrays = saved["mlp"][1]
    header = get_header(arrays)
    header["layers"][0]["config"][field] = value
    path = tmp_path / "dense.fnn"
    write_archive(path, with_header(arrays, header))
    with pytest.raises(fnn.ModelFileError):
        fnn.load_model(path)


def test_weights_of_another_dtype_are_refused(saved, tmp_path):
    """Weights stored as float64 (or int) in a float32 model were silently cast; the file must
    hold the model's dtype."""
    arrays = dict(saved["mlp"][1])
    arrays["layer0/w0"] = arrays["layer0/w0"].astype(np.float64)
    path = tmp_path / "f64.fnn"
    write_archive(path, arrays)
    with pytest.raises(fnn.ModelFileError, match="float32"):
        fnn.load_model(path)


def test_header_json_with_nan_and_big_numbers_round_trips_into_errors(saved, tmp_path):
    arrays = saved["rnn"][1]
    header = get_header(arrays)
    header["input_shape"] = [3.0, 2]
    path = tmp_path / "float_shape.fnn"
    write_archive(path, with_header(arrays, header))
    with pytest.raises(fnn.ModelFileError, match="input_shape"):
        fnn.load_model(path)
    json.dumps(header)
