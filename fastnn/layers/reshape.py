"""Shape-only layers."""
from __future__ import annotations

import numpy as np

from .base import Layer


class Flatten(Layer):
    """Flatten ``(N, d1, d2, ...)`` to ``(N, d1 * d2 * ...)`` (NCHW order, as PyTorch)."""

    capturable = True
    train_capturable = True

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def _forward(self, x, training, logits):
        y = x.reshape((x.shape[0],) + self.output_shape)   # not (N, -1): ambiguous when N == 0
        if training:
            self._remember(x, y)
        return y

    def _backward(self, dy, need_dx):
        return dy.reshape(self._cache[0].shape)
