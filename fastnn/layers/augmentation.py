"""Data augmentation layers: RandomFlip, RandomTranslation, GaussianNoise.

They act only in training (``fit``, ``train_on_batch``, ``forward(training=True)``) and are the
identity at inference (``predict``, ``evaluate``, ``training=False``: the input itself is
returned). Their randomness is Dropout's: a seed drawn from ``fnn.seed``'s generator when the
layer is built and a counter advanced by each training call; the kernels hash (seed, counter) so
the draws do not depend on the thread count, the flip and shift decisions not on the dtype, and
the CUDA kernels reproduce them. ``state()``/``load_state()`` put (seed, counter) in model files,
so resumed training continues the stream. Counters used per call (csrc/ref/augment.c): RandomFlip
one per sample, RandomTranslation two per sample, GaussianNoise two per element.
"""
from __future__ import annotations

import math

from .._validate import fail, real
from .conv import check_4d
from .dropout import _RandomLayer

FLIP_MODES = {"horizontal": 1, "vertical": 2, "horizontal_and_vertical": 3}   # FNN_FLIP_* flags


class _ImageAugment(_RandomLayer):
    """(N, C, H, W) in and out; a subclass gives the counters a sample uses (``_per_sample``) and
    the kernel call (``_apply``: forward, or with ``adjoint`` its transpose for the same draws)."""

    def compute_output_shape(self, input_shape):
        return check_4d(self, input_shape)

    def _forward(self, x, training, logits):
        if not training:
            return x
        offset = self._advance(self._per_sample(), x.shape[0])
        y = self._apply(x, offset, False, self._buf("y", x.shape))
        self._remember(x, y, offset=offset)
        return y

    def _backward(self, dy, need_dx):
        if not need_dx:
            return None
        return self._apply(dy, self._cache[2]["offset"], True, self._buf("dx", dy.shape))


class RandomFlip(_ImageAugment):
    """Flip each ``(N, C, H, W)`` sample with probability 1/2 in training: ``"horizontal"``
    reverses the width axis, ``"vertical"`` the height axis, ``"horizontal_and_vertical"`` draws
    each axis independently. The backward pass flips the output gradient the same way.

    Parameters
    ----------
    mode : str
        ``"horizontal"`` (default), ``"vertical"`` or ``"horizontal_and_vertical"``.

    Examples
    --------
    >>> import fastnn as fnn
    >>> layer = fnn.layers.RandomFlip("vertical")
    >>> layer.build((3, 8, 8)); layer.output_shape
    (3, 8, 8)
    """

    def __init__(self, mode: str = "horizontal", name=None):
        super().__init__(name)
        if not isinstance(mode, str):
            fail(f"RandomFlip(mode=...) in {self.name}", f"one of {sorted(FLIP_MODES)}", repr(mode), TypeError)
        if mode not in FLIP_MODES:
            fail(f"RandomFlip(mode=...) in {self.name}", f"one of {sorted(FLIP_MODES)}", repr(mode))
        self.mode = mode

    def get_config(self):
        return {"mode": self.mode, "name": self.name}

    def _per_sample(self):
        return 1                          # one counter per sample

    def _apply(self, x, offset, adjoint, out):
        # a flip is its own adjoint: the same decisions applied to dy
        return self.backend.random_flip(x, FLIP_MODES[self.mode], self.seed, offset, out)


class RandomTranslation(_ImageAugment):
    """Shift each ``(N, C, H, W)`` sample by whole pixels in training: the shifts are drawn
    uniformly from the integers in ``[-floor(height_factor * H), floor(height_factor * H)]`` and
    ``[-floor(width_factor * W), floor(width_factor * W)]``; vacated pixels get ``fill_value``.
    The backward pass shifts the output gradient back (0 where the forward wrote fill).

    Parameters
    ----------
    height_factor, width_factor : float
        In ``[0, 1)``: the largest shift as a fraction of the height / width.
    fill_value : float
        Value of the pixels shifted in (finite).

    Examples
    --------
    >>> import fastnn as fnn
    >>> layer = fnn.layers.RandomTranslation(0.25, 0.1)
    >>> layer.build((1, 8, 10)); layer.max_shifts
    (2, 1)
    """

    def __init__(self, height_factor: float, width_factor: float, fill_value: float = 0.0, name=None):
        super().__init__(name)
        where = f"RandomTranslation(%s=...) in {self.name}"
        self.height_factor = real(height_factor, where % "height_factor", lo=0.0, hi=1.0, hi_open=True)
        self.width_factor = real(width_factor, where % "width_factor", lo=0.0, hi=1.0, hi_open=True)
        self.fill_value = real(fill_value, where % "fill_value")
        self.max_shifts = None

    def get_config(self):
        return {"height_factor": self.height_factor, "width_factor": self.width_factor,
                "fill_value": self.fill_value, "name": self.name}

    def _build(self, input_shape):
        super()._build(input_shape)
        _, h, w = input_shape
        # floor(f * size) < size for f < 1
        self.max_shifts = (min(math.floor(self.height_factor * h), h - 1),
                           min(math.floor(self.width_factor * w), w - 1))

    def _per_sample(self):
        return 2                          # two counters per sample (height, width)

    def _apply(self, x, offset, adjoint, out):
        return self.backend.random_translate(x, *self.max_shifts, self.seed, offset, adjoint,
                                             0.0 if adjoint else self.fill_value, out)


class GaussianNoise(_RandomLayer):
    """Add ``N(0, stddev^2)`` noise to every element in training (any input shape); the gradient
    passes through unchanged.

    Parameters
    ----------
    stddev : float
        Standard deviation of the noise, finite and ``>= 0``.

    Examples
    --------
    >>> import fastnn as fnn
    >>> layer = fnn.layers.GaussianNoise(0.1)
    >>> layer.build((5,)); layer.output_shape
    (5,)
    """

    def __init__(self, stddev: float, name=None):
        super().__init__(name)
        self.stddev = real(stddev, f"GaussianNoise(stddev=...) in {self.name}", lo=0.0)

    def get_config(self):
        return {"stddev": self.stddev, "name": self.name}

    def _forward(self, x, training, logits):
        if not training or self.stddev == 0.0:
            if training:
                self._remember(x, x)
            return x
        offset = self._advance(self._per_sample(), x.shape[0])
        y = self.backend.gaussian_noise(x, self.stddev, self.seed, offset, self._buf("y", x.shape))
        self._remember(x, y)
        return y

    def _per_sample(self):
        # two counters per element; none while the layer draws nothing (stddev 0)
        return 2 * math.prod(self.input_shape) if self.stddev else 0

    def _backward(self, dy, need_dx):
        return dy if need_dx else None
