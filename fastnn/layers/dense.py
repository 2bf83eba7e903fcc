"""Fully connected layer."""
from __future__ import annotations

from .. import initializers, regularizers
from .._validate import fail, positive_int
from .activation import activation_grad, apply_activation, check_activation
from .base import Layer


class Dense(Layer):
    """``y = activation(x @ W + b)`` for input ``(N, in)``.

    ReLU is fused into the GEMM epilogue; a final sigmoid/softmax is fused with its
    cross-entropy during training.

    Parameters
    ----------
    units : int
        Output width.
    activation : str or None
        One of "relu", "sigmoid", "tanh", "softmax", "leaky_relu", "linear"/None.
    use_bias : bool, default True
    kernel_initializer : str, default "glorot_uniform"
    kernel_regularizer : regularizer, optional
        Penalty on ``W`` (``fnn.regularizers``), added to the training loss and gradient.

    Examples
    --------
    >>> import fastnn as fnn
    >>> layer = fnn.layers.Dense(3, activation="relu")
    >>> layer.build((4,))
    >>> [w.shape for w in layer.get_weights()]
    [(4, 3), (3,)]
    """

    capturable = True
    train_capturable = True
    bf16_gemm = True

    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", kernel_regularizer=None, name=None):
        super().__init__(name)
        self.kernel_regularizer = regularizers.get(kernel_regularizer, f"Dense(kernel_regularizer=...) in {self.name}")
        self.regularized = ((0, self.kernel_regularizer),) if self.kernel_regularizer else ()
        self.units = positive_int(units, f"Dense(units=...) in {self.name}")
        self.activation = check_activation(activation, f"Dense(activation=...) in {self.name}")
        if not isinstance(use_bias, bool):
            fail(f"Dense(use_bias=...) in {self.name}", "a bool", repr(use_bias), TypeError)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.check_name(kernel_initializer,
                                                          f"Dense(kernel_initializer=...) in {self.name}")
        self.alpha = 0.01 if self.activation == "leaky_relu" else 0.0

    @property
    def output_activation(self):
        return self.activation if self.activation in ("softmax", "sigmoid") else None

    def get_config(self):
        return {"units": self.units, "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "kernel_regularizer": regularizers.config(self.kernel_regularizer), "name": self.name}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            fail(self.name, "input of shape (N, features) (add Flatten() before Dense)",
                 f"input_shape (N, {', '.join(map(str, input_shape))})")
        return (self.units,)

    def param_specs(self, input_shape):
        specs = [((input_shape[0], self.units), self.kernel_initializer)]
        if self.use_bias:
            specs.append(((self.units,), "zeros"))
        return specs

    def weight_names(self):
        return ["W", "b"] if self.use_bias else ["W"]

    def _forward(self, x, training, logits):
        be = self.backend
        act = self.activation
        if logits and act in ("softmax", "sigmoid"):
            act = "linear"
        y = self._buf("y", (x.shape[0], self.units))
        be.linear_fwd(x, self.params[0], self.params[1] if self.use_bias else None, y, relu=act == "relu",
                      wq=self._bf16_weight())
        if act not in ("linear", "relu"):
            apply_activation(be, act, y, y, self.alpha)
        if training:
            self._remember(x, y, act=act)
        return y

    def _backward(self, dy, need_dx):
        be = self.backend
        x, y, extra = self._cache
        act = extra["act"]
        dz = dy
        if act != "linear":
            dz = activation_grad(be, act, y, dy, self._buf("dz", dy.shape), self.alpha)
        dx = self._buf("dx", x.shape) if need_dx else None
        be.linear_bwd(x, self.params[0], dz, self.grads[0], self.grads[1] if self.use_bias else None, dx,
                      wq=self._bf16_weight())
        return dx
