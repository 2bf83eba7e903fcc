"""Learning-rate schedules (``fnn.optimizers.schedules``): Keras 3's formulas.

An optimizer given a schedule evaluates it once per step, at ``step = optimizer.iterations``
(the first step uses step 0), and hands the resulting float to its C update kernel.

Examples
--------
>>> import fastnn as fnn
>>> sched = fnn.optimizers.schedules.CosineDecay(0.1, decay_steps=1000, warmup_target=0.5, warmup_steps=100)
>>> opt = fnn.optimizers.SGD(learning_rate=sched, momentum=0.9)
>>> opt.learning_rate          # the rate of the next step (step 0)
0.1
"""
from __future__ import annotations

import math

from .._validate import fail, positive_int, real


class LearningRateSchedule:
    """Base class: ``schedule(step) -> float`` and ``get_config()`` (plain values, so model files
    can store it). Subclass it for a custom schedule (model files store only the built-in ones)."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


def _rate(value, where: str, allow_zero: bool = False) -> float:
    return real(value, where, lo=0.0, lo_open=not allow_zero)


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; with ``staircase`` the
    exponent is the floor of the quotient."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate = _rate(initial_learning_rate, "ExponentialDecay(initial_learning_rate=...)")
        self.decay_steps = real(decay_steps, "ExponentialDecay(decay_steps=...)", lo=0.0, lo_open=True)
        self.decay_rate = _rate(decay_rate, "ExponentialDecay(decay_rate=...)")
        if not isinstance(staircase, bool):
            fail("ExponentialDecay(staircase=...)", "a bool", repr(staircase), TypeError)
        self.staircase = staircase

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase}


class CosineDecay(LearningRateSchedule):
    """Keras 3's cosine decay with optional linear warmup: for ``warmup_steps`` steps the rate
    goes linearly from ``initial_learning_rate`` to ``warmup_target``, then follows
    ``peak * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)`` over the next
    ``decay_steps`` steps (``peak``: ``warmup_target``, or ``initial_learning_rate`` without
    warmup) and stays at ``alpha * peak``."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
        self.warmup_steps = positive_int(warmup_steps, "CosineDecay(warmup_steps=...)", minimum=0)
        self.warmup_target = None if warmup_target is None else _rate(warmup_target, "CosineDecay(warmup_target=...)")
        # A warmup may start from 0; without one the rate must be positive.
        self.initial_learning_rate = _rate(initial_learning_rate, "CosineDecay(initial_learning_rate=...)",
                                           allow_zero=self.warmup_target is not None and self.warmup_steps > 0)
        self.decay_steps = positive_int(decay_steps, "CosineDecay(decay_steps=...)")
        self.alpha = real(alpha, "CosineDecay(alpha=...)", lo=0.0, hi=1.0)

    def _decay(self, step, peak):
        done = min(step, self.decay_steps) / self.decay_steps
        return peak * ((1 - self.alpha) * 0.5 * (1.0 + math.cos(math.pi * done)) + self.alpha)

    def __call__(self, step):
        if self.warmup_target is None:
            return self._decay(step, self.initial_learning_rate)
        if step < self.warmup_steps:
            return (self.warmup_target - self.initial_learning_rate) * (step / self.warmup_steps) \
                + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, then ``values[-1]``."""

    def __init__(self, boundaries, values):
        if not isinstance(boundaries, (list, tuple)) or not isinstance(values, (list, tuple)):
            fail("PiecewiseConstantDecay(boundaries, values)", "two lists", f"{type(boundaries).__name__}, "
                 f"{type(values).__name__}", TypeError)
        self.boundaries = [real(b, f"PiecewiseConstantDecay(boundaries[{i}])", lo=0.0)
                           for i, b in enumerate(boundaries)]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            fail("PiecewiseConstantDecay(boundaries=...)", "strictly increasing values", repr(list(boundaries)))
        if len(values) != len(self.boundaries) + 1:
            fail("PiecewiseConstantDecay(values=...)", f"{len(self.boundaries) + 1} values (one more than the "
                 f"boundaries)", f"{len(values)}")
        self.values = [_rate(v, f"PiecewiseConstantDecay(values[{i}])") for i, v in enumerate(values)]

    def __call__(self, step):
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


REGISTRY = {cls.__name__: cls for cls in (ExponentialDecay, CosineDecay, PiecewiseConstantDecay)}
