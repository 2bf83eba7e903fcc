"""Model files: one ``.npz`` archive holding architecture, weights and optimizer state.

Loading never executes code from the file: arrays are read with ``allow_pickle=False``, the
architecture is JSON naming classes from closed registries (layers, losses, optimizers) with
plain-value arguments, and the format carries a name and version. Truncated, foreign or
corrupt files raise ``ModelFileError`` (a ``ValueError``).
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from . import layers as _layers
from . import losses as _losses
from . import optimizers as _optimizers

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
        raise RuntimeError(f"{model.name}.save: the model is not built (nothing to save)")
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
    opt = model.optimizer
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


def _make(registry: dict, entry, what: str):
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str) or \
            not isinstance(entry.get("config"), dict):
        raise ModelFileError(f"model file: malformed {what} entry {entry!r}")
    cls = registry.get(entry["class"])
    if cls is None:
        raise ModelFileError(f"model file: unknown {what} class {entry['class']!r} "
                             f"(known: {sorted(registry)})")
    for k, v in entry["config"].items():
        if not isinstance(k, str) or not (v is None or isinstance(v, (bool, int, float, str))):
            raise ModelFileError(f"model file: {what} {entry['class']} has a non-plain argument {k!r}")
    try:
        return cls(**entry["config"])
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"model file: cannot create {entry['class']}: {err}") from err


def load_model(path):
    """Read a model written by ``Sequential.save``: architecture, weights, compile settings and
    optimizer state (``fit`` continues where it stopped)."""
    from .models import Sequential

    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise ModelFileError(f"{path}: not a readable fastnn model file ({type(err).__name__}: {err})") from err
    if _HEADER not in data:
        raise ModelFileError(f"{path}: not a fastnn model file (no {_HEADER})")
    try:
        header = json.loads(data.pop(_HEADER).tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path}: corrupt model header ({err})") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fastnn model file (format {header.get('format')!r})"
                             if isinstance(header, dict) else f"{path}: corrupt model header")
    if header.get("version") != VERSION:
        raise ModelFileError(f"{path}: model file version {header.get('version')!r}, this fastnn reads "
                             f"version {VERSION}")
    try:
        layer_entries = list(header["layers"])
        model = Sequential([_make(_layers.REGISTRY, e, "layer") for e in layer_entries],
                           dtype=header["dtype"], name=header["name"])
        model.build(tuple(header["input_shape"]))
        for i, (layer, entry) in enumerate(zip(model.layers, layer_entries)):
            weights = [data[f"layer{i}/w{j}"] for j in range(len(layer.params))]
            layer.set_weights(weights)
            if "state" in entry and hasattr(layer, "load_state"):
                layer.load_state(entry["state"])
        if header.get("loss") is not None:
            opt_entry = header.get("optimizer")
            optimizer = _make(_optimizers.REGISTRY, opt_entry, "optimizer") if opt_entry else "sgd"
            model.compile(optimizer=optimizer, loss=_make(_losses.REGISTRY, header["loss"], "loss"),
                          metrics=tuple(header.get("metrics", ())))
            if opt_entry:
                opt = model.optimizer
                opt.iterations = int(opt_entry.get("iterations", 0))
                for key in opt_entry.get("slots", []):
                    buf = data[f"optimizer/{key}"]
                    if buf.shape != model._flat_params.shape or buf.dtype != model.dtype:
                        raise ModelFileError(f"{path}: optimizer slot {key!r} has shape {buf.shape}, "
                                             f"expected {model._flat_params.shape}")
                    opt.state[key] = np.array(buf, copy=True)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{path}: corrupt or incompatible model file ({type(err).__name__}: {err})") from err
    return model
