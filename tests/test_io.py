"""Model files: exact round trips, resumed training, no pickle, and corrupt or hostile files."""
from __future__ import annotations

import json
import os
import pathlib
import struct
import zipfile

import numpy as np
import pytest

import fastnn as fnn
from fastnn import io as fio
from fastnn import layers as L
from fastnn import losses, optimizers


# ---- helpers ------------------------------------------------------------------------------------
def make_model(dtype="float32", compiled=True, optimizer=None):
    model = fnn.Sequential([
        L.Dense(16, use_bias=False, kernel_initializer="he_normal", name="hidden"),
        L.LeakyReLU(alpha=0.2),
        L.Dropout(0.3),
        L.Dense(8, activation="tanh"),
        L.Dropout(0.1),
        L.Dense(3, activation="softmax"),
    ], input_shape=(5,), dtype=dtype, name="saved_model")
    if compiled:
        model.compile(optimizer or optimizers.Adam(learning_rate=0.01),
                      loss="sparse_categorical_crossentropy", metrics=("accuracy",))
    return model


def data(rng, n=64, d=5, k=3):
    return rng.standard_normal((n, d)), rng.integers(0, k, n)


def read_archive(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_archive(path, arrays: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def get_header(arrays: dict) -> dict:
    return json.loads(arrays[fio._HEADER].tobytes().decode("utf-8"))


def with_header(arrays: dict, header) -> dict:
    out = dict(arrays)
    out[fio._HEADER] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    return out


@pytest.fixture
def saved(tmp_path, rng):
    """A trained, compiled model (Adam state, dropout counters) and the path it was saved to."""
    model = make_model()
    x, y = data(rng)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "model.fnn"
    model.save(path)
    return model, path


# ---- round trips --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_predictions_are_exact(tmp_path, rng, dtype):
    model = make_model(dtype)
    x, y = data(rng)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    path = tmp_path / f"m_{dtype}.npz"
    model.save(path)
    loaded = fnn.load_model(path)
    assert isinstance(loaded, fnn.Sequential)
    assert loaded.dtype == np.dtype(dtype) and loaded.name == "saved_model"
    assert loaded.built and loaded.input_shape == (5,) and loaded.output_shape == (3,)
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    assert [a.get_config() for a in loaded.layers] == [b.get_config() for b in model.layers]
    assert loaded.layers[0].use_bias is False and len(loaded.layers[0].get_weights()) == 1
    assert loaded.layers[1].alpha == 0.2
    assert loaded.layers[2].rate == 0.3
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)
    xt = rng.standard_normal((37, 5))
    np.testing.assert_array_equal(loaded.predict(xt), model.predict(xt))
    assert loaded.evaluate(x, y) == model.evaluate(x, y)


def test_uncompiled_model_round_trip(tmp_path, rng):
    model = make_model(compiled=False)
    path = tmp_path / "plain.fnn"
    model.save(path)
    loaded = fnn.load_model(path)
    assert loaded.loss is None and loaded.optimizer is None
    x, y = data(rng, n=9)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    with pytest.raises(RuntimeError):
        loaded.fit(x, y, verbose=0)


@pytest.mark.parametrize("loss, metrics", [
    (losses.SparseCategoricalCrossentropy(from_logits=True), ("accuracy",)),
    (losses.CategoricalCrossentropy(), ("acc", "mse")),
    (losses.MeanSquaredError(), ("mae",)),
    (losses.BinaryCrossentropy(from_logits=True), ()),
])
@pytest.mark.parametrize("opt", [
    optimizers.SGD(learning_rate=0.03, momentum=0.8, nesterov=True, weight_decay=1e-3, clipnorm=2.0),
    optimizers.Adam(learning_rate=0.002, beta_1=0.8, beta_2=0.99, epsilon=1e-6, clipvalue=0.5),
], ids=["sgd", "adam"])
def test_compile_settings_are_restored(tmp_path, loss, metrics, opt):
    model = fnn.Sequential([L.Dense(4)], input_shape=(3,))
    model.compile(optimizer=opt, loss=loss, metrics=metrics)
    path = tmp_path / "c.fnn"
    model.save(path)
    loaded = fnn.load_model(path)
    assert type(loaded.loss) is type(loss) and loaded.loss.from_logits == loss.from_logits
    assert loaded.metrics == tuple(metrics)
    assert type(loaded.optimizer) is type(opt)
    assert loaded.optimizer is not opt
    assert loaded.optimizer.get_config() == opt.get_config()


@pytest.mark.parametrize("make_opt", [
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.5, weight_decay=0.01),
    lambda: optimizers.Adam(learning_rate=0.01),
], ids=["sgd-nesterov", "sgd-momentum", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resumed_training_is_exact(tmp_path, rng, make_opt, dtype):
    """2 steps, save, load, 2 more steps == 4 steps without saving: weights, optimizer state,
    iteration count and dropout mask stream all survive the file."""
    model = make_model(dtype, optimizer=make_opt())
    model.save(tmp_path / "start.fnn")
    twin = fnn.load_model(tmp_path / "start.fnn")       # identical start, incl. dropout seeds
    batches = [data(rng, n=n) for n in (16, 16, 11, 16)]

    for xb, yb in batches:
        model.train_on_batch(xb, yb)

    for xb, yb in batches[:2]:
        twin.train_on_batch(xb, yb)
    twin.save(tmp_path / "middle.fnn")
    resumed = fnn.load_model(tmp_path / "middle.fnn")
    assert resumed.optimizer.iterations == 2
    assert [d.counter for d in resumed.layers if isinstance(d, L.Dropout)] == \
           [d.counter for d in twin.layers if isinstance(d, L.Dropout)]
    for xb, yb in batches[2:]:
        resumed.train_on_batch(xb, yb)

    assert resumed.optimizer.iterations == model.optimizer.iterations == 4
    for a, b in zip(resumed.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert sorted(resumed.optimizer.state) == sorted(model.optimizer.state)
    for key, buf in model.optimizer.state.items():
        np.testing.assert_array_equal(resumed.optimizer.state[key], buf)
    x, _ = data(rng, n=20)
    np.testing.assert_array_equal(resumed.predict(x), model.predict(x))


def test_resumed_fit_is_exact(tmp_path, rng):
    """fit(2 epochs) + save + load + fit(2 epochs) == fit(4 epochs), with shuffle=False."""
    model = make_model()
    model.save(tmp_path / "start.fnn")
    twin = fnn.load_model(tmp_path / "start.fnn")
    x, y = data(rng, n=50)
    model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0)
    twin.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    twin.save(tmp_path / "middle.fnn")
    resumed = fnn.load_model(tmp_path / "middle.fnn")
    resumed.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(resumed.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_save_overwrites_and_round_trips_twice(tmp_path, rng):
    model = make_model()
    path = tmp_path / "m.fnn"
    model.save(path)
    x, y = data(rng)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(path)                                    # overwrite with the trained weights
    again = fnn.load_model(path)
    again.save(tmp_path / "m2.fnn")
    final = fnn.load_model(tmp_path / "m2.fnn")
    for a, b in zip(final.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---- the file itself ----------------------------------------------------------------------------
def test_file_needs_no_pickle(saved):
    _, path = saved
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert arrays
    assert all(a.dtype.kind in "biuf" for a in arrays.values()), {k: a.dtype for k, a in arrays.items()}
    with zipfile.ZipFile(path) as zf:
        assert all(name.endswith(".npy") for name in zf.namelist())
    header = get_header(arrays)
    assert header["format"] == "fastnn-model" and isinstance(header["version"], int)


def test_path_is_used_as_given(tmp_path, rng):
    model = make_model()
    for name in ("model.fnn", "no_extension", "weights.npz", "dots.in.name.bin"):
        path = tmp_path / name
        model.save(str(path))
        assert name in os.listdir(tmp_path) and not (tmp_path / (name + ".npz")).exists()
        loaded = fnn.load_model(str(path))
        x, _ = data(rng, n=4)
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert not any(n.endswith(".npz.npz") or n == "model.fnn.npz" for n in os.listdir(tmp_path))
    fnn.load_model(pathlib.Path(tmp_path / "model.fnn"))     # os.PathLike works too


def test_saving_an_unbuilt_model_raises(tmp_path):
    model = fnn.Sequential([L.Dense(3)])
    # API.md, Errors: "unbuilt models ... raise ValueError or TypeError"
    with pytest.raises((ValueError, TypeError), match="built"):
        model.save(tmp_path / "unbuilt.fnn")
    assert not (tmp_path / "unbuilt.fnn").exists()


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fnn.load_model(tmp_path / "nope.fnn")


# ---- corrupt and hostile files ------------------------------------------------------------------
def assert_rejected(path, match=None):
    assert issubclass(fnn.ModelFileError, ValueError)
    with pytest.raises(fnn.ModelFileError, match=match) as info:
        model = fnn.load_model(path)
        # a file that loads must also be usable: corrupt values may not surface later as crashes
        x = np.ones((2,) + tuple(model.input_shape))
        model.predict(x)
        if model.loss is not None:
            model.fit(x, np.zeros(2, dtype=np.int64), verbose=0)
    assert str(info.value)
    return info.value


def test_empty_file(tmp_path):
    path = tmp_path / "empty.fnn"
    path.write_bytes(b"")
    assert_rejected(path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 100])
def test_truncated_file(saved, tmp_path, keep):
    _, path = saved
    raw = path.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else keep
    bad = tmp_path / "truncated.fnn"
    bad.write_bytes(raw[:n])
    assert_rejected(bad)


@pytest.mark.parametrize("prefix", [b"", b"PK\x03\x04", b"\x93NUMPY", b"\x80\x04"])
def test_random_bytes(tmp_path, rng, prefix):
    path = tmp_path / "random.fnn"
    path.write_bytes(prefix + rng.bytes(3000))
    assert_rejected(path)


def test_corrupted_bytes_inside_the_archive(saved, tmp_path, rng):
    _, path = saved
    raw = bytearray(path.read_bytes())
    for _ in range(5):
        i = int(rng.integers(len(raw) // 4, len(raw)))
        raw[i:i + 16] = rng.bytes(16)
        bad = tmp_path / "flipped.fnn"
        bad.write_bytes(bytes(raw))
        try:
            model = fnn.load_model(bad)
        except ValueError:
            continue                                     # ModelFileError (or a plain ValueError)
        model.predict(np.ones((2, 5)))                   # a file that loads still works


def central_directory_offset(raw: bytes) -> int:
    """Offset of the first central directory record (np.savez writes no archive comment)."""
    assert raw[-22:-18] == b"PK\x05\x06"
    offset = struct.unpack("<I", raw[-6:-2])[0]
    assert raw[offset:offset + 4] == b"PK\x01\x02"
    return offset


@pytest.mark.parametrize("field, offset, value", [
    ("version needed to extract", 6, 113),               # zipfile: NotImplementedError
    ("general purpose flags: encrypted", 8, 1),          # zipfile: RuntimeError
    ("compression method", 10, 99),                      # zipfile: NotImplementedError
    ("compression method: deflate on stored data", 10, 8),
])
def test_odd_zip_headers(saved, tmp_path, field, offset, value):
    _, path = saved
    raw = bytearray(path.read_bytes())
    cd = central_directory_offset(bytes(raw))
    raw[cd + offset:cd + offset + 2] = struct.pack("<H", value)
    bad = tmp_path / "odd_zip.fnn"
    bad.write_bytes(bytes(raw))
    assert_rejected(bad)


def test_corrupt_compressed_member(saved, tmp_path, rng):
    _, path = saved
    compressed = tmp_path / "compressed.fnn"
    with open(compressed, "wb") as f:
        np.savez_compressed(f, **read_archive(path))
    raw = bytearray(compressed.read_bytes())
    with zipfile.ZipFile(compressed) as zf:
        info = max(zf.infolist(), key=lambda i: i.compress_size)
    local = info.header_offset
    name_len, extra_len = struct.unpack("<HH", bytes(raw[local + 26:local + 30]))
    start = local + 30 + name_len + extra_len
    raw[start + 2:start + info.compress_size - 2] = rng.bytes(info.compress_size - 4)
    bad = tmp_path / "bad_deflate.fnn"
    bad.write_bytes(bytes(raw))
    assert_rejected(bad)


def test_a_plain_npy_file(tmp_path):
    path = tmp_path / "array.fnn"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 3)))
    assert_rejected(path)


def test_a_plain_npz_without_the_header(tmp_path):
    path = tmp_path / "plain.npz"
    write_archive(path, {"a": np.zeros(3), "layer0/w0": np.ones((5, 16))})
    assert_rejected(path, match="fastnn")


def test_an_archive_with_a_pickled_object_runs_no_code(saved, tmp_path):
    _, path = saved
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    arrays = read_archive(path)
    arrays["layer0/w0"] = np.array([Evil()], dtype=object)
    bad = tmp_path / "evil.fnn"
    with open(bad, "wb") as f:
        np.savez(f, **arrays)                           # savez pickles object arrays
    assert_rejected(bad)
    assert not marker.exists()


def header_cases():
    def setter(*keys, value):
        def mutate(h):
            d = h
            for k in keys[:-1]:
                d = d[k]
            d[keys[-1]] = value
            return h
        return mutate

    def delete(*keys):
        def mutate(h):
            d = h
            for k in keys[:-1]:
                d = d[k]
            del d[keys[-1]]
            return h
        return mutate

    return {
        "wrong format": setter("format", value="keras-model"),
        "no format": delete("format"),
        "future version": setter("version", value=fio.VERSION + 1),
        "version as str": setter("version", value=str(fio.VERSION)),
        "unknown layer class": setter("layers", 0, "class", value="os.system"),
        "dotted layer class": setter("layers", 0, "class", value="fastnn.layers.Dense"),
        "builtin layer class": setter("layers", 0, "class", value="eval"),
        "layer entry not a dict": setter("layers", 0, value="Dense"),
        "config not a dict": setter("layers", 0, "config", value=[16]),
        "config list value": setter("layers", 0, "config", "units", value=[16]),
        "config dict value": setter("layers", 0, "config", "units", value={"__class__": "x"}),
        "config unknown argument": setter("layers", 0, "config", "evil", value=1),
        "config bad value": setter("layers", 0, "config", "units", value=-3),
        "config wrong type": setter("layers", 0, "config", "units", value="16"),
        "layers not a list": setter("layers", value=7),
        "no layers": setter("layers", value=[]),
        "no input shape": delete("input_shape"),
        "input shape mismatches weights": setter("input_shape", value=[7]),
        "input shape nonsense": setter("input_shape", value=["a"]),
        "input shape negative": setter("input_shape", value=[-5]),
        "input shape infinite": setter("input_shape", value=[float("inf")]),
        "input shape huge": setter("input_shape", value=[2 ** 62]),
        "optimizer iterations float": setter("optimizer", "iterations", value=2.5),
        "optimizer iterations infinite": setter("optimizer", "iterations", value=float("inf")),
        "dtype int8": setter("dtype", value="int8"),
        "dtype object": setter("dtype", value="O"),
        "name not a str": setter("name", value=["x"]),
        "unknown loss": setter("loss", "class", value="os.system"),
        "loss non-plain": setter("loss", "config", "from_logits", value=[True]),
        "unknown optimizer": setter("optimizer", "class", value="subprocess.Popen"),
        "optimizer bad value": setter("optimizer", "config", "learning_rate", value=-1.0),
        "optimizer unknown slot": setter("optimizer", "slots", value=["m", "v", "w"]),
        "optimizer iterations str": setter("optimizer", "iterations", value="many"),
        "optimizer iterations negative": setter("optimizer", "iterations", value=-5),
        "unknown metric": setter("metrics", value=["__import__"]),
        "dropout seed negative": setter("layers", 2, "state", "seed", value="-1"),
        "dropout seed too big": setter("layers", 2, "state", "seed", value=str(2 ** 70)),
        "dropout seed not a number": setter("layers", 2, "state", "seed", value="0x1; rm -rf"),
        "dropout counter negative": setter("layers", 2, "state", "counter", value="-5"),
        "dropout counter too big": setter("layers", 2, "state", "counter", value=str(2 ** 70)),
        "dropout state not a dict": setter("layers", 2, "state", value=5),
    }


@pytest.mark.parametrize("case", sorted(header_cases()))
def test_bad_header(saved, tmp_path, case):
    _, path = saved
    arrays = read_archive(path)
    header = header_cases()[case](get_header(arrays))
    bad = tmp_path / "bad_header.fnn"
    write_archive(bad, with_header(arrays, header))
    err = assert_rejected(bad)
    assert str(bad) in str(err) or "model file" in str(err)


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b'"fastnn-model"', b"null",
                                 b'{"format": "fastnn-model"}', b"{" * 5000,
                                 b"[" * 100_000, b'{"a": ' * 100_000],
                         ids=["empty", "not-utf8", "list", "string", "null", "format-only", "braces",
                              "deep-list", "deep-dict"])
def test_unreadable_header(saved, tmp_path, raw):
    _, path = saved
    arrays = read_archive(path)
    arrays[fio._HEADER] = np.frombuffer(raw, dtype=np.uint8)
    bad = tmp_path / "bad_header.fnn"
    write_archive(bad, arrays)
    assert_rejected(bad)


def test_header_of_another_dtype(saved, tmp_path):
    _, path = saved
    arrays = read_archive(path)
    arrays[fio._HEADER] = np.array(json.dumps(get_header(arrays)))     # a unicode scalar, not bytes
    bad = tmp_path / "bad_header.fnn"
    write_archive(bad, arrays)
    assert_rejected(bad)


def array_cases(model):
    n_slot = model._flat_params.size
    return {
        "weight transposed": ("layer0/w0", lambda a: a.T.copy()),
        "weight too small": ("layer0/w0", lambda a: a[:2]),
        "weight scalar": ("layer3/w0", lambda a: np.float32(1.0)),
        "bias wrong length": ("layer3/w1", lambda a: np.zeros(a.size + 1, a.dtype)),
        "weight NaN": ("layer5/w0", lambda a: np.full_like(a, np.nan)),
        "weight inf": ("layer5/w1", lambda a: np.full_like(a, np.inf)),
        "weight complex": ("layer0/w0", lambda a: a.astype(np.complex64)),
        "weight strings": ("layer0/w0", lambda a: np.full(a.shape, "x")),
        "weight missing": ("layer5/w1", None),
        "optimizer slot wrong shape": ("optimizer/m", lambda a: np.zeros(n_slot + 3, a.dtype)),
        "optimizer slot wrong dtype": ("optimizer/v", lambda a: a.astype(np.float64)),
        "optimizer slot missing": ("optimizer/v", None),
        "header missing": (fio._HEADER, None),
    }


@pytest.mark.parametrize("case", sorted(array_cases(make_model())))
def test_bad_arrays(saved, tmp_path, case):
    model, path = saved
    key, change = array_cases(model)[case]
    arrays = read_archive(path)
    assert key in arrays
    if change is None:
        del arrays[key]
    else:
        arrays[key] = change(arrays[key])
    bad = tmp_path / "bad_arrays.fnn"
    write_archive(bad, arrays)
    assert_rejected(bad)


def test_extra_arrays_are_ignored_and_the_rest_loads(saved, tmp_path, rng):
    model, path = saved
    arrays = read_archive(path)
    arrays["something/else"] = np.arange(3)
    ok = tmp_path / "extra.fnn"
    write_archive(ok, arrays)
    loaded = fnn.load_model(ok)
    x, _ = data(rng, n=5)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
