"""Optimizers (``fnn.optimizers``, also by name in ``compile``).

A model keeps all parameters and gradients in one flat buffer each, so an update is one C call
over the whole model. ``clipvalue`` clips every gradient element; ``clipnorm`` rescales each
weight's gradient whose L2 norm exceeds it (Keras semantics, per weight array).
"""
from __future__ import annotations

import numpy as np

from . import backend as _backend
from ._validate import fail, real


class Optimizer:
    """Base class: hyper-parameters, clipping and the state slots that model files save."""

    slots: tuple = ()

    def __init__(self, learning_rate, weight_decay=0.0, clipnorm=None, clipvalue=None):
        cls = type(self).__name__
        self.learning_rate = real(learning_rate, f"{cls}(learning_rate=...)", lo=0.0, lo_open=True)
        self.weight_decay = real(weight_decay, f"{cls}(weight_decay=...)", lo=0.0)
        self.clipnorm = None if clipnorm is None else real(clipnorm, f"{cls}(clipnorm=...)", lo=0.0, lo_open=True)
        self.clipvalue = None if clipvalue is None else real(clipvalue, f"{cls}(clipvalue=...)", lo=0.0,
                                                             lo_open=True)
        self.iterations = 0
        self.state: dict = {}

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "clipvalue": self.clipvalue}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"

    def clip(self, grads: list) -> None:
        """Clip gradients in place (grads: the per-weight arrays)."""
        if self.clipvalue is not None:
            for g in grads:
                np.clip(g, -self.clipvalue, self.clipvalue, out=g)
        if self.clipnorm is not None:
            for g in grads:
                norm = float(np.sqrt(np.dot(g.reshape(-1).astype(np.float64), g.reshape(-1))))
                if norm > self.clipnorm:
                    g *= g.dtype.type(self.clipnorm / norm)

    def _slot(self, be, key, like):
        buf = self.state.get(key)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = self.state[key] = be.zeros(like.shape, dtype=like.dtype)
        return buf

    def update(self, be, param, grad) -> None:
        """One step on a flat parameter buffer (gradients already clipped)."""
        raise NotImplementedError

    def apply_gradients(self, grads_and_params) -> None:
        """Update each parameter array in place from its gradient, as Keras' ``apply_gradients``
        (for custom training loops over ``layer.params``/``layer.grads``)."""
        pairs = list(grads_and_params)
        be = _backend.get("cpu")
        grads = [np.array(g, dtype=p.dtype, copy=True) for g, p in pairs]
        self.clip(grads)
        self.iterations += 1
        for i, (g, (_, p)) in enumerate(zip(grads, pairs)):
            if g.shape != p.shape:
                fail(f"{type(self).__name__}.apply_gradients[{i}]", f"gradient of shape {p.shape}", g.shape)
            if p.flags.c_contiguous:
                self._step(be, p.reshape(-1), g.reshape(-1), prefix=f"{i}/")
            else:
                # p.reshape(-1) would be a copy and the update would be lost: step a contiguous
                # copy and write it back into the caller's view.
                flat = np.ascontiguousarray(p).reshape(-1)
                self._step(be, flat, g.reshape(-1), prefix=f"{i}/")
                p[...] = flat.reshape(p.shape)

    def step(self, be, param, grad, grad_views) -> None:
        """Clip ``grad_views`` (views into ``grad``), then update the flat ``param``."""
        self.clip(grad_views)
        self.iterations += 1
        self._step(be, param, grad, prefix="")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and Nesterov momentum, as
    ``torch.optim.SGD`` (``weight_decay`` is L2 added to the gradient).

    Examples
    --------
    >>> import fastnn as fnn
    >>> opt = fnn.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)
    """

    slots = ("momentum",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, clipnorm=None,
                 clipvalue=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue)
        self.momentum = real(momentum, "SGD(momentum=...)", lo=0.0)
        if not isinstance(nesterov, bool):
            fail("SGD(nesterov=...)", "a bool", repr(nesterov), TypeError)
        if nesterov and self.momentum == 0:
            fail("SGD(nesterov=True)", "momentum > 0", "momentum=0")
        self.nesterov = nesterov

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _step(self, be, param, grad, prefix):
        buf = None
        first = False
        if self.momentum != 0:
            first = prefix + "momentum" not in self.state
            buf = self._slot(be, prefix + "momentum", param)
        be.sgd_step(param, grad, buf, self.learning_rate, self.momentum, self.weight_decay, self.nesterov, first)


class Adam(Optimizer):
    """Adam as ``torch.optim.Adam`` (epsilon added to the bias-corrected square root;
    ``weight_decay`` is L2 added to the gradient).

    Examples
    --------
    >>> import fastnn as fnn
    >>> opt = fnn.optimizers.Adam(learning_rate=1e-3)
    """

    slots = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0,
                 clipnorm=None, clipvalue=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue)
        self.beta_1 = real(beta_1, "Adam(beta_1=...)", lo=0.0, hi=1.0, hi_open=True)
        self.beta_2 = real(beta_2, "Adam(beta_2=...)", lo=0.0, hi=1.0, hi_open=True)
        self.epsilon = real(epsilon, "Adam(epsilon=...)", lo=0.0)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

    def _step(self, be, param, grad, prefix):
        m = self._slot(be, prefix + "m", param)
        v = self._slot(be, prefix + "v", param)
        be.adam_step(param, grad, m, v, self.iterations, self.learning_rate, self.beta_1, self.beta_2,
                     self.epsilon, self.weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
REGISTRY = {"SGD": SGD, "Adam": Adam}


def get(optimizer) -> Optimizer:
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()]()
    fail("compile(optimizer=...)", f"an Optimizer or one of {sorted(OPTIMIZERS)}", repr(optimizer))
