"""Activation layers, and the activation names shared with Dense(activation=...)."""
from __future__ import annotations

import math

from .._validate import fail, real
from ..backend import ACT_CODES
from .base import Layer

ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu")


def check_activation(name, where: str) -> str:
    if name is None:
        return "linear"
    if not isinstance(name, str) or name not in ACTIVATIONS:
        fail(where, f"an activation in {ACTIVATIONS} or None", repr(name))
    return name


def _rows(a):
    """(N, features) view of a batch; explicit sizes, since reshape(0, -1) is ambiguous."""
    return a.reshape(a.shape[0], math.prod(a.shape[1:]))


def apply_activation(be, act: str, x, out, alpha: float = 0.0):
    """out = act(x) with the backend's kernels (out may be x)."""
    if act == "softmax":
        return be.softmax_fwd(_rows(x), _rows(out)).reshape(out.shape)
    return be.act_fwd(ACT_CODES[act], x, out, alpha)


def activation_grad(be, act: str, y, dy, out, alpha: float = 0.0):
    """out = dL/dx from the activation output y and dL/dy."""
    if act == "softmax":
        be.softmax_bwd(_rows(y), _rows(dy), _rows(out))
        return out
    return be.act_bwd(ACT_CODES[act], y, dy, out, alpha)


class Activation(Layer):
    """Elementwise activation layer (base of ReLU, Sigmoid, Tanh, Softmax, LeakyReLU)."""

    activation = "linear"
    capturable = True
    train_capturable = True

    def __init__(self, name=None):
        super().__init__(name)
        self.alpha = 0.0
        self._applied_before = False    # set by Sequential during training steps while the layer before
        #                                 applies this activation itself (BatchNormalization -> ReLU)

    @property
    def output_activation(self):
        return self.activation if self.activation in ("softmax", "sigmoid") else None

    def _forward(self, x, training, logits):
        # a fused loss, or the layer before (in training), applies this activation itself
        passthrough = bool(logits and self.output_activation) or (training and self._applied_before)
        y = x if passthrough else apply_activation(self.backend, self.activation, x, self._buf("y", x.shape),
                                                   self.alpha)
        if training:
            self._remember(x, y, logits=passthrough)
        return y

    def _backward(self, dy, need_dx):
        x, y, extra = self._cache
        if extra["logits"]:
            return dy
        return activation_grad(self.backend, self.activation, y, dy, self._buf("dx", dy.shape), self.alpha)


class ReLU(Activation):
    """Rectified linear unit, ``max(x, 0)``.

    Examples
    --------
    >>> import fastnn as fnn
    >>> model = fnn.Sequential([fnn.layers.Dense(8), fnn.layers.ReLU()])
    """

    activation = "relu"


class Sigmoid(Activation):
    """Logistic sigmoid ``1 / (1 + exp(-x))``; fused with ``binary_crossentropy`` in training."""

    activation = "sigmoid"


class Tanh(Activation):
    """Hyperbolic tangent."""

    activation = "tanh"


class Softmax(Activation):
    """Softmax over the last axis of ``(N, K)`` input; fused with the cross-entropies in training."""

    activation = "softmax"

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            fail(f"{self.name}", "input of shape (N, K)", f"input_shape {tuple(input_shape)}")
        return tuple(input_shape)


class LeakyReLU(Activation):
    """``x if x > 0 else alpha * x``.

    Parameters
    ----------
    alpha : float, default 0.01
        Slope for negative inputs, ``alpha >= 0``.
    """

    activation = "leaky_relu"

    def __init__(self, alpha: float = 0.01, name=None):
        super().__init__(name)
        self.alpha = real(alpha, f"LeakyReLU(alpha=...) in {self.name}", lo=0.0)

    def get_config(self):
        return {"alpha": self.alpha, "name": self.name}
