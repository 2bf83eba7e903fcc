"""Inverted dropout with a counter-based mask."""
from __future__ import annotations

from .. import _config
from .._validate import real
from .base import Layer


class Dropout(Layer):
    """Zero each input with probability ``rate`` during training and scale the kept ones by
    ``1 / (1 - rate)``; identity at inference (``predict``, ``evaluate``, ``training=False``).

    The mask of element i of the k-th training call is a hash of (layer seed, counter + i): it
    depends on ``fnn.seed`` but not on the thread count, and the GPU kernel reproduces it.

    Parameters
    ----------
    rate : float
        Drop probability, ``0 <= rate < 1``.
    """

    capturable = True

    def __init__(self, rate: float, name=None):
        super().__init__(name)
        self.rate = real(rate, f"Dropout(rate=...) in {self.name}", lo=0.0, hi=1.0, hi_open=True)
        self.seed = None
        self.counter = 0

    def get_config(self):
        return {"rate": self.rate, "name": self.name}

    def _build(self, input_shape):
        self.seed = int(_config.rng().integers(0, 2**63 - 1))
        self.counter = 0

    def _forward(self, x, training, logits):
        if not training or self.rate == 0.0:
            if training:
                self._remember(x, x, mask=None)
            return x
        y = self._buf("y", x.shape)
        mask = self._buf("mask", x.shape)
        self.backend.dropout_fwd(x, self.rate, self.seed, self.counter, y, mask)
        self.counter = (self.counter + x.size) % 2**64
        self._remember(x, y, mask=mask)
        return y

    def _backward(self, dy, need_dx):
        mask = self._cache[2]["mask"]
        if mask is None:
            return dy
        return self.backend.mul(dy, mask, self._buf("dx", dy.shape))

    def state(self) -> dict:
        """RNG state saved with the model, so resumed training continues the mask stream."""
        return {"seed": str(self.seed), "counter": str(self.counter)}

    def load_state(self, state: dict) -> None:
        values = {}
        for key in ("seed", "counter"):
            value = int(state[key])
            if not 0 <= value < 2**64:
                raise ValueError(f"{self.name}: dropout {key} must be in [0, 2**64), got {value}")
            values[key] = value
        self.seed, self.counter = values["seed"], values["counter"]
