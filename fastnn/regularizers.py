"""Weight regularizers (``fnn.regularizers``): L1, L2 and both, as Keras.

A regularizer adds ``l1 * sum(|W|) + l2 * sum(W**2)`` (no 1/2) to the training loss that ``fit``
and ``train_on_batch`` report, and its gradient ``l1 * sign(W) + 2 * l2 * W`` to the weight
gradient, in one C pass over the weight and its gradient per step (``fnn_penalty``), before
gradient clipping and the optimizer update. ``evaluate`` reports the data loss alone.

Layers take them as ``kernel_regularizer=`` (Dense, Conv2D: on ``W``; SimpleRNN/LSTM/GRU: on
``W_x``) and ``recurrent_regularizer=`` (recurrent layers: on ``W_h``), as a regularizer, a name
(``"l1"``, ``"l2"``, ``"l1_l2"`` with Keras' default strength 0.01) or a pair ``(l1, l2)``.

Examples
--------
>>> import fastnn as fnn
>>> layer = fnn.layers.Dense(64, activation="relu", kernel_regularizer=fnn.regularizers.l2(1e-4))
"""
from __future__ import annotations

from ._validate import fail, real


class L1L2:
    """``l1 * sum(|W|) + l2 * sum(W**2)``; strengths are finite numbers >= 0."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = real(l1, "regularizer l1", lo=0.0)
        self.l2 = real(l2, "regularizer l2", lo=0.0)

    def get_config(self) -> list:
        """The pair (l1, l2): plain values, as model files store layer arguments."""
        return [self.l1, self.l2]

    def __call__(self, w) -> float:
        """The penalty of a weight array (NumPy), for inspection."""
        import numpy as np
        w = np.asarray(w, dtype=np.float64)
        return float(self.l1 * np.abs(w).sum() + self.l2 * (w * w).sum())

    def __eq__(self, other):
        return isinstance(other, L1L2) and (self.l1, self.l2) == (other.l1, other.l2)

    def __repr__(self):
        return f"L1L2(l1={self.l1!r}, l2={self.l2!r})"


def l1(l1=0.01) -> L1L2:  # noqa: E741 (Keras' name)
    """L1 penalty ``l1 * sum(|W|)``."""
    return L1L2(l1=l1)


def l2(l2=0.01) -> L1L2:
    """L2 penalty ``l2 * sum(W**2)`` (no 1/2, as Keras)."""
    return L1L2(l2=l2)


def l1_l2(l1=0.01, l2=0.01) -> L1L2:  # noqa: E741
    """Both penalties."""
    return L1L2(l1=l1, l2=l2)


_BY_NAME = {"l1": l1, "l2": l2, "l1_l2": l1_l2}


def get(value, where: str):
    """A regularizer from None, an L1L2, a name or an (l1, l2) pair (model files); None for none."""
    if value is None or isinstance(value, L1L2):
        return value
    if isinstance(value, str) and value in _BY_NAME:
        return _BY_NAME[value]()
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return L1L2(*value)
    fail(where, f"a regularizer (fnn.regularizers.l1/l2/l1_l2), one of {sorted(_BY_NAME)} or an (l1, l2) pair",
         repr(value), TypeError)


def config(reg):
    return None if reg is None else reg.get_config()


__all__ = ["L1L2", "l1", "l2", "l1_l2", "get"]
