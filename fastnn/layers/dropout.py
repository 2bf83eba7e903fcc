"""Inverted dropout with a counter-based mask, and the counter-based stream it shares with the
augmentation layers."""
from __future__ import annotations

import math

from .. import _config
from .._validate import real
from .base import Layer


class _RandomLayer(Layer):
    """A layer with a counter-based random stream: ``seed`` (drawn from ``fnn.seed``'s generator
    at build) and ``counter`` (advanced by every training call; saved with the model).

    Each sample of a batch takes a fixed number of counter values, in batch order. In
    data-parallel training (``fit(distributed=True)``) a process computing a part of the global
    batch starts at its part's first sample, and every process moves the counter past the whole
    global batch: each sample gets the draws it would get in one process running the whole batch.
    """

    capturable = True     # the inference forward computes nothing (returns x)
    #: its kernel calls draw at the offset ``_advance`` gives; a step plan matches them to the
    #: layer by its seed and sets that offset each step (fastnn._step_plan)
    train_capturable = True

    def __init__(self, name=None):
        super().__init__(name)
        self.seed = None
        self.counter = 0

    def _build(self, input_shape):
        self.seed = int(_config.rng().integers(0, 2**63 - 1))
        self.counter = 0

    def _advance(self, per_sample: int, n: int) -> int:
        """The counter offset of this call on n samples taking per_sample values each; moves the
        counter past the (global) batch."""
        part = self._part
        first, total = (part.offset, part.total) if part is not None else (0, n)
        offset = (self.counter + first * per_sample) % 2**64
        self.counter = (self.counter + total * per_sample) % 2**64
        return offset

    def _skip(self) -> None:
        """An empty part of a data-parallel batch: only the counter moves."""
        self._advance(self._per_sample(), 0)

    def _per_sample(self) -> int:
        raise NotImplementedError

    def state(self) -> dict:
        """RNG state saved with the model, so resumed training continues the stream."""
        return {"seed": str(self.seed), "counter": str(self.counter)}

    def load_state(self, state: dict) -> None:
        values = {}
        for key in ("seed", "counter"):
            try:
                value = int(state[key])
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{self.name}: state needs an integer {key!r} ({err})") from err
            if not 0 <= value < 2**64:
                raise ValueError(f"{self.name}: {key} must be in [0, 2**64), got {value}")
            values[key] = value
        self.seed, self.counter = values["seed"], values["counter"]


class Dropout(_RandomLayer):
    """Zero each input with probability ``rate`` during training and scale the kept ones by
    ``1 / (1 - rate)``; identity at inference (``predict``, ``evaluate``, ``training=False``).

    The mask of element i of the k-th training call is a hash of (layer seed, counter + i): it
    depends on ``fnn.seed`` but not on the thread count, and the GPU kernel reproduces it.

    Parameters
    ----------
    rate : float
        Drop probability, ``0 <= rate < 1``.
    """

    def __init__(self, rate: float, name=None):
        super().__init__(name)
        self.rate = real(rate, f"Dropout(rate=...) in {self.name}", lo=0.0, hi=1.0, hi_open=True)

    def get_config(self):
        return {"rate": self.rate, "name": self.name}

    def _per_sample(self) -> int:
        # one counter value per element; none while the layer draws nothing (rate 0)
        return math.prod(self.input_shape) if self.rate else 0

    def _forward(self, x, training, logits):
        if not training or self.rate == 0.0:
            if training:
                self._remember(x, x, mask=None)
            return x
        y = self._buf("y", x.shape)
        mask = self._buf("mask", x.shape)
        self.backend.dropout_fwd(x, self.rate, self.seed, self._advance(self._per_sample(), x.shape[0]), y, mask)
        self._remember(x, y, mask=mask)
        return y

    def _backward(self, dy, need_dx):
        mask = self._cache[2]["mask"]
        if mask is None:
            return dy
        return self.backend.mul(dy, mask, self._buf("dx", dy.shape))
