"""Losses (``fnn.losses``, also by name in ``compile``).

Each loss returns the batch mean (a float, or a 0-d device array on the GPU, read back by the
caller when it needs the number) and writes dL/d(output) into a caller buffer. When the model
ends with the activation a cross-entropy expects (softmax / sigmoid), ``Sequential`` trains on
the logits and the loss runs one fused kernel (gradient ``p - y``), never ``log`` of a saturated
probability. ``from_logits=True`` says the model output already is logits.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend as _backend
from ._validate import as_array, fail

_EPS = {np.dtype(np.float32): 1e-7, np.dtype(np.float64): 1e-15}


class Loss:
    """Base class. ``activation`` names the output activation the loss fuses with."""

    name = "loss"
    activation: str | None = None

    def __init__(self, from_logits: bool = False):
        if not isinstance(from_logits, bool):
            fail(f"{type(self).__name__}(from_logits=...)", "a bool", repr(from_logits), TypeError)
        self.from_logits = from_logits

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits}

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"

    def kernel_only(self, logits: bool) -> bool:
        """Whether ``compute`` (on logits when ``logits``) is one fused kernel call (no NumPy
        arithmetic), so a training step plan may capture it: a cross-entropy on logits."""
        return self.activation is not None and (logits or self.from_logits)

    def check_targets(self, y, out_shape: tuple, dtype, where: str):
        """Validate and convert targets for outputs of shape (N,) + out_shape."""
        raise NotImplementedError

    def compute(self, be, out, y, grad=None, logits=False, w=None, total=None) -> float:
        """Mean loss of outputs ``out`` (logits when ``logits``) against checked targets ``y``;
        fills ``grad`` with dL/d(out) when given. ``w`` (optional, ``(N,)`` of the output dtype):
        per-sample weights, the loss then being the mean over samples of ``w_i * loss_i``
        (Keras 3), applied inside the fused kernels. ``total``: the samples the mean runs over
        (default ``N``); data-parallel training passes the global batch's, so that this part's
        loss and gradient are its share of the global mean (added over the processes)."""
        raise NotImplementedError

    def class_indices(self, y, out_shape: tuple, where: str):
        """(class index per sample, number of classes) of checked targets, for ``class_weight``."""
        fail(where, "a classification loss (class weights need classes)", self.name)

    def __call__(self, y_true, y_pred, sample_weight=None) -> float:
        """Keras-style ``loss(y_true, y_pred, sample_weight=None)`` on NumPy arrays."""
        y_pred = as_array(y_pred, f"{self.name} y_pred")
        if y_pred.dtype not in (np.float32, np.float64):
            y_pred = y_pred.astype(np.float32)
        if y_pred.ndim < 1:
            fail(f"{self.name} y_pred", "a batch of predictions", f"shape {y_pred.shape}")
        y = self.check_targets(y_true, y_pred.shape[1:], y_pred.dtype, f"{self.name} y_true")
        _check_batch(y, y_pred.shape[0], f"{self.name} y_true")
        w = None
        if sample_weight is not None:
            w = as_array(sample_weight, f"{self.name} sample_weight", dtype=y_pred.dtype).reshape(-1)
            if w.shape != (y_pred.shape[0],) or not np.isfinite(w).all() or (w < 0).any():
                fail(f"{self.name} sample_weight", f"{y_pred.shape[0]} finite weights >= 0", f"shape {w.shape}")
        return self.compute(_backend.get("cpu"), y_pred, y, None, self.from_logits, w)


def _check_batch(y, n_expected, where):
    if y.ndim == 0:
        fail(where, f"{n_expected} targets", "a scalar")
    if n_expected is not None and y.shape[0] != n_expected:
        fail(where, f"{n_expected} targets", f"{y.shape[0]}")


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy with integer class labels ``(N,)`` for outputs ``(N, K)``."""

    name = "sparse_categorical_crossentropy"
    activation = "softmax"

    def check_targets(self, y, out_shape, dtype, where):
        if len(out_shape) != 1:
            fail(where, "model outputs of shape (N, K)", f"outputs (N, {', '.join(map(str, out_shape))})")
        y = as_array(y, where)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            fail(where, "integer labels of shape (N,)", f"shape {y.shape}")
        if y.dtype.kind == "f":
            if not np.isfinite(y).all() or (y != np.round(y)).any():
                fail(where, "integer class labels", "non-integer values")
        k = out_shape[0]
        if y.size and (y.min() < 0 or y.max() >= k):
            fail(where, f"labels in [0, {k})", f"labels in [{y.min()}, {y.max()}]")
        return np.ascontiguousarray(y, dtype=np.int64)

    def class_indices(self, y, out_shape, where):
        return y, int(out_shape[0])

    def compute(self, be, out, y, grad=None, logits=False, w=None, total=None):
        n = out.shape[0]
        m = _mean_over(n, total)
        if logits or self.from_logits:
            return _share(be.softmax_xent(out, labels=y, grad=grad, scale=1.0 / m, w=w), n, total)
        p, y, wk = np.clip(be.to_numpy(out), _EPS[out.dtype], 1.0), be.to_numpy(y), _weights(be, w, n)
        rows = np.arange(n)
        if grad is not None:
            g = np.zeros(out.shape, dtype=out.dtype)
            g[rows, y] = -wk / (p[rows, y] * m)
            grad[...] = be.asarray(g)
        return float((-np.log(p[rows, y]) * wk).sum() / m) if n else 0.0


class CategoricalCrossentropy(Loss):
    """Cross-entropy with one-hot (or soft) targets ``(N, K)``."""

    name = "categorical_crossentropy"
    activation = "softmax"

    def check_targets(self, y, out_shape, dtype, where):
        y = as_array(y, where, dtype=dtype)
        if y.ndim != 2 or (len(out_shape) == 1 and y.shape[1] != out_shape[0]):
            fail(where, f"one-hot targets of shape (N, {out_shape[0] if out_shape else 'K'})", f"shape {y.shape}")
        if not np.isfinite(y).all() or (y < 0).any():
            fail(where, "non-negative finite target probabilities", "negative, NaN or infinite values")
        return y

    def class_indices(self, y, out_shape, where):
        return y.argmax(axis=1), int(out_shape[0])

    def compute(self, be, out, y, grad=None, logits=False, w=None, total=None):
        n = out.shape[0]
        m = _mean_over(n, total)
        if logits or self.from_logits:
            return _share(be.softmax_xent(out, onehot=y, grad=grad, scale=1.0 / m, w=w), n, total)
        p, y, wk = np.clip(be.to_numpy(out), _EPS[out.dtype], 1.0), be.to_numpy(y), _weights(be, w, n)
        if grad is not None:
            grad[...] = be.asarray(-y / (p * m) * wk[:, None])
        return float((-(y * np.log(p)).sum(axis=1) * wk).sum() / m) if n else 0.0


class BinaryCrossentropy(Loss):
    """Binary cross-entropy for targets in [0, 1] of shape ``(N,)`` or ``(N, 1)`` (or ``(N, K)``
    for K independent labels), mean over all elements."""

    name = "binary_crossentropy"
    activation = "sigmoid"

    def check_targets(self, y, out_shape, dtype, where):
        y = as_array(y, where, dtype=dtype)
        y = _match_output(y, out_shape, where)
        if not np.isfinite(y).all():
            fail(where, "finite targets in [0, 1]", "NaN or infinite values")
        if (y < 0).any() or (y > 1).any():
            fail(where, "targets in [0, 1]", f"values in [{y.min()}, {y.max()}]")
        return y

    def class_indices(self, y, out_shape, where):
        if int(np.prod(out_shape)) != 1:
            fail(where, "one binary label per sample (outputs (N,) or (N, 1))", f"outputs (N, {out_shape})")
        labels = y.reshape(-1)
        if ((labels != 0) & (labels != 1)).any():
            fail(where, "0/1 targets", "targets other than 0 and 1")
        return labels.astype(np.int64), 2

    def compute(self, be, out, y, grad=None, logits=False, w=None, total=None):
        m = _mean_over(out.shape[0], total) * math.prod(out.shape[1:])     # a mean over all elements
        if logits or self.from_logits:
            return _share(be.sigmoid_bce(out, y, grad=grad, scale=1.0 / max(m, 1), w=w), out.shape[0], total)
        eps = _EPS[out.dtype]
        p, y = np.clip(be.to_numpy(out), eps, 1 - eps), be.to_numpy(y)
        wk = _weights(be, w, out.shape[0]).reshape((-1,) + (1,) * (out.ndim - 1))
        if grad is not None:
            grad[...] = be.asarray((p - y) / (p * (1 - p) * max(m, 1)) * wk)
        return float((-(y * np.log(p) + (1 - y) * np.log1p(-p)) * wk).sum() / m) if out.size else 0.0


class MeanSquaredError(Loss):
    """Mean of ``(y_pred - y_true)^2`` over all elements (torch ``MSELoss``)."""

    name = "mse"

    def kernel_only(self, logits):
        return True

    def check_targets(self, y, out_shape, dtype, where):
        y = as_array(y, where, dtype=dtype)
        y = _match_output(y, out_shape, where)
        if not np.isfinite(y).all():
            fail(where, "finite targets", "NaN or infinite values")
        return y

    def compute(self, be, out, y, grad=None, logits=False, w=None, total=None):
        m = _mean_over(out.shape[0], total) * math.prod(out.shape[1:])
        return _share(be.mse(out, y, grad=grad, scale=1.0 / max(m, 1), w=w), out.shape[0], total)


def _mean_over(n: int, total) -> int:
    """The sample count a batch mean divides by: the batch's own, or the global batch's."""
    return max(n if total is None else int(total), 1)


def _share(mean, n: int, total):
    """A batch mean (the kernels' loss value) as this batch's share of the mean over ``total``
    samples."""
    return mean if total is None or int(total) == n else mean * (n / max(int(total), 1))


def _weights(be, w, n):
    """Per-sample weights on the host for the NumPy (probability-input) paths; ones when None."""
    return np.ones(n) if w is None else np.asarray(be.to_numpy(w), dtype=np.float64)


def _match_output(y, out_shape, where):
    """Accept (N,) targets for (N, 1) outputs and the reverse."""
    want = tuple(out_shape)
    got = y.shape[1:]
    if got == want:
        return y
    if want == (1,) and got == ():
        return y.reshape(-1, 1)
    if want == () and got == (1,):
        return y.reshape(-1)
    fail(where, f"targets of shape (N{''.join(', ' + str(d) for d in want)})", f"shape {y.shape}")


LOSSES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}
REGISTRY = {cls.__name__: cls for cls in set(LOSSES.values())}


def get(loss) -> Loss:
    """A Loss from a name or an instance."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]()
    fail("compile(loss=...)", f"a Loss or one of {sorted(LOSSES)}", repr(loss))
