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

BatchNormalization directly after a Dense or Conv2D without activation is folded into it: the plan
owns copies W' = W * s and b' = (b - mean) * s + beta (s = gamma / sqrt(var + epsilon), per output
unit or filter), captures the GEMM/convolution on those instead of the two layers, and fuses a
ReLU layer right after the pair into its epilogue. The copies are recomputed (in NumPy, outside
the replayed loop) on the first run after any in-place weight change (``layers.base.
weights_version``: optimizer steps, set_weights, model loading, BatchNormalization training
forwards bump it; code that writes into a layer's weight arrays itself calls
``layers.base.weights_changed()``). Folding changes the rounding: predict then differs from the
layer-by-layer forward by float rounding (the folded product rounds differently), not bit for bit.
Only models whose every layer is ``capturable`` (computes its inference forward through kernel
calls alone) are planned, and only batches whose activations stay small.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from . import _core
from ._config import get_num_threads
from .layers.base import params_epoch, weights_version

#: activations (all layer outputs together) of a planned batch stay under this many bytes: plan
#: buffers live as long as the model and the thread
PLAN_MAX_BYTES = 1 << 21
#: plans kept per model and thread (input shapes x thread counts); more clears them all
PLAN_MAX_COUNT = 8

_local = threading.local()


class InferencePlan:
    """The captured forward pass of one model at one input shape (see the module docstring)."""

    __slots__ = ("x", "out", "calls", "epoch", "folds", "weights", "mixed")

    def __init__(self, model, shape: tuple, dtype=None):
        # dtype: the checked input's (int64 indices for a first Embedding layer, whose plan
        # input holds indices; zeros are valid ones)
        self.x = np.zeros(shape, dtype=model.dtype if dtype is None else dtype)
        self.calls = _core.Plan()
        self.epoch = params_epoch()
        self.folds: list = []
        self.weights = weights_version()
        # "mixed_bfloat16" layers: the plan reads their bf16 weight copies, refilled in place
        self.mixed = [layer for layer in model.layers if layer.mixed and layer.bf16_gemm]
        for layer in self.mixed:      # converted now: a conversion is not a kernel call to capture
            layer._bf16_weight()
        _core.capture_begin(self.calls)
        try:
            self.out = self._forward(model.layers, self.x)
        finally:
            _core.capture_end()
        self.calls.bind(self.x, self.out)

    def _forward(self, layers, x):
        """The model's inference forward, with BatchNormalization folded where it can be."""
        i = 0
        while i < len(layers):
            if i + 1 < len(layers) and _Fold.applies(layers[i], layers[i + 1]):
                relu = i + 2 < len(layers) and type(layers[i + 2]).__name__ == "ReLU"
                fold = _Fold(layers[i], layers[i + 1])
                self.folds.append(fold)
                x = fold.forward(x, relu)
                i += 3 if relu else 2
            else:
                x = layers[i]._forward(x, False, False)
                i += 1
        return x

    def run(self, x: np.ndarray) -> np.ndarray:
        """The model output for x (a C-contiguous array of the plan's shape and dtype), as a
        new array."""
        if self.folds and self.weights != weights_version():
            self.weights = weights_version()
            for fold in self.folds:
                fold.refresh()
        for layer in self.mixed:
            layer._bf16_weight()
        return self.calls.call(x)


class _Fold:
    """A Dense or Conv2D (no activation) and the BatchNormalization after it, as one layer with
    plan-owned weights W' = W * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps)."""

    __slots__ = ("layer", "bn", "w", "b")

    @staticmethod
    def applies(layer, nxt) -> bool:
        from .layers import BatchNormalization, Conv2D, Dense
        return (type(nxt) is BatchNormalization and type(layer) in (Dense, Conv2D)
                and layer.activation == "linear" and not layer.mixed)

    def __init__(self, layer, bn):
        self.layer, self.bn = layer, bn
        self.w = np.empty_like(layer.params[0])
        self.b = np.empty(layer.output_shape[0], dtype=layer.dtype)
        self.refresh()

    def refresh(self) -> None:
        layer, bn = self.layer, self.bn
        dt = layer.dtype.type
        gamma, beta = bn._gamma_beta(bn.params)
        mean, var = bn.non_trainable
        s = (dt(1) if gamma is None else gamma) / np.sqrt(var + dt(bn.epsilon))
        s = np.broadcast_to(s, mean.shape)
        w = layer.params[0]
        # Dense W is (in, units): scale columns; Conv2D W is (filters, c, kh, kw): scale filters.
        np.multiply(w, s if w.ndim == 2 else s[:, None, None, None], out=self.w)
        b = layer.params[1] if layer.use_bias else dt(0)
        self.b[...] = (b - mean) * s + (dt(0) if beta is None else beta)

    def forward(self, x, relu: bool):
        layer = self.layer
        y = np.empty((x.shape[0],) + layer.output_shape, dtype=layer.dtype)
        be = layer.backend
        if layer.params[0].ndim == 2:
            return be.linear_fwd(x, self.w, self.b, y, relu=relu)
        return be.conv2d_fwd(x, self.w, self.b, y, layer.stride, layer._pads, relu=relu,
                             ws=layer._workspace(x.shape[0], False))


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
