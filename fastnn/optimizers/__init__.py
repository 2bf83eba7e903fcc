"""Optimizers (``fnn.optimizers``, also by name in ``compile``).

A model keeps all parameters and gradients in one flat buffer each, so an update is one C call
over the whole model. ``clipvalue`` clips every gradient element; ``clipnorm`` rescales each
weight's gradient whose L2 norm exceeds it (Keras semantics, per weight array).

``learning_rate`` is a float or a schedule (``fnn.optimizers.schedules``); ``iterations`` counts
the steps taken, and ``learning_rate`` reads as the float rate of the next step (the schedule at
``step = iterations``), which reaches the update kernel as a number.
"""
from __future__ import annotations

import numpy as np

from .. import _core
from .. import backend as _backend
from .._config import get_num_threads
from .._validate import fail, real
from ..layers.base import weights_changed
from . import schedules
from .schedules import LearningRateSchedule


class Optimizer:
    """Base class: hyper-parameters, clipping and the state slots that model files save."""

    slots: tuple = ()

    def __init__(self, learning_rate, weight_decay=0.0, clipnorm=None, clipvalue=None):
        cls = type(self).__name__
        self.learning_rate = learning_rate
        self.weight_decay = real(weight_decay, f"{cls}(weight_decay=...)", lo=0.0)
        self.clipnorm = None if clipnorm is None else real(clipnorm, f"{cls}(clipnorm=...)", lo=0.0, lo_open=True)
        self.clipvalue = None if clipvalue is None else real(clipvalue, f"{cls}(clipvalue=...)", lo=0.0,
                                                             lo_open=True)
        self.iterations = 0
        self.state: dict = {}
        self._plans: dict = {}     # captured updates (step(planned=True))

    def __getstate__(self):
        # plans point into the buffers of this optimizer and its model: a copy captures its own
        return {**self.__dict__, "_plans": {}}

    @property
    def learning_rate(self) -> float:
        """The rate of the next step: the float given, or the schedule at ``step = iterations``."""
        lr = self._learning_rate
        return float(lr(self.iterations)) if isinstance(lr, LearningRateSchedule) else lr

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        if isinstance(value, LearningRateSchedule):
            self._learning_rate = value
        else:
            self._learning_rate = real(value, f"{type(self).__name__}(learning_rate=...)", lo=0.0, lo_open=True)

    @property
    def schedule(self):
        """The learning-rate schedule, or None for a constant rate."""
        lr = self._learning_rate
        return lr if isinstance(lr, LearningRateSchedule) else None

    def get_config(self) -> dict:
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            lr = {"class": type(lr).__name__, "config": lr.get_config()}
        return {"learning_rate": lr, "weight_decay": self.weight_decay,
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
        lr = self.learning_rate
        self.iterations += 1
        for i, (g, (_, p)) in enumerate(zip(grads, pairs)):
            if g.shape != p.shape:
                fail(f"{type(self).__name__}.apply_gradients[{i}]", f"gradient of shape {p.shape}", g.shape)
            if p.flags.c_contiguous:
                self._step(be, p.reshape(-1), g.reshape(-1), f"{i}/", lr)
            else:
                # p.reshape(-1) would be a copy and the update would be lost: step a contiguous
                # copy and write it back into the caller's view.
                flat = np.ascontiguousarray(p).reshape(-1)
                self._step(be, flat, g.reshape(-1), f"{i}/", lr)
                p[...] = flat.reshape(p.shape)
        weights_changed()     # every update in place, here or in step: folded inference plans refresh

    def step(self, be, param, grad, grad_views, planned: bool = False) -> None:
        """Clip ``grad_views`` (views into ``grad``), then update the flat ``param``. ``planned``
        (CPU arrays): the update kernel call is captured once (``_core.Plan``) and replayed with
        this step's number and rate, which skips its Python (a few microseconds a step)."""
        self.clip(grad_views)
        lr = self.learning_rate      # the schedule at the step count before this step
        self.iterations += 1
        # only fastnn's own updates, which are one kernel call each (a subclass may compute more)
        plan = self._plan(be, param, grad, lr) if planned and type(self)._step in _KERNEL_STEPS else None
        if plan is None:
            self._step(be, param, grad, "", lr)
        else:
            plan.set_step(0, self.iterations, lr)
            plan.run()
        weights_changed()

    def _plan(self, be, param, grad, lr):
        """The captured update of param from grad with the current state buffers, or None on a
        step that creates state (SGD's first momentum step differs from the later ones)."""
        state = self.state
        key = (id(param), id(grad), get_num_threads(), tuple(map(id, state.values())))
        plan = self._plans.get(key)
        if plan is None:
            before = dict(state)
            plan = _core.Plan()
            _core.capture_begin(plan)
            try:
                self._step(be, param, grad, "", lr)
            finally:
                _core.capture_end()
            if len(state) != len(before) or any(state.get(k) is not v for k, v in before.items()):
                state.clear()        # the state this capture made: the step itself makes it
                state.update(before)
                return None
            if len(plan) != 1:
                return None
            if len(self._plans) >= 4:
                self._plans.clear()
            self._plans[key] = plan
        return plan


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

    def _step(self, be, param, grad, prefix, lr):
        buf = None
        first = False
        if self.momentum != 0:
            first = prefix + "momentum" not in self.state
            buf = self._slot(be, prefix + "momentum", param)
        be.sgd_step(param, grad, buf, lr, self.momentum, self.weight_decay, self.nesterov, first)


class Adam(Optimizer):
    """Adam as ``torch.optim.Adam`` (epsilon added to the bias-corrected square root;
    ``weight_decay`` is L2 added to the gradient).

    Examples
    --------
    >>> import fastnn as fnn
    >>> opt = fnn.optimizers.Adam(learning_rate=1e-3)
    """

    slots = ("m", "v")
    decoupled = False

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0,
                 clipnorm=None, clipvalue=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue)
        self.beta_1 = real(beta_1, "Adam(beta_1=...)", lo=0.0, hi=1.0, hi_open=True)
        self.beta_2 = real(beta_2, "Adam(beta_2=...)", lo=0.0, hi=1.0, hi_open=True)
        self.epsilon = real(epsilon, "Adam(epsilon=...)", lo=0.0)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}

    def _step(self, be, param, grad, prefix, lr):
        m = self._slot(be, prefix + "m", param)
        v = self._slot(be, prefix + "v", param)
        be.adam_step(param, grad, m, v, self.iterations, lr, self.beta_1, self.beta_2, self.epsilon,
                     self.weight_decay, self.decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``: each step first scales the
    parameters by ``1 - learning_rate * weight_decay``, then takes the Adam step on the plain
    gradient.

    Examples
    --------
    >>> import fastnn as fnn
    >>> opt = fnn.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01)
    """

    decoupled = True

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 clipnorm=None, clipvalue=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue)


class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop(alpha=rho, eps=epsilon, momentum=momentum, centered=centered)``
    (``weight_decay`` is L2 added to the gradient).

    Examples
    --------
    >>> import fastnn as fnn
    >>> opt = fnn.optimizers.RMSprop(learning_rate=1e-3, momentum=0.9, centered=True)
    """

    slots = ("sq", "grad_avg", "momentum")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=0.0,
                 clipnorm=None, clipvalue=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue)
        self.rho = real(rho, "RMSprop(rho=...)", lo=0.0, hi=1.0, hi_open=True)
        self.momentum = real(momentum, "RMSprop(momentum=...)", lo=0.0)
        self.epsilon = real(epsilon, "RMSprop(epsilon=...)", lo=0.0)
        if not isinstance(centered, bool):
            fail("RMSprop(centered=...)", "a bool", repr(centered), TypeError)
        self.centered = centered

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}

    def _step(self, be, param, grad, prefix, lr):
        sq = self._slot(be, prefix + "sq", param)
        avg = self._slot(be, prefix + "grad_avg", param) if self.centered else None
        buf = self._slot(be, prefix + "momentum", param) if self.momentum != 0 else None
        be.rmsprop_step(param, grad, sq, avg, buf, lr, self.rho, self.momentum, self.epsilon, self.weight_decay)


_KERNEL_STEPS = (SGD._step, Adam._step, RMSprop._step)
OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}
REGISTRY = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop}


def get(optimizer) -> Optimizer:
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()]()
    fail("compile(optimizer=...)", f"an Optimizer or one of {sorted(OPTIMIZERS)}", repr(optimizer))


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "schedules", "get"]
