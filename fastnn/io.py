"""Model files: one ``.npz`` archive holding architecture, weights and optimizer state.

Loading never executes code from the file: arrays are read with ``allow_pickle=False``, the
architecture is JSON naming classes from closed registries (layers, losses, optimizers) with
plain-value arguments, and the format carries a name and version. Truncated, foreign or
corrupt files raise ``ModelFileError`` (a ``ValueError``).
"""
from __future__ import annotations

import json
import os

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


def _check_weight_shapes(path, layers, input_shape, data) -> None:
    """Compare the stored arrays with the shapes the architecture implies, before building: a
    hostile header (say ``units: 10**9``) must not make the loader allocate huge weights."""
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ModelFileError(f"{path}: invalid input_shape {input_shape!r}")
    for i, layer in enumerate(layers):
        for j, (want, _) in enumerate(layer.param_specs(shape)):
            got = data.get(f"layer{i}/w{j}")
            if got is None or tuple(got.shape) != tuple(want):
                raise ModelFileError(f"{path}: layer {i} ({type(layer).__name__}) weight {j}: expected shape "
                                     f"{tuple(want)}, file has {None if got is None else got.shape}")
        shape = tuple(layer.compute_output_shape(shape))


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
    optimizer state (``fit`` continues where it stopped)."""
    from .models import Sequential

    path = os.fspath(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):   # a bare .npy array, not an archive
            raise ModelFileError(f"{path}: not a fastnn model file (a single {type(loaded).__name__}, "
                                 f"not an .npz archive)")
        with loaded as npz:
            data = {k: npz[k] for k in npz.files}
    except (FileNotFoundError, ModelFileError, MemoryError):
        raise
    except Exception as err:   # zipfile and zlib raise many types on hostile bytes
        # (BadZipFile, NotImplementedError for odd versions/methods, RuntimeError for encrypted
        # members, zlib.error, struct.error, EOFError, ...): all mean "not a readable file"
        raise ModelFileError(f"{path}: not a readable fastnn model file ({type(err).__name__}: {err})") from err
    if _HEADER not in data:
        raise ModelFileError(f"{path}: not a fastnn model file (no {_HEADER})")
    try:
        header = json.loads(data.pop(_HEADER).tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as err:   # UnicodeDecodeError is a ValueError
        raise ModelFileError(f"{path}: corrupt model header ({type(err).__name__}: {err})") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fastnn model file (format {header.get('format')!r})"
                             if isinstance(header, dict) else f"{path}: corrupt model header")
    if header.get("version") != VERSION:
        raise ModelFileError(f"{path}: model file version {header.get('version')!r}, this fastnn reads "
                             f"version {VERSION}")
    try:
        layer_entries = list(header["layers"])
        if header.get("dtype") not in ("float32", "float64"):
            raise ModelFileError(f"{path}: dtype must be 'float32' or 'float64', got {header.get('dtype')!r}")
        model = Sequential([_make(_layers.REGISTRY, e, "layer") for e in layer_entries],
                           dtype=header["dtype"], name=header["name"])
        input_shape = tuple(header["input_shape"])
        _check_weight_shapes(path, model.layers, input_shape, data)
        model.build(input_shape)
        for i, (layer, entry) in enumerate(zip(model.layers, layer_entries)):
            weights = [data[f"layer{i}/w{j}"] for j in range(len(layer.params))]
            layer.set_weights(weights)
            if "state" in entry and hasattr(layer, "load_state"):
                layer.load_state(entry["state"])
        shuffle = header.get("shuffle")
        if shuffle is not None:
            state = [int(shuffle["seed"]), int(shuffle["epochs"])]
            if not all(0 <= v < 2**63 for v in state):
                raise ModelFileError(f"{path}: shuffle state out of range: {shuffle!r}")
            model._shuffle_state = state
        if header.get("loss") is not None:
            opt_entry = header.get("optimizer")
            optimizer = _make(_optimizers.REGISTRY, opt_entry, "optimizer") if opt_entry else "sgd"
            model.compile(optimizer=optimizer, loss=_make(_losses.REGISTRY, header["loss"], "loss"),
                          metrics=tuple(header.get("metrics", ())))
            if opt_entry:
                opt = model.optimizer
                iterations = opt_entry.get("iterations", 0)
                if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
                    raise ModelFileError(f"{path}: optimizer iterations must be an int >= 0, "
                                         f"got {iterations!r}")
                opt.iterations = iterations
                for key in opt_entry.get("slots", []):
                    buf = data[f"optimizer/{key}"]
                    if buf.shape != model._flat_params.shape or buf.dtype != model.dtype:
                        raise ModelFileError(f"{path}: optimizer slot {key!r} has shape {buf.shape}, "
                                             f"expected {model._flat_params.shape}")
                    opt.state[key] = np.array(buf, copy=True)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as err:
        raise ModelFileError(f"{path}: corrupt or incompatible model file ({type(err).__name__}: {err})") from err
    return model
