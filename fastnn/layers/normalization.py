"""Batch normalization."""
from __future__ import annotations

import math

from .._validate import fail, real
from .base import Layer, weights_changed


class BatchNormalization(Layer):
    """Normalizes each feature (channel) with batch statistics in training and moving statistics
    in inference: ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``.

    Features are the last axis of ``(N, F)`` and ``(N, T, F)`` inputs and the channel axis of
    ``(N, C, H, W)`` inputs. Training uses the batch mean and the biased batch variance and
    updates ``moving = momentum * moving + (1 - momentum) * batch`` (Keras' rule; the biased
    variance); ``predict``, ``evaluate`` and ``forward(training=False)`` use the moving ones.

    Weights, in ``get_weights`` order: ``gamma`` (when ``scale``), ``beta`` (when ``center``),
    ``moving_mean``, ``moving_variance``, each ``(features,)``. Only gamma and beta are trained
    (``layer.grads = [dgamma, dbeta]``); the moving statistics are non-trainable weights
    (``layer.non_trainable``), kept outside the model's flat trainable buffer, so optimizers never
    touch them, but saved, loaded and set like the others.

    Parameters
    ----------
    momentum : float in [0, 1), default 0.99
    epsilon : float > 0, default 1e-3
    center : bool, default True
        Learn the shift ``beta`` (else 0, and no beta weight).
    scale : bool, default True
        Learn the scale ``gamma`` (else 1, and no gamma weight).

    Examples
    --------
    >>> import fastnn as fnn
    >>> layer = fnn.layers.BatchNormalization()
    >>> layer.build((8, 5, 5))
    >>> [w.shape for w in layer.get_weights()]
    [(8,), (8,), (8,), (8,)]
    """

    capturable = True
    train_capturable = True
    #: a data-parallel training step all-reduces its statistics (no step plan then)
    collective = True

    def __init__(self, momentum=0.99, epsilon=1e-3, center=True, scale=True, name=None):
        super().__init__(name)
        where = f"in {self.name}"
        for arg, value in (("center", center), ("scale", scale)):
            if not isinstance(value, bool):
                fail(f"BatchNormalization({arg}=...) {where}", "a bool", repr(value), TypeError)
        self.momentum = real(momentum, f"BatchNormalization(momentum=...) {where}", lo=0.0, hi=1.0, hi_open=True)
        self.epsilon = real(epsilon, f"BatchNormalization(epsilon=...) {where}", lo=0.0, lo_open=True)
        self.center, self.scale = center, scale
        self._fuse_relu = False     # set by Sequential during training steps when a ReLU layer follows:
        #                             this layer applies it (and its mask in backward), the ReLU passes through

    def get_config(self):
        return {"momentum": self.momentum, "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "name": self.name}

    def compute_output_shape(self, input_shape):
        if len(input_shape) not in (1, 2, 3):
            fail(self.name, "input of shape (N, features), (N, T, features) or (N, C, H, W)",
                 f"input_shape (N, {', '.join(map(str, input_shape))})")
        return tuple(input_shape)

    def _features(self, input_shape) -> int:
        return int(input_shape[0] if len(input_shape) == 3 else input_shape[-1])

    def param_specs(self, input_shape):
        self.compute_output_shape(input_shape)
        f = (self._features(input_shape),)
        return ([(f, "ones")] if self.scale else []) + ([(f, "zeros")] if self.center else [])

    def non_trainable_specs(self, input_shape):
        f = (self._features(input_shape),)
        return [(f, "zeros"), (f, "ones")]

    def weight_names(self):
        return (["gamma"] if self.scale else []) + (["beta"] if self.center else []) + \
            ["moving_mean", "moving_variance"]

    def _view(self, shape) -> tuple:
        """The kernels' (outer, channels, inner) view of a batch of this shape."""
        if len(shape) == 4:
            return (shape[0], shape[1], shape[2] * shape[3])
        return (shape[0] * (shape[1] if len(shape) == 3 else 1), shape[-1], 1)

    def _gamma_beta(self, arrays):
        gamma = arrays[0] if self.scale else None
        beta = arrays[int(self.scale)] if self.center else None
        return gamma, beta

    def _forward(self, x, training, logits):
        be = self.backend
        view = self._view(x.shape)
        y = self._buf("y", x.shape)
        gamma, beta = self._gamma_beta(self.params)
        moving_mean, moving_var = self.non_trainable
        if not training:
            be.batchnorm_fwd_infer(x.reshape(view), gamma, beta, moving_mean, moving_var, y.reshape(view),
                                   self.epsilon)
            return y
        mean, invstd = self._buf("mean", (view[1],)), self._buf("invstd", (view[1],))
        relu = self._fuse_relu
        if self._part is not None:
            # Data-parallel: statistics of the global batch. The sums around the moving mean (the
            # same on every process) are added over the processes, then applied.
            sums = be.batchnorm_sums(x.reshape(view), moving_mean, self._sums_buf())
            self._part.allreduce(sums)
            be.batchnorm_fwd_apply(x.reshape(view), gamma, beta, moving_mean, sums, self._count(x.shape),
                                   y.reshape(view), mean, invstd, moving_mean, moving_var, self.momentum,
                                   self.epsilon, relu=relu)
        else:
            if x.shape[0] == 0:
                fail(f"{self.name} input", "at least one sample in training (batch statistics)", f"shape {x.shape}")
            be.batchnorm_fwd_train(x.reshape(view), gamma, beta, y.reshape(view), mean, invstd, moving_mean,
                                   moving_var, self.momentum, self.epsilon, relu=relu)
        weights_changed(trainable=False)       # the moving statistics (inference plans fold them)
        self._remember(x, y, mean=mean, invstd=invstd, relu=relu)
        return y

    def _sums_buf(self):
        """The (2, features) float64 sums of the split kernels, on the layer's device."""
        return self._buf("sums", (2, self._features(self.input_shape)), "float64")

    def _count(self, shape) -> float:
        """Values per feature in the global batch of a data-parallel step."""
        return float(self._part.total * (math.prod(shape[1:]) // self._features(self.input_shape)))

    def _skip(self) -> None:
        """An empty part of a data-parallel batch: zero sums to the forward's all-reduce, and the
        statistics (moving ones, and those the backward uses) every process shares."""
        shape = (0,) + tuple(self.input_shape)
        x = self.backend.zeros(shape, dtype=self.dtype)
        self._forward(x, True, False)

    def _skip_backward(self, need_dx: bool) -> None:
        if need_dx:
            x = self._cache[0]
            self._backward(self.backend.zeros(x.shape, dtype=self.dtype), need_dx)

    def _backward(self, dy, need_dx):
        be = self.backend
        x, y, extra = self._cache
        view = self._view(x.shape)
        dx = self._buf("dx", x.shape) if need_dx else None
        gamma, _ = self._gamma_beta(self.params)
        dgamma, dbeta = self._gamma_beta(self.grads)
        if self._part is not None:
            # Data-parallel: dgamma and dbeta are this part's (the model adds all gradients over
            # the processes); dx needs the sums of the global batch.
            sums = be.batchnorm_sums(x.reshape(view), extra["mean"], self._sums_buf(), dy=dy.reshape(view),
                                     y=y.reshape(view), relu=extra["relu"])
            if dgamma is not None:
                dgamma[...] = sums[1] * extra["invstd"]
            if dbeta is not None:
                dbeta[...] = sums[0]
            if dx is not None:
                self._part.allreduce(sums)
                be.batchnorm_bwd_apply(x.reshape(view), gamma, extra["mean"], extra["invstd"], dy.reshape(view),
                                       sums, self._count(x.shape), dx.reshape(view), y=y.reshape(view),
                                       relu=extra["relu"])
            return dx
        be.batchnorm_bwd(x.reshape(view), gamma, extra["mean"], extra["invstd"], dy.reshape(view),
                         None if dx is None else dx.reshape(view), dgamma, dbeta, y=y.reshape(view),
                         relu=extra["relu"])
        return dx
