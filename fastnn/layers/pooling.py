"""2-D max and average pooling (NCHW, no padding)."""
from __future__ import annotations

import numpy as np

from .._validate import fail
from .activation import activation_grad
from .base import Layer
from .conv import as_pair, check_4d, pair_config


def _argmax_buffer(layer, shape):
    """The int32 argmax indices a max-pooling training forward keeps for its backward (a planned
    buffer inside fit, fresh otherwise)."""
    if not layer._plan:
        return layer.backend.empty(shape, dtype=np.int32)
    idx = layer._bufs.get(("idx", shape))
    if idx is None:
        idx = layer._bufs[("idx", shape)] = layer.backend.empty(shape, dtype=np.int32)
    return idx


class _Pool2D(Layer):
    """Shared configuration of the pooling layers: windows of ``pool_size`` moved by ``stride``
    (default: ``pool_size``) over each channel; the last rows/columns that do not fill a
    window are dropped (Keras' "valid" pooling, PyTorch's default)."""

    capturable = True
    train_capturable = True

    def __init__(self, pool_size, stride=None, name=None):
        super().__init__(name)
        cls = type(self).__name__
        self.pool_size = as_pair(pool_size, f"{cls}(pool_size=...) in {self.name}")
        self.stride = self.pool_size if stride is None else as_pair(stride, f"{cls}(stride=...) in {self.name}")

    def get_config(self):
        return {"pool_size": pair_config(self.pool_size), "stride": pair_config(self.stride), "name": self.name}

    def compute_output_shape(self, input_shape):
        c, h, w = check_4d(self, input_shape)
        (kh, kw), (sh, sw) = self.pool_size, self.stride
        if max(sh, sw) >= 2 ** 31:
            fail(self.name, "strides below 2^31", f"stride {self.stride}")
        if kh > h or kw > w:
            fail(self.name, f"an input no smaller than the window {self.pool_size}",
                 f"input_shape (N, {c}, {h}, {w})")
        return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)


class MaxPool2D(_Pool2D):
    """Maximum over ``pool_size`` windows of ``(N, C, H, W)`` input.

    Training keeps the argmax of every window (int32 offsets) for the backward pass; the
    gradient goes to the first maximum of a window, as in PyTorch.

    Parameters
    ----------
    pool_size : int or (ph, pw)
    stride : int or (sh, sw), default pool_size

    Examples
    --------
    >>> import fastnn as fnn
    >>> layer = fnn.layers.MaxPool2D(2)
    >>> layer.build((8, 28, 28)); layer.output_shape
    (8, 14, 14)
    """

    def __init__(self, pool_size, stride=None, name=None):
        super().__init__(pool_size, stride, name)
        self._mask_relu_input = False   # set by Sequential: the input is a ReLU output whose
        #                                 layer leaves its mask to this one (see _backward)

    def _forward(self, x, training, logits):
        be = self.backend
        y = self._buf("y", (x.shape[0],) + self.output_shape)
        idx = _argmax_buffer(self, y.shape) if training else None
        be.maxpool2d_fwd(x, self.pool_size, self.stride, y, idx)
        if training:
            self._remember(x, y, idx=idx)
        return y

    def _backward(self, dy, need_dx):
        if not need_dx:
            return None
        x, y, extra = self._cache
        be = self.backend
        if self._mask_relu_input:
            # The input is relu(z) and each window sends its gradient to its argmax, where the
            # input equals y: masking by y > 0 here is the ReLU backward at every position that
            # gets a gradient.
            dy = activation_grad(be, "relu", y, dy, self._buf("dy_masked", dy.shape))
        return be.maxpool2d_bwd(dy, extra["idx"], self.pool_size, self.stride, self._buf("dx", x.shape))


class AvgPool2D(_Pool2D):
    """Mean over ``pool_size`` windows of ``(N, C, H, W)`` input.

    Parameters
    ----------
    pool_size : int or (ph, pw)
    stride : int or (sh, sw), default pool_size

    Examples
    --------
    >>> import fastnn as fnn
    >>> layer = fnn.layers.AvgPool2D(2, stride=1)
    >>> layer.build((3, 5, 5)); layer.output_shape
    (3, 4, 4)
    """

    def _forward(self, x, training, logits):
        y = self._buf("y", (x.shape[0],) + self.output_shape)
        self.backend.avgpool2d_fwd(x, self.pool_size, self.stride, y)
        if training:
            self._remember(x, y)
        return y

    def _backward(self, dy, need_dx):
        if not need_dx:
            return None
        x = self._cache[0]
        return self.backend.avgpool2d_bwd(dy, self.pool_size, self.stride, self._buf("dx", x.shape))


# ---- global pooling: the window is the whole (H, W) plane, through the same pooling kernels ----

class _GlobalPool2D(Layer):
    """(N, C, H, W) -> (N, C): one window covering each plane, computed by the 2-D pooling
    kernels (max: the first maximum gets the gradient, as PyTorch's adaptive_max_pool2d)."""

    capturable = True
    train_capturable = True

    def compute_output_shape(self, input_shape):
        c, h, w = check_4d(self, input_shape)
        if h * w >= 2 ** 31:
            fail(self.name, "planes of fewer than 2^31 values", f"input_shape (N, {c}, {h}, {w})")
        return (c,)

    def _window(self):
        return self.input_shape[1:], (1, 1)

    def _forward(self, x, training, logits):
        n = x.shape[0]
        y = self._buf("y", (n,) + self.output_shape)
        y4 = y.reshape(n, self.output_shape[0], 1, 1)
        idx = self._pool_fwd(x, y4, training)
        if training:
            self._remember(x, y, idx=idx)
        return y

    def _backward(self, dy, need_dx):
        if not need_dx:
            return None
        x, _, extra = self._cache
        dy4 = dy.reshape(dy.shape[0], dy.shape[1], 1, 1)
        return self._pool_bwd(dy4, extra["idx"], self._buf("dx", x.shape))


class GlobalAveragePooling2D(_GlobalPool2D):
    """Mean over each channel's (H, W) plane: ``(N, C, H, W) -> (N, C)``.

    Examples
    --------
    >>> import fastnn as fnn
    >>> layer = fnn.layers.GlobalAveragePooling2D()
    >>> layer.build((16, 7, 7)); layer.output_shape
    (16,)
    """

    def _pool_fwd(self, x, y4, training):
        self.backend.avgpool2d_fwd(x, *self._window(), y4)
        return None

    def _pool_bwd(self, dy4, idx, dx):
        return self.backend.avgpool2d_bwd(dy4, *self._window(), dx)


class GlobalMaxPooling2D(_GlobalPool2D):
    """Maximum over each channel's (H, W) plane: ``(N, C, H, W) -> (N, C)``; the gradient goes to
    the first maximum of each plane.

    Examples
    --------
    >>> import fastnn as fnn
    >>> model = fnn.Sequential([fnn.layers.Conv2D(4, 3), fnn.layers.GlobalMaxPooling2D()],
    ...                        input_shape=(1, 8, 8))
    >>> model.output_shape
    (4,)
    """

    def _pool_fwd(self, x, y4, training):
        idx = _argmax_buffer(self, y4.shape) if training else None
        self.backend.maxpool2d_fwd(x, *self._window(), y4, idx)
        return idx

    def _pool_bwd(self, dy4, idx, dx):
        return self.backend.maxpool2d_bwd(dy4, idx, *self._window(), dx)
