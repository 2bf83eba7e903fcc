"""The Layer base class: building, checked forward/backward, weights and planned buffers."""
from __future__ import annotations

import itertools

import numpy as np

from .. import _config, backend, initializers
from .._validate import NotBuiltError, as_array, check_shape, fail

_counter = itertools.count()
# Bumped whenever any layer's parameter arrays are replaced (build, flattening, moving devices):
# inference plans hold pointers to those arrays and are rebuilt when it changes.
_params_epoch = itertools.count()
_epoch = [next(_params_epoch)]


def params_epoch() -> int:
    """A number that changes whenever any layer's ``params`` list is replaced."""
    return _epoch[0]


# Bumped whenever weights may have changed in place (an optimizer step, set_weights, a
# BatchNormalization training forward): inference plans that fold weights (BatchNormalization
# into the Dense/Conv2D before it) recompute the folded copies when it changes.
_weights_counter = itertools.count()
_weights_version = [next(_weights_counter)]


def weights_version() -> int:
    """A number that changes whenever weights may have changed in place."""
    return _weights_version[0]


# Bumped when trainable weights may have changed in place (optimizer steps, set_weights, loading;
# not BatchNormalization's moving statistics): layers under "mixed_bfloat16" refresh their bf16
# weight copies on the first use after it, so weights are converted once per optimizer step.
_params_version = [next(_weights_counter)]


def weights_changed(trainable: bool = True) -> None:
    """Note that weights changed in place (for inference plans that fold weights, and the bf16
    weight copies of "mixed_bfloat16" layers unless ``trainable`` is False)."""
    _weights_version[0] = next(_weights_counter)
    if trainable:
        _params_version[0] = _weights_version[0]


class Layer:
    """Base of all layers.

    A subclass implements ``compute_output_shape``, ``param_specs`` (the shapes and initialisers
    of its weights; ``_build`` for any other state),
    ``_forward(x, training, logits)`` and ``_backward(dy, need_dx)``. The public ``forward``
    and ``backward`` check their inputs and then call these; ``Sequential`` calls the private
    ones directly, having checked the model input once.

    Parameters
    ----------
    name : str, optional
        Layer name; a unique one is made from the class name when omitted.
    """

    #: name of the activation a layer ends with ("softmax"/"sigmoid"), for fused losses
    output_activation: str | None = None
    #: ``[(weight index, regularizer), ...]``: the penalties Sequential adds in training steps
    regularized: tuple = ()
    #: whether ``_forward(x, training=False)`` computes only through the backend's kernel calls
    #: (no NumPy arithmetic on arrays), so an inference plan may capture it (fastnn._inference)
    capturable: bool = False
    #: whether the training ``_forward`` and ``_backward`` compute only through kernel calls whose
    #: arguments stay the same from step to step (no NumPy arithmetic, no per-step random seeds or
    #: collectives), so a training step plan may capture them (fastnn._step_plan)
    train_capturable: bool = False
    #: whether a data-parallel training step reduces over processes inside the layer (no step
    #: plan can capture that)
    collective: bool = False
    #: this process's part of the global batch in a data-parallel training step
    #: (``fastnn.distributed``): None outside one, else an object with ``offset`` (the part's
    #: first sample in the global batch), ``total`` (the global batch's samples) and
    #: ``allreduce(array)`` (sums a small array over the processes in place)
    _part = None
    #: whether the layer multiplies by its first weight (Dense, Conv2D): under "mixed_bfloat16" it
    #: keeps a bf16 copy of it (``_bf16_weight``)
    bf16_gemm: bool = False

    def __init__(self, name: str | None = None):
        if name is not None and not isinstance(name, str):
            fail(f"{type(self).__name__}(name=...)", "a str", repr(name), TypeError)
        self.name = name or f"{type(self).__name__.lower()}_{next(_counter)}"
        self.built = False
        self.input_shape: tuple | None = None
        self.output_shape: tuple | None = None
        self.dtype: np.dtype | None = None
        self.mixed = False          # "mixed_bfloat16": GEMM inputs rounded to bf16 (see _bf16_weight)
        self._bf16 = None           # (params version, weight array, the backend's bf16 copy of it)
        self.params: list = []
        self.non_trainable: list = []   # weights after params in get_weights, outside the
        #                                  model's flat trainable buffer (the optimizer never sees them)
        self.grads: list = []
        self.device = "cpu"
        self._plan = False          # reuse output/gradient buffers between steps (inside fit)
        self._bufs: dict = {}
        self._cache = None          # what backward needs, set by forward(training=True)

    # ---- configuration -------------------------------------------------------------------
    def get_config(self) -> dict:
        """Constructor arguments, JSON-serialisable (saved in model files)."""
        return {"name": self.name}

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    @property
    def params(self) -> list:
        """The weight arrays, in ``get_weights`` order (updated in place by training)."""
        return self._params

    @params.setter
    def params(self, value: list) -> None:
        self._params = value
        _epoch[0] = next(_params_epoch)

    @property
    def non_trainable(self) -> list:
        """The non-trainable weight arrays (updated by the layer itself, e.g. moving statistics),
        after ``params`` in ``get_weights`` order; not in the model's flat trainable buffer."""
        return self._non_trainable

    @non_trainable.setter
    def non_trainable(self, value: list) -> None:
        self._non_trainable = value
        _epoch[0] = next(_params_epoch)

    def all_weights(self) -> list:
        """``params + non_trainable``: the arrays of ``get_weights``, in order."""
        return self._params + self._non_trainable

    @property
    def backend(self):
        return backend.get(self.device)

    # ---- building ------------------------------------------------------------------------
    def build(self, input_shape, dtype=None) -> None:
        """Allocate the weights for inputs of ``input_shape`` (without the batch axis)."""
        try:
            shape = tuple(int(d) for d in input_shape)
        except TypeError as err:
            raise TypeError(f"{self.name}: expected input_shape as a tuple of ints, got {input_shape!r}") from err
        if any(d < 1 for d in shape):
            fail(f"{self.name}.build", "positive dimensions in input_shape", shape)
        self.dtype, self.mixed = _config.policy_or_default(dtype)
        self._bf16 = None
        self.output_shape = tuple(self.compute_output_shape(shape))
        self.input_shape = shape
        self.params = [self.backend.asarray(initializers.initialize(init, shape_, self.dtype))
                       for shape_, init in self.param_specs(shape)]
        self.non_trainable = [self.backend.asarray(initializers.initialize(init, shape_, self.dtype))
                              for shape_, init in self.non_trainable_specs(shape)]
        self._build(shape)
        self.grads = [np.zeros_like(p) for p in self.params]
        self._bufs = {}
        self.built = True

    def param_specs(self, input_shape: tuple) -> list:
        """``[(shape, initializer name), ...]`` of the weights for inputs of ``input_shape``, in
        ``get_weights`` order. Model files are checked against it before anything is allocated."""
        return []

    def non_trainable_specs(self, input_shape: tuple) -> list:
        """``[(shape, initializer name), ...]`` of the non-trainable weights (after those of
        ``param_specs`` in ``get_weights`` order)."""
        return []

    def _build(self, input_shape: tuple) -> None:
        """Set up state other than the weights (most layers have none)."""

    # ---- computing -----------------------------------------------------------------------
    def forward(self, x, training: bool = True):
        """Compute the layer output for a batch ``x`` and cache what backward needs.

        Builds the layer from ``x.shape[1:]`` on first use.
        """
        x = as_array(x, f"{self.name} input", dtype=self.dtype)
        if not self.built:
            if x.ndim < 2:
                fail(f"{self.name} input", "a batch of at least 2 dimensions (N, ...)", f"shape {x.shape}")
            self.build(x.shape[1:])
            x = np.ascontiguousarray(x, dtype=self.dtype)
        check_shape(x, self.input_shape, f"{self.name} input")
        return self._forward(self.backend.asarray(x), bool(training), False)

    def backward(self, dy):
        """Given dL/dy, store the parameter gradients in ``self.grads`` and return dL/dx."""
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward(x, training=True)")
        dy = as_array(dy, f"{self.name} output gradient", dtype=self.dtype)
        expected = self._cache_batch_shape()
        if dy.shape != expected:
            fail(f"{self.name} output gradient", f"shape {expected}", f"shape {dy.shape}")
        return self._backward(self.backend.asarray(dy), True)

    def _cache_batch_shape(self) -> tuple:
        return (self._cache_n,) + tuple(self.output_shape)

    def _forward(self, x, training: bool, logits: bool):
        raise NotImplementedError

    def _backward(self, dy, need_dx: bool):
        raise NotImplementedError

    def _remember(self, x, y, **extra) -> None:
        self._cache_n = x.shape[0]
        self._cache = (x, y, extra)

    def _drop_buffers(self) -> None:
        """Forget the planned buffers and the forward cache (the layer moved to another device)."""
        self._bufs, self._cache, self._bf16 = {}, None, None

    @property
    def dtype_policy(self) -> str | None:
        """"float32", "float64" or "mixed_bfloat16" (None before build)."""
        return None if self.dtype is None else _config.MIXED_BFLOAT16 if self.mixed else self.dtype.name

    def _bf16_weight(self):
        """Under "mixed_bfloat16", the backend's bf16 copy of ``params[0]`` (``backend.bf16_weight``),
        converted again only after the weights changed (an optimizer step, set_weights, loading);
        None otherwise."""
        if not self.mixed:
            return None
        version, w, cache = self._bf16 if self._bf16 is not None else (None, None, None)
        if version != _params_version[0] or w is not self.params[0]:
            cache = self.backend.bf16_weight(self.params[0], cache if w is self.params[0] else None)
            self._bf16 = (_params_version[0], self.params[0], cache)
        return cache

    def _buf(self, key: str, shape: tuple, dtype=None):
        """An output/gradient buffer (of the layer's dtype unless given): reused between training
        steps inside fit, fresh otherwise (so arrays returned to users and concurrent predict
        calls never share memory)."""
        dtype = self.dtype if dtype is None else dtype
        if self._plan:
            # Keyed by shape too: a final partial batch gets its own set instead of
            # reallocating the full-batch one every epoch.
            buf = self._bufs.get((key, shape))
            if buf is None:
                buf = self._bufs[(key, shape)] = self.backend.empty(shape, dtype=dtype)
            return buf
        return self.backend.empty(shape, dtype=dtype)

    # ---- weights -------------------------------------------------------------------------
    def weight_names(self) -> list:
        return []

    def get_weights(self) -> list:
        """Copies of the weights, in the order of API.md."""
        return [np.array(self.backend.to_numpy(p), copy=True) for p in self.all_weights()]

    def set_weights(self, weights) -> None:
        """Set the weights from a list of arrays of the shapes ``get_weights`` returns."""
        new = self._checked_weights(weights)
        for p, w in zip(self.all_weights(), new):
            p[...] = self.backend.asarray(w)
        weights_changed()

    def _checked_weights(self, weights) -> list:
        """The arrays ``set_weights`` would assign, converted and checked (nothing is changed)."""
        if not self.built:
            raise NotBuiltError(f"{self.name}: build the layer before set_weights")
        weights = list(weights)
        current = self.all_weights()
        if len(weights) != len(current):
            fail(f"{self.name}.set_weights", f"{len(current)} arrays", f"{len(weights)}")
        new = []
        for i, (p, w) in enumerate(zip(current, weights)):
            w = as_array(w, f"{self.name}.set_weights[{i}]", dtype=self.dtype)
            if w.shape != p.shape:
                fail(f"{self.name}.set_weights[{i}]", f"shape {p.shape}", f"shape {w.shape}")
            if not np.isfinite(w).all():
                fail(f"{self.name}.set_weights[{i}]", "finite values", "NaN or infinity")
            new.append(w)
        return new

    def count_params(self) -> int:
        """Trainable and non-trainable weights together (as Keras' "Total params")."""
        return int(sum(p.size for p in self.all_weights()))

    def count_non_trainable_params(self) -> int:
        return int(sum(p.size for p in self.non_trainable))
