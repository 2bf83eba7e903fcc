"""Model files: one ``.npz`` archive holding architecture, weights and optimizer state.

Loading never executes code from the file: arrays are read with ``allow_pickle=False``, the
architecture is JSON naming classes from closed registries (layers, losses, optimizers) with
plain-value arguments, and the format carries a name and version. Truncated, foreign or
corrupt files raise ``ModelFileError`` (a ``ValueError``).
"""
from __future__ import annotations

import json
import math
import os
import zipfile

import numpy as np

from . import layers as _layers
from . import losses as _losses
from . import optimizers as _optimizers
from ._validate import NotBuiltError

FORMAT = "fastnn-model"
VERSION = 1
_HEADER = "__fastnn__.json"


class ModelFileError(ValueError):
    """The file is not a fastnn model file this version can read."""


def _config_of(obj) -> dict:
    return {"class": type(obj).__name__, "config": obj.get_config()}


def save_model(model, path) -> None:
    """Write ``model`` to ``path`` (a ``.npz`` archive; the name is used as given)."""
    if not model.built:
        raise NotBuiltError(f"{model.name}.save: the model is not built (nothing to save)")
    arrays = {}
    layer_entries = []
    for i, layer in enumerate(model.layers):
        entry = _config_of(layer)
        if hasattr(layer, "state"):
            entry["state"] = layer.state()
        layer_entries.append(entry)
        for j, w in enumerate(layer.get_weights()):
            arrays[f"layer{i}/w{j}"] = w
    header = {
        "format": FORMAT, "version": VERSION, "name": model.name, "dtype": model.dtype.name,
        "input_shape": list(model.input_shape), "layers": layer_entries,
        "loss": _config_of(model.loss) if model.loss is not None else None,
        "metrics": list(model.metrics),
        "optimizer": None,
    }
    if model.mixed:     # the weights stay float32 (the "dtype" above); the policy is kept beside them
        header["policy"] = model.dtype_policy
    if model._shuffle_state is not None:
        header["shuffle"] = {"seed": str(model._shuffle_state[0]), "epochs": str(model._shuffle_state[1])}
    opt = model.optimizer
    if opt is not None and opt.schedule is not None and \
            _optimizers.schedules.REGISTRY.get(type(opt.schedule).__name__) is not type(opt.schedule):
        raise ValueError(f"{model.name}.save: model files hold the built-in learning-rate schedules "
                         f"({', '.join(_optimizers.schedules.REGISTRY)}), not {type(opt.schedule).__name__}")
    if opt is not None:
        header["optimizer"] = {**_config_of(opt), "iterations": opt.iterations, "slots": sorted(opt.state)}
        for key, buf in opt.state.items():
            arrays[f"optimizer/{key}"] = np.asarray(model_backend_numpy(model, buf))
    arrays[_HEADER] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    path = os.fspath(path)
    with open(path, "wb") as f:   # a file object: numpy would otherwise append ".npz"
        np.savez(f, **arrays)


def model_backend_numpy(model, buf):
    from . import backend
    return backend.get(model.device).to_numpy(buf)


# Bounds on what a file may declare before anything it declares is allocated.
_MAX_HEADER_BYTES = 1 << 20         # the architecture JSON
_MAX_JSON_DEPTH = 32                # nesting of JSON arrays and objects
_MAX_DEFLATE_RATIO = 1100           # deflate expands at most ~1032x
_MAX_NPY_HEADER = 10_000            # numpy's own default bound on an .npy header


class _Member:
    """One ``.npy`` member of the archive, as its headers declare it (nothing read yet)."""

    def __init__(self, info, shape, dtype, fortran, offset):
        self.info, self.shape, self.dtype, self.fortran, self.offset = info, shape, dtype, fortran, offset


def _declared(path, zf, info, archive_size: int) -> _Member:
    """Read and check the zip entry and the ``.npy`` header of one member: the declared sizes
    must be consistent with each other and with the size of the file on disk."""
    name = info.filename
    if info.compress_size > archive_size or info.file_size < 0 or \
            (info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size) or \
            info.file_size > max(info.compress_size, 1) * _MAX_DEFLATE_RATIO:
        raise ModelFileError(f"{path}: member {name!r} declares {info.file_size} bytes "
                             f"({info.compress_size} stored) in a file of {archive_size} bytes")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_MAX_NPY_HEADER)
        else:
            raise ModelFileError(f"{path}: member {name!r} has .npy format version {version}")
        offset = f.tell()
    shape = tuple(shape)
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ModelFileError(f"{path}: member {name!r} declares shape {shape!r}")
    nbytes = math.prod(shape) * dtype.itemsize
    if offset + nbytes != info.file_size:
        raise ModelFileError(f"{path}: member {name!r} declares shape {shape} of {dtype} ({nbytes} bytes) "
                             f"but holds {info.file_size - offset} bytes")
    return _Member(info, shape, dtype, fortran, offset)


def _read(path, zf, member: _Member, key: str, shape=None, dtype=None) -> np.ndarray:
    """Read one member whose header was checked, after checking its shape and dtype."""
    if dtype is not None and member.dtype != dtype:
        raise ModelFileError(f"{path}: {key} has dtype {member.dtype}, expected {np.dtype(dtype)}")
    if shape is not None and member.shape != tuple(shape):
        raise ModelFileError(f"{path}: {key} has shape {member.shape}, expected {tuple(shape)}")
    with zf.open(member.info) as f:
        arr = np.lib.format.read_array(f, allow_pickle=False, max_header_size=_MAX_NPY_HEADER)
    if arr.shape != member.shape or arr.dtype != member.dtype:   # cannot happen: the header was read twice
        raise ModelFileError(f"{path}: {key} changed while it was read")
    return arr


def _json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped)."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _input_shape(path, value, indices: bool = False) -> tuple:
    """The declared input shape; empty only for a model of index vectors (a first Embedding on (N,))."""
    if not isinstance(value, list) or (not value and not indices) or \
            any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in value):
        raise ModelFileError(f"{path}: invalid input_shape {value!r} (a list of ints >= 1)")
    return tuple(value)


def _check_weight_shapes(path, layers, input_shape, declared, dtype) -> list:
    """Compare the arrays the file declares with the shapes and dtype the architecture implies,
    before building or reading anything: a hostile header (say ``units: 10**9``) or array
    header (a shape of 10**12) must not make the loader allocate. Returns the weight shapes."""
    shape = input_shape
    shapes = []
    for i, layer in enumerate(layers):
        n_trainable = len(layer.param_specs(shape))
        for j, (want, _) in enumerate(layer.param_specs(shape) + layer.non_trainable_specs(shape)):
            got = declared(f"layer{i}/w{j}")
            if got is None or got.shape != tuple(want) or got.dtype != dtype:
                raise ModelFileError(
                    f"{path}: layer {i} ({type(layer).__name__}) weight {j}: expected shape {tuple(want)} of "
                    f"{dtype}, file has {'nothing' if got is None else f'shape {got.shape} of {got.dtype}'}")
            if j < n_trainable:     # the flat trainable buffer (optimizer slots) holds only these
                shapes.append(tuple(want))
        shape = tuple(layer.compute_output_shape(shape))
    return shapes


def _make(registry: dict, entry, what: str):
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str) or \
            not isinstance(entry.get("config"), dict):
        raise ModelFileError(f"model file: malformed {what} entry {entry!r}")
    cls = registry.get(entry["class"])
    if cls is None:
        raise ModelFileError(f"model file: unknown {what} class {entry['class']!r} "
                             f"(known: {sorted(registry)})")
    plain = (bool, int, float, str)
    config = dict(entry["config"])
    if what == "optimizer" and isinstance(config.get("learning_rate"), dict):
        config["learning_rate"] = _make(_optimizers.schedules.REGISTRY, config["learning_rate"], "schedule")
        plain = plain + (_optimizers.schedules.LearningRateSchedule,)
    for k, v in config.items():
        # scalars, or short lists of them (pairs such as Conv2D's kernel_size=(3, 5))
        if not isinstance(k, str) or not (v is None or isinstance(v, plain) or (
                isinstance(v, list) and len(v) <= 8 and all(isinstance(e, plain) for e in v))):
            raise ModelFileError(f"model file: {what} {entry['class']} has a non-plain argument {k!r}")
    try:
        return cls(**config)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"model file: cannot create {entry['class']}: {err}") from err


def load_model(path):
    """Read a model written by ``Sequential.save``: architecture, weights, compile settings and
    optimizer state (``fit`` continues where it stopped).

    Every size the file declares (zip entries, ``.npy`` headers, the architecture) is checked
    against the file's real size and against the others before anything is allocated."""
    path = os.fspath(path)
    try:
        archive_size = os.path.getsize(path)
        with zipfile.ZipFile(path) as zf:
            return _load(path, zf, archive_size)
    except (FileNotFoundError, ModelFileError):
        raise
    except Exception as err:   # zipfile and zlib raise many types on hostile bytes
        # (BadZipFile, NotImplementedError for odd versions/methods, RuntimeError for encrypted
        # members, zlib.error, struct.error, EOFError, ...): all mean "not a readable file"
        raise ModelFileError(f"{path}: not a readable fastnn model file ({type(err).__name__}: {err})") from err


def _load(path, zf, archive_size):
    from .models import _ALIGN, Sequential

    infos = {info.filename[:-4]: info for info in zf.infolist() if info.filename.endswith(".npy")}
    if _HEADER not in infos:
        raise ModelFileError(f"{path}: not a fastnn model file (no {_HEADER})")
    raw_member = _declared(path, zf, infos[_HEADER], archive_size)
    if raw_member.dtype != np.uint8 or len(raw_member.shape) != 1 or raw_member.shape[0] > _MAX_HEADER_BYTES:
        raise ModelFileError(f"{path}: corrupt model header (shape {raw_member.shape} of {raw_member.dtype}, "
                             f"expected at most {_MAX_HEADER_BYTES} bytes of uint8)")
    raw = _read(path, zf, raw_member, _HEADER)
    try:
        text = raw.tobytes().decode("utf-8")
        if _json_depth(text) > _MAX_JSON_DEPTH:
            raise ModelFileError(f"{path}: corrupt model header (nested deeper than {_MAX_JSON_DEPTH})")
        header = json.loads(text)
    except (ValueError, RecursionError) as err:   # UnicodeDecodeError is a ValueError
        if isinstance(err, ModelFileError):
            raise
        raise ModelFileError(f"{path}: corrupt model header ({type(err).__name__}: {err})") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fastnn model file (format {header.get('format')!r})"
                             if isinstance(header, dict) else f"{path}: corrupt model header")
    if header.get("version") != VERSION:
        raise ModelFileError(f"{path}: model file version {header.get('version')!r}, this fastnn reads "
                             f"version {VERSION}")
    try:
        layer_entries = header["layers"]
        if not isinstance(layer_entries, list):
            raise ModelFileError(f"{path}: layers must be a list, got {type(layer_entries).__name__}")
        if header.get("dtype") not in ("float32", "float64"):
            raise ModelFileError(f"{path}: dtype must be 'float32' or 'float64', got {header.get('dtype')!r}")
        dtype = np.dtype(header["dtype"])
        policy = header.get("policy", header["dtype"])
        if policy not in (header["dtype"], "mixed_bfloat16") or (policy == "mixed_bfloat16" and dtype != np.float32):
            raise ModelFileError(f"{path}: policy must be the dtype or 'mixed_bfloat16' with float32 weights, "
                                 f"got {policy!r} with {header['dtype']!r}")
        model = Sequential([_make(_layers.REGISTRY, e, "layer") for e in layer_entries],
                           dtype=policy, name=header["name"])
        input_shape = _input_shape(path, header.get("input_shape"),
                                   bool(model.layers) and getattr(model.layers[0], "integer_input", False))
        opt_entry = header.get("optimizer") if header.get("loss") is not None else None
        slots = []
        if opt_entry:
            if not isinstance(opt_entry, dict):
                raise ModelFileError(f"{path}: malformed optimizer entry {opt_entry!r}")
            slots = opt_entry.get("slots", [])
            if not isinstance(slots, list) or not all(isinstance(k, str) for k in slots) or len(slots) > 16:
                raise ModelFileError(f"{path}: optimizer slots must be a short list of names, got {slots!r}")
        members = {}

        def declared(key):
            """The checked declaration of a member the architecture needs (None if absent);
            members it does not need are never opened."""
            if key not in members:
                members[key] = _declared(path, zf, infos[key], archive_size) if key in infos else None
            return members[key]

        shapes = _check_weight_shapes(path, model.layers, input_shape, declared, dtype)
        n_flat = sum((math.prod(s) + _ALIGN - 1) // _ALIGN * _ALIGN for s in shapes)   # as Sequential.build
        for key in slots:
            m = declared(f"optimizer/{key}")
            if m is None or m.shape != (n_flat,) or m.dtype != dtype:
                raise ModelFileError(f"{path}: optimizer slot {key!r}: expected shape ({n_flat},) of {dtype}, file "
                                     f"has {'nothing' if m is None else f'shape {m.shape} of {m.dtype}'}")
        # every declared size is now checked: build and read
        model.build(input_shape)
        for i, (layer, entry) in enumerate(zip(model.layers, layer_entries)):
            weights = [_read(path, zf, members[f"layer{i}/w{j}"], f"layer{i}/w{j}", w.shape, dtype)
                       for j, w in enumerate(layer.all_weights())]
            layer.set_weights(weights)
            if "state" in entry and hasattr(layer, "load_state"):
                if not isinstance(entry["state"], dict):
                    raise ModelFileError(f"{path}: layer {i} state must be an object")
                layer.load_state(entry["state"])
        shuffle = header.get("shuffle")
        if shuffle is not None:
            state = [int(shuffle["seed"]), int(shuffle["epochs"])]
            if not all(0 <= v < 2**63 for v in state):
                raise ModelFileError(f"{path}: shuffle state out of range: {shuffle!r}")
            model._shuffle_state = state
        if header.get("loss") is not None:
            optimizer = _make(_optimizers.REGISTRY, opt_entry, "optimizer") if opt_entry else "sgd"
            metrics = header.get("metrics", [])
            if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
                raise ModelFileError(f"{path}: metrics must be a list of names, got {metrics!r}")
            model.compile(optimizer=optimizer, loss=_make(_losses.REGISTRY, header["loss"], "loss"),
                          metrics=tuple(metrics))
            if opt_entry:
                opt = model.optimizer
                iterations = opt_entry.get("iterations", 0)
                if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
                    raise ModelFileError(f"{path}: optimizer iterations must be an int >= 0, "
                                         f"got {iterations!r}")
                opt.iterations = iterations
                for key in slots:
                    buf = _read(path, zf, members[f"optimizer/{key}"], f"optimizer/{key}",
                                model._flat_params.shape, model.dtype)
                    opt.state[key] = np.array(buf, copy=True)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as err:
        raise ModelFileError(f"{path}: corrupt or incompatible model file ({type(err).__name__}: {err})") from err
    return model
