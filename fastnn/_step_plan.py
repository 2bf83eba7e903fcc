"""Training step plans: ``fit`` replays a model's forward pass, loss and backward pass as one C loop.

A small model's training step runs a dozen kernels of a few microseconds each, and the Python
around them (layer code, argument conversion and checks of each kernel call) costs about twice
as much. As inference plans do (``fastnn._inference``), a step plan runs the model's own training
forward, fused loss and backward once with the calling thread capturing the kernel calls
(``_core.capture_begin``); later steps of the same shape copy their batch into the plan's input
buffers and make the recorded calls in one nogil loop. The
layers' code is not duplicated, so the gradients and the loss are bit-identical to the step run
layer by layer. The optimizer update, weight penalties, gradient clipping and a data-parallel
all-reduce run after the plan, unchanged.

A plan is built only where every computation of the step is a kernel call whose arguments are
the same every step: every layer ``train_capturable`` (Dense and Conv2D outside "mixed_bfloat16",
whose bf16 weight copies are refreshed only when the weights changed, and without Conv2D's channel
softmax; activations; Flatten; pooling; BatchNormalization outside data-parallel steps, where it
all-reduces its statistics; SimpleRNN, LSTM, GRU and Embedding, with their table fusion; Dropout
and the augmentation layers, whose random stream offset the plan sets each step from the layer's
own counter), a fused loss (cross-entropy on logits, or mean squared error), the CPU backend. Plans are per model,
batch shape, loss weights (or none), thread count and data-parallel part; replacing parameter
arrays (``params_epoch``) or the gradient buffer drops them. ``FASTNN_STEP_PLANS=0`` turns them off.
"""
from __future__ import annotations

import os

from . import _core, losses
from ._config import get_num_threads
from .layers.base import params_epoch

#: plans kept per model (a full and a final partial batch, per thread count); more clears them
PLAN_MAX_COUNT = 4


def enabled() -> bool:
    return os.environ.get("FASTNN_STEP_PLANS", "1") != "0"


def _ours(obj) -> bool:
    """Whether obj's class is fastnn's own: a subclass defined elsewhere may compute in NumPy
    what its fastnn base computes in kernels, and inherit the claim that it does not."""
    return type(obj).__module__.startswith("fastnn.")


def plannable(model, fused: bool, part) -> bool:
    """Whether the training steps of the model can be captured (see the module docstring)."""
    # (under "mixed_bfloat16" a layer's bf16 weight copy is refreshed only after the weights
    # changed: a Python decision, not a kernel call)
    return (model.device == "cpu" and _ours(model.loss) and model.loss.kernel_only(fused)
            and all(_ours(layer) and layer.train_capturable and (part is None or not layer.collective)
                    and not (layer.mixed and layer.bf16_gemm) for layer in model.layers))


class StepPlan:
    """The captured forward, loss and backward of one training step at one batch shape."""

    __slots__ = ("calls", "out", "factor", "grads", "random", "fresh")

    def __init__(self, model, x, y, w, part, fused: bool):
        self.calls = _core.Plan()
        self.grads = model._flat_grads_base
        # captured on the plan's own input buffers: the caller's may be views of user data
        x, y = x.copy(), y.copy()
        w = None if w is None else w.copy()
        streams = [layer for layer in model.layers if hasattr(layer, "_advance")]
        counters = [layer.counter for layer in streams]
        from .models import training_plan  # here: models imports this module
        with training_plan(model.layers, part):
            _core.capture_begin(self.calls)
            try:
                _, self.out = model._forward_backward(x, y, w, part, fused)
            finally:
                _core.capture_end()
        if self.calls.n_results != 1:
            raise RuntimeError(f"step plan: expected one loss value, the step returns {self.calls.n_results}")
        # Dropout and augmentation: each step draws at the offset the layer's own counter gives
        # (the same for a layer's forward and backward calls), the calls told apart by seed
        seeded = self.calls.seeded_ops()
        self.random = []
        for layer, before in zip(streams, counters):
            calls = [i for i, seed in seeded if seed == layer.seed]
            if bool(calls) != (layer.counter != before):
                raise RuntimeError(f"step plan: {layer.name} drew {len(calls)} times, its counter disagrees")
            if calls:
                self.random.append((layer, calls))
        if sum(len(calls) for _, calls in self.random) != len(seeded):
            raise RuntimeError("step plan: random calls of no layer (or layers sharing a seed)")
        self.fresh = True      # the capture moved the counters already for the step it serves
        # the loss kernel's batch mean as this part's share of a data-parallel global mean
        self.factor = 1.0 if part is None else losses._share(1.0, x.shape[0], part.total)
        self.calls.bind_inputs(*(a for a in (x, y, w) if a is not None))

    def run(self, x, y, w, part):
        """The step on batch (x, y, w) (those of the capture's shapes; part as at the capture):
        (loss, model output)."""
        self.calls.load(*(a for a in (x, y, w) if a is not None))
        if not self.fresh:
            for layer, calls in self.random:
                layer._part = part
                try:
                    offset = layer._advance(layer._per_sample(), x.shape[0])
                finally:
                    layer._part = None
                for i in calls:
                    self.calls.set_offset(i, offset)
        self.fresh = False
        self.calls.run()
        return self.calls.result(0) * self.factor, self.out


def get(model, x, y, w, part, fused: bool):
    """The model's plan for this step (captured now if new), or None where steps are not planned."""
    if not (x.flags.c_contiguous and y.flags.c_contiguous and (w is None or w.flags.c_contiguous)):
        return None
    plans = model._step_plans
    # the gradient buffer by its base array: data-parallel fits swap the same shared one in and out
    key = (x.shape, x.dtype.char, y.shape, y.dtype.char, w is None, get_num_threads(), params_epoch(),
           id(model._flat_grads_base), fused, None if part is None else (part.offset, part.total))
    plan = plans.get(key, False)
    if plan is False:
        if len(plans) >= PLAN_MAX_COUNT:
            plans.clear()
        plan = None
        if plannable(model, fused, part):
            try:
                plan = StepPlan(model, x, y, w, part, fused)
            except RuntimeError:
                # a kernel that refused to be captured: a layer claims too much (the tests check
                # that every train_capturable layer is planned); the step runs layer by layer
                plan = None
        plans[key] = plan
    return plan
