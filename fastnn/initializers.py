"""Weight initialisers, by name. Values are drawn in float64 from fastnn's seeded generator and
then cast, so a float32 model and a float64 model with the same seed start from the same weights."""
from __future__ import annotations

import numpy as np

from . import _config


def _fans(shape: tuple) -> tuple:
    if len(shape) == 2:                      # Dense (in, out), recurrent (in, k*H)
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1   # conv (out, in, kh, kw)
    return shape[1] * receptive, shape[0] * receptive


def glorot_uniform(shape, rng):
    fan_in, fan_out = _fans(shape)
    lim = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-lim, lim, size=shape)


def glorot_normal(shape, rng):
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(shape, np.sqrt(2.0 / (fan_in + fan_out)), rng)


def he_uniform(shape, rng):
    fan_in, _ = _fans(shape)
    lim = np.sqrt(6.0 / fan_in)
    return rng.uniform(-lim, lim, size=shape)


def he_normal(shape, rng):
    fan_in, _ = _fans(shape)
    return _truncated_normal(shape, np.sqrt(2.0 / fan_in), rng)


def uniform(shape, rng):
    """Keras' ``RandomUniform()`` default (the Embedding initializer): uniform in [-0.05, 0.05]."""
    return rng.uniform(-0.05, 0.05, size=shape)


def zeros(shape, rng):
    return np.zeros(shape)


def ones(shape, rng):
    return np.ones(shape)


def orthogonal(shape, rng):
    """Orthogonal columns (or rows) as in Saxe et al.; blocks of a recurrent (H, k*H) matrix are
    each orthogonal, as Keras does for each gate."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    if len(shape) == 2 and cols % rows == 0 and cols > rows:
        return np.concatenate([orthogonal((rows, rows), rng) for _ in range(cols // rows)], axis=1)
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape)


def _truncated_normal(shape, std, rng):
    # Keras' truncated normal: draws outside two standard deviations are redrawn; the 0.8796
    # factor restores the requested variance after truncation.
    std = std / 0.87962566103423978
    out = rng.standard_normal(size=shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(size=int(bad.sum()))
        bad = np.abs(out) > 2
    return out * std


INITIALIZERS = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "zeros": zeros,
    "orthogonal": orthogonal,
    "uniform": uniform,
}
# Used by layers for their own weights (BatchNormalization's gamma and moving variance), not
# accepted as a user's kernel_initializer (Keras has no "ones" there either).
LAYER_ONLY = {"ones": ones}


def check_name(name, where: str) -> str:
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(f"{where}: expected an initializer in {sorted(INITIALIZERS)}, got {name!r}")
    return name


def initialize(name: str, shape: tuple, dtype) -> np.ndarray:
    """A new array of shape and dtype drawn by the named initializer."""
    fn = LAYER_ONLY[name] if name in LAYER_ONLY else INITIALIZERS[name]
    return np.ascontiguousarray(fn(tuple(shape), _config.rng()), dtype=dtype)
