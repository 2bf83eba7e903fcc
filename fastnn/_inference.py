"""Inference plans: ``predict`` on small batches replays the model's forward pass as one C loop.

At batch 1 the kernels of a small model take tens of microseconds, and calling them from Python
(the layer code, argument conversion and checks of each kernel call, fresh output arrays) takes
about as long again. A plan runs the model's own ``_forward`` once with the calling thread
capturing the kernel calls (``_core.capture_begin``: each call is checked, then recorded with its
buffers instead of run); ``run`` then copies the input into the plan's input buffer, makes the
recorded calls in one nogil loop and copies the output out. The layers' code is not duplicated:
whatever a layer computes through kernels is what the plan replays, so results are bit-identical.

Plans are per thread (they own their buffers, and predict may run in many threads), per model,
input shape and thread count, and are dropped when any layer's parameter arrays are replaced
(``layers.base.params_epoch``); in-place weight updates (fit, set_weights) need no rebuild.
Only models whose every layer is ``capturable`` (computes its inference forward through kernel
calls alone) are planned, and only batches whose activations stay small.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from . import _core
from ._config import get_num_threads
from .layers.base import params_epoch

#: activations (all layer outputs together) of a planned batch stay under this many bytes: plan
#: buffers live as long as the model and the thread
PLAN_MAX_BYTES = 1 << 21
#: plans kept per model and thread (input shapes x thread counts); more clears them all
PLAN_MAX_COUNT = 8

_local = threading.local()


class InferencePlan:
    """The captured forward pass of one model at one input shape (see the module docstring)."""

    __slots__ = ("x", "out", "calls", "epoch")

    def __init__(self, model, shape: tuple, dtype=None):
        # dtype: the checked input's (int64 indices for a first Embedding layer, whose plan
        # input holds indices; zeros are valid ones)
        self.x = np.zeros(shape, dtype=model.dtype if dtype is None else dtype)
        self.calls = _core.Plan()
        self.epoch = params_epoch()
        _core.capture_begin(self.calls)
        try:
            self.out = model._forward(self.x, False, False)
        finally:
            _core.capture_end()
        self.calls.bind(self.x, self.out)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The model output for x (a C-contiguous array of the plan's shape and dtype), as a
        new array."""
        return self.calls.call(x)


def plannable(model, shape: tuple) -> bool:
    """Whether predict on inputs of this shape may use a plan."""
    if model.device != "cpu" or not all(layer.capturable for layer in model.layers):
        return False
    per_sample = sum(int(np.prod(layer.output_shape)) for layer in model.layers)
    return per_sample * shape[0] * model.dtype.itemsize <= PLAN_MAX_BYTES


def plan_for(model, x: np.ndarray) -> InferencePlan | None:
    """This thread's plan for model on inputs like x (built on first use), or None when the
    model or batch is not planned."""
    plans = getattr(_local, "plans", None)
    if plans is None:
        plans = _local.plans = weakref.WeakKeyDictionary()
    mine = plans.get(model)
    if mine is None:
        mine = plans[model] = {}
    key = (x.shape, get_num_threads())
    epoch = params_epoch()
    entry = mine.get(key)
    if entry is not None and entry[0] == epoch:
        return entry[1]
    if len(mine) >= PLAN_MAX_COUNT:
        mine.clear()
    plan = InferencePlan(model, x.shape, x.dtype) if plannable(model, x.shape) else None
    mine[key] = (epoch, plan)
    return plan
