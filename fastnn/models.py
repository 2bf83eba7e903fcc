"""The Sequential model: building, compile/fit/evaluate/predict, weights and devices."""
from __future__ import annotations

import threading
import time
import weakref
import zlib

import numpy as np

from . import _config, _interrupt, _step_plan, backend, losses, optimizers
from . import callbacks as cbks
from ._inference import plan_for
from ._progress import ProgressBar
from ._validate import NotBuiltError, as_array, check_finite, check_shape, fail, positive_int, real
from .layers.base import Layer

# Serialises lazy builds: threads that call predict on an unbuilt model at once must not each
# build (and randomly initialise) it. Module-level so models stay copyable; builds are rare.
_LAZY_BUILD_LOCK = threading.Lock()
_ALIGN = 16   # parameter views start on 64-byte boundaries in the flat buffer (float32)
METRICS = ("accuracy", "acc", "mae", "mse")
# fit copies a training set up to this size (bytes) to the GPU whole; larger ones go batch by batch.
DEVICE_DATA_MAX = 1 << 30


def _plan_links(layers) -> tuple:
    """The fusions training_plan sets up, as index lists (relu_pool, bn_relu, emb_rnn)."""
    relu_pool = [i for i in range(len(layers) - 1)
                 if getattr(layers[i], "activation", None) == "relu" and hasattr(layers[i], "_relu_premasked")
                 and hasattr(layers[i + 1], "_mask_relu_input")]
    # BatchNormalization -> ReLU: the normalization kernels apply the ReLU (and its mask in
    # backward) in their own passes, and the ReLU layer passes through. The same bits either way.
    bn_relu = [i for i in range(len(layers) - 1)
               if hasattr(layers[i], "_fuse_relu") and type(layers[i + 1]).__name__ == "ReLU"]
    # Embedding -> SimpleRNN/LSTM/GRU: where it pays (recurrent.table_pays), the indices pass
    # through the Embedding and the recurrent layer gathers its input projections from the table
    # E W_x + b_x (the same bits per row) and computes the Embedding's gradient. Not under
    # "mixed_bfloat16": dW_x = E^T dP would round the table gradient's sums of the gate gradients
    # instead of the gate gradients of each step.
    emb_rnn = [i for i in range(len(layers) - 1)
               if hasattr(layers[i], "_fused_into") and hasattr(layers[i + 1], "_embedded")
               and not layers[i + 1].mixed]
    return relu_pool, bn_relu, emb_rnn


class training_plan:
    """The state of the layers during one training step (a context manager): planned (reused)
    buffers, and, for Conv2D(relu) -> MaxPool2D, the ReLU mask left to the pool, which applies it
    to its 4x smaller gradient (by its own output > 0: the ReLU mask at each window's argmax, the
    only inputs it sends gradient to) so the convolution skips its full-size mask. The same bits
    either way. ``part``: this process's part of a data-parallel step (``_Part``), or None.

    Entered once per step: a class (not a generator) and links cached per layer list and
    precision policy, because small models take tens of microseconds a step."""

    _links: dict = {}

    __slots__ = ("layers", "part", "links")

    def __init__(self, layers, part=None):
        self.layers, self.part = layers, part
        # Keyed by identity; the weak references make sure the ids still name these layers.
        key = tuple((id(layer), getattr(layer, "mixed", None)) for layer in layers)
        links = training_plan._links.get(key)
        if links is None or any(ref() is not layer for ref, layer in zip(links[0], layers)):
            if len(training_plan._links) > 64:
                training_plan._links.clear()
            links = training_plan._links[key] = ([weakref.ref(layer) for layer in layers], *_plan_links(layers))
        self.links = links

    def __enter__(self):
        layers, (_, relu_pool, bn_relu, emb_rnn) = self.layers, self.links
        for layer in layers:
            layer._plan = True
            layer._part = self.part
        for i in emb_rnn:
            layers[i]._fused_into, layers[i + 1]._embedded = layers[i + 1], layers[i]
        for i in relu_pool:
            layers[i]._relu_premasked = layers[i + 1]._mask_relu_input = True
        for i in bn_relu:
            layers[i]._fuse_relu = layers[i + 1]._applied_before = True
        return self

    def __exit__(self, *exc):
        layers, (_, relu_pool, bn_relu, emb_rnn) = self.layers, self.links
        for layer in layers:
            layer._plan = False
            layer._part = None
        for i in relu_pool:
            layers[i]._relu_premasked = layers[i + 1]._mask_relu_input = False
        for i in bn_relu:
            layers[i]._fuse_relu = layers[i + 1]._applied_before = False
        for i in emb_rnn:
            layers[i]._fused_into = layers[i + 1]._embedded = None
        return False


class _Part:
    """This process's part of a data-parallel global batch, as layers see it (``Layer._part``):
    its first sample's position in the global batch, the global batch's sample count, and the
    all-reduce of small per-layer sums (BatchNormalization's statistics)."""

    __slots__ = ("offset", "total", "comm")

    def __init__(self, offset: int, total: int, comm):
        self.offset, self.total, self.comm = offset, total, comm

    def allreduce(self, buf) -> None:
        self.comm.allreduce(buf)


class Sequential:
    """A linear stack of layers with a Keras-style training API.

    Parameters
    ----------
    layers : list of Layer, optional
    input_shape : tuple of int, optional
        Input shape without the batch axis; builds the model at once when given.
    dtype : {"float32", "float64", "mixed_bfloat16"}, optional
        Dtype of every parameter, activation and gradient (default: the one set by
        ``fnn.set_default_dtype``, float32 unless changed). Inputs of other dtypes are converted.
        "mixed_bfloat16": everything float32, but the inputs of every Dense and Conv2D GEMM
        (forward and both backward products) are rounded to bfloat16 and multiplied with float32
        accumulation (README, "bfloat16"); ``model.dtype`` is then float32 and
        ``model.dtype_policy`` "mixed_bfloat16".
    name : str, optional

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> model = fnn.Sequential([fnn.layers.Dense(16, activation="relu"),
    ...                         fnn.layers.Dense(3, activation="softmax")], input_shape=(4,))
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    >>> x = np.random.rand(64, 4).astype("float32"); y = np.random.randint(0, 3, 64)
    >>> hist = model.fit(x, y, epochs=2, verbose=0)
    >>> model.predict(x).shape
    (64, 3)
    """

    def __init__(self, layers=None, input_shape=None, dtype=None, name=None):
        self.name = name if name is not None else "sequential"
        if not isinstance(self.name, str):
            fail("Sequential(name=...)", "a str", repr(name), TypeError)
        self.dtype, self.mixed = _config.policy_or_default(dtype)
        self.layers: list = []
        self.built = False
        self.input_shape = None
        self.device = "cpu"
        self.optimizer = None
        self.loss = None
        self.metrics: tuple = ()
        self.stop_training = False
        self.history = None
        # The shuffle order of each epoch: a counter-based stream (seed drawn from fnn.seed's
        # generator at the first fit, epochs shuffled so far), saved with the model so resumed
        # training shuffles as uninterrupted training would.
        self._shuffle_state = None
        self._flat_params = None
        self._flat_grads = None
        self._flat_grads_base = None
        self._grad_views: list = []
        self._grad_bufs: dict = {}
        self._step_plans: dict = {}     # fastnn._step_plan
        for layer in layers or []:
            self.add(layer)
        if input_shape is not None:
            self.build(input_shape)

    def __getstate__(self):
        # Step plans point into this model's buffers (and cannot be copied): a copy (deepcopy,
        # pickle) captures its own.
        return {**self.__dict__, "_step_plans": {}}

    def __setstate__(self, state) -> None:
        # A deep copy's (or unpickled model's) layer weights are arrays of their own, no longer
        # views into the copied flat buffer the optimizer updates: gather them into a new one
        # (keeping the optimizer state). A shallow copy shares the layers and their views.
        self.__dict__.update(state)
        if self.built:
            shares = backend.get(self.device).may_share_memory
            if not all(shares(p, self._flat_params) for layer in self.layers for p in layer.params):
                opt_state = None if self.optimizer is None else self.optimizer.state
                self._flatten_params()
                if opt_state is not None:
                    self.optimizer.state = opt_state

    @property
    def dtype_policy(self) -> str:
        """"float32", "float64" or "mixed_bfloat16" (whose ``dtype`` is float32)."""
        return _config.MIXED_BFLOAT16 if self.mixed else self.dtype.name

    # ---- structure ---------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        """Append a layer (rebuilds the model when it is already built)."""
        if not isinstance(layer, Layer):
            fail(f"{self.name}.add", "a fastnn Layer", type(layer).__name__, TypeError)
        if any(existing is layer for existing in self.layers):
            fail(f"{self.name}.add", "a layer not already in the model", layer.name)
        self.layers.append(layer)
        if self.built:
            self.build(self.input_shape)

    def build(self, input_shape) -> None:
        """Build every layer for inputs of ``input_shape`` (without the batch axis) and gather
        all parameters and gradients into one flat buffer each."""
        if not self.layers:
            fail(f"{self.name}.build", "at least one layer (use add)", "an empty model")
        try:
            shape = tuple(int(d) for d in input_shape)
        except TypeError as err:
            raise TypeError(f"{self.name}.build: expected input_shape as a tuple of ints, "
                            f"got {input_shape!r}") from err
        for i, layer in enumerate(self.layers):
            if i > 0 and getattr(layer, "integer_input", False):
                fail(f"{self.name}: layer {layer.name}", "a layer taking integer indices (Embedding) only as "
                     "the first layer", f"it at position {i}")
            if layer.built and (layer.input_shape != shape or layer.dtype_policy != self.dtype_policy):
                fail(f"{self.name}: layer {layer.name}", f"input shape {layer.input_shape} and dtype "
                     f"{layer.dtype_policy}", f"input shape {shape} and dtype {self.dtype_policy}")
            if not layer.built:
                layer.device = self.device
                layer.build(shape, self.dtype_policy)
            shape = layer.output_shape
        self.input_shape = tuple(int(d) for d in input_shape)
        self._flatten_params()
        self.built = True

    def _flatten_params(self) -> None:
        be = backend.get(self.device)
        total = self._flat_size()
        flat_p = be.zeros((total,), dtype=self.dtype)
        offset = 0
        for layer in self.layers:
            new_p = []
            for p in layer.params:
                vp = flat_p[offset:offset + p.size].reshape(p.shape)
                vp[...] = p
                new_p.append(vp)
                offset += (p.size + _ALIGN - 1) // _ALIGN * _ALIGN
            layer.params = new_p
        self._flat_params = flat_p
        # The gradients, then a tail that a data-parallel step fills with its loss and metric
        # sums, so that one all-reduce of the buffer carries a step's whole communication.
        self._use_grad_buffer(be.zeros((total + _ALIGN,), dtype=self.dtype))
        if self.optimizer is not None:
            self.optimizer.state = {}

    def _flat_size(self) -> int:
        """Elements of the flat parameter buffer (each weight padded to _ALIGN)."""
        return int(sum((p.size + _ALIGN - 1) // _ALIGN * _ALIGN for layer in self.layers for p in layer.params))

    def _use_grad_buffer(self, base) -> None:
        """Put every gradient in ``base`` (``_flat_size() + _ALIGN`` elements: the flat gradients,
        then the tail), as views in the parameters' layout. Data-parallel training swaps in a
        buffer in memory the processes of a machine share."""
        total = self._flat_size()
        flat_g, offset, views = base[:total], 0, []
        for layer in self.layers:
            new_g = []
            for p in layer.params:
                new_g.append(flat_g[offset:offset + p.size].reshape(p.shape))
                offset += (p.size + _ALIGN - 1) // _ALIGN * _ALIGN
            layer.grads = new_g
            views += new_g
        self._flat_grads_base, self._flat_grads, self._grad_views = base, flat_g, views

    def _check_built(self, where: str) -> None:
        if not self.built:
            raise NotBuiltError(f"{self.name}.{where}: the model is not built (call build(input_shape), "
                                f"fit or predict first)")

    @property
    def output_shape(self):
        return self.layers[-1].output_shape if self.built else None

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def summary(self) -> str:
        """A table of layers, output shapes and parameter counts (printed and returned)."""
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer in self.layers:
            shape = "(None, " + ", ".join(map(str, layer.output_shape)) + ")" if layer.built else "?"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape.replace(", )", ")"),
                         f"{layer.count_params():,}" if layer.built else "?"))
        w = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        line = "_" * sum(w)
        out = [f'Model: "{self.name}"', line, "".join(c.ljust(w[i]) for i, c in enumerate(rows[0])), "=" * sum(w)]
        out += ["".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows[1:]]
        frozen = sum(layer.count_non_trainable_params() for layer in self.layers if layer.built)
        out += ["=" * sum(w), f"Total params: {self.count_params():,}"]
        if frozen:      # Keras' two lines, shown when some weights are not trained (BatchNormalization)
            out += [f"Trainable params: {self.count_params() - frozen:,}", f"Non-trainable params: {frozen:,}"]
        out += [f"dtype: {self.dtype_policy}, device: {self.device}", line]
        text = "\n".join(out)
        print(text)
        return text

    # ---- weights -----------------------------------------------------------------------
    def get_weights(self) -> list:
        """Copies of all weights, layer by layer, in each layer's order."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        """Set all weights from a list like the one ``get_weights`` returns."""
        self._check_built("set_weights")
        weights = list(weights)
        expected = sum(len(layer.all_weights()) for layer in self.layers)
        if len(weights) != expected:
            fail(f"{self.name}.set_weights", f"{expected} arrays", f"{len(weights)}")
        per_layer, i = [], 0
        for layer in self.layers:   # check every layer first: a bad array changes nothing
            n = len(layer.all_weights())
            per_layer.append(layer._checked_weights(weights[i:i + n]))
            i += n
        for layer, new in zip(self.layers, per_layer):
            layer.set_weights(new)

    # ---- devices -----------------------------------------------------------------------
    def to(self, device: str) -> Sequential:
        """Move the model, its weights and its optimizer state to "cpu" or "cuda" (returns the
        model). ``fit``, ``evaluate`` and ``predict`` keep taking NumPy arrays and move the
        batches; ``predict`` returns NumPy arrays."""
        new_be = backend.get(device)   # raises for unknown or unavailable devices
        if device == self.device:
            return self
        old_be = backend.get(self.device)
        for layer in self.layers:
            layer.params = [new_be.asarray(old_be.to_numpy(p)) for p in layer.params]
            layer.non_trainable = [new_be.asarray(old_be.to_numpy(p)) for p in layer.non_trainable]
            layer.device = device
            layer._drop_buffers()
        state = dict(self.optimizer.state) if self.optimizer is not None else {}
        self.device = device
        self._grad_bufs, self._step_plans = {}, {}
        if self.built:
            self._flatten_params()       # new gradient buffers on the device, views per layer
        else:
            for layer in self.layers:
                layer.grads = [new_be.zeros(p.shape, dtype=p.dtype) for p in layer.params]
        if self.optimizer is not None:
            self.optimizer.state = {k: new_be.asarray(old_be.to_numpy(v)) for k, v in state.items()}
        return self

    # ---- training ----------------------------------------------------------------------
    def compile(self, optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=("accuracy",)) -> None:
        """Set the optimizer, loss and metrics ("accuracy", "mae", "mse")."""
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        self._step_plans = {}
        if metrics is None:
            metrics = ()
        if isinstance(metrics, str):
            metrics = (metrics,)
        for m in metrics:
            if m not in METRICS:
                fail("compile(metrics=...)", f"names in {METRICS}", repr(m))
        self.metrics = tuple(metrics)

    def _check_compiled(self, where: str) -> None:
        if self.loss is None:
            raise RuntimeError(f"{self.name}.{where}: compile the model before {where}")

    def _fused(self) -> bool:
        """Train on logits when the last activation is the one the loss fuses with."""
        return self.loss.from_logits or (
            self.loss.activation is not None and self.layers[-1].output_activation == self.loss.activation)

    def _integer_input(self):
        """The first layer when it takes integer inputs (Embedding), else None."""
        first = self.layers[0] if self.layers else None
        return first if getattr(first, "integer_input", False) else None

    def _prepare_x(self, x, where: str, finite: bool):
        first = self._integer_input()
        if first is not None:
            # indices stay integer (int64), checked against the layer's range here, before any kernel
            x = first.check_indices(x, f"{self.name}.{where} x")
            if x.ndim < 1:
                fail(f"{self.name}.{where} x", "a batch (N, ...) of indices", f"shape {x.shape}")
        else:
            x = as_array(x, f"{self.name}.{where} x", dtype=self.dtype)
        if x.ndim < 2 and first is None:
            fail(f"{self.name}.{where} x", "a batch (N, ...) with at least 2 dimensions", f"shape {x.shape}")
        if x.shape[0] == 0:
            fail(f"{self.name}.{where} x", "at least one sample", f"shape {x.shape}")
        if not self.built:
            with _LAZY_BUILD_LOCK:
                if not self.built:
                    self.build(x.shape[1:])
        check_shape(x, self.input_shape, f"{self.name}.{where} x (model input)")
        if finite:
            check_finite(x, f"{self.name}.{where} x")
        return x

    def _prepare_xy(self, x, y, where: str, comm=None):
        """Checked (x, y); with comm (a data-parallel fit, the same data on every process) each
        process looks for NaN and infinity in its share of the samples only, and all raise if
        any found one."""
        x = self._prepare_x(x, where, finite=comm is None)
        if comm is not None and comm.size > 1:
            n = x.shape[0]
            share = x[n * comm.rank // comm.size:n * (comm.rank + 1) // comm.size]
            if comm.any(x.dtype.kind == "f" and not np.isfinite(share).all()):
                check_finite(x, f"{self.name}.{where} x")
                fail(f"{self.name}.{where} x", "finite values", "NaN or infinite values (on another process)")
        elif comm is not None:
            check_finite(x, f"{self.name}.{where} x")
        y = self.loss.check_targets(y, self.output_shape, self.dtype, f"{self.name}.{where} y")
        if y.shape[0] != x.shape[0]:
            fail(f"{self.name}.{where}", "as many targets as samples", f"x {x.shape} and y {y.shape}")
        return x, y

    def _forward(self, x, training: bool, logits: bool):
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer._forward(x, training, logits and i == last)
        return x

    def _forward_backward(self, x, y, w, part, fused: bool):
        """The forward pass, loss and backward pass of a training step (inside training_plan):
        fills the gradients; returns (loss, model output)."""
        be = backend.get(self.device)
        layers = self.layers
        first = next((i for i, layer in enumerate(layers) if layer.params), len(layers))
        out = self._forward(x, True, fused)
        grad = self._grad_bufs.get(out.shape)
        if grad is None:
            grad = self._grad_bufs[out.shape] = be.empty(out.shape, dtype=self.dtype)
        loss = self.loss.compute(be, out, y, grad, logits=fused, w=w,
                                 **({} if part is None else {"total": part.total}))
        d = grad
        for i in range(len(layers) - 1, first - 1, -1):
            d = layers[i]._backward(d, i > first)
        return loss, out

    def _train_step(self, x, y, w=None, part=None, planned=False):
        """Forward, fused loss, backward and one optimizer update on a checked batch (w: per-sample
        loss weights or None). ``part``: this process's part of a data-parallel global batch
        (``_Part``), or None; then the returned loss and metric sums are the global batch's.
        ``planned``: the forward, loss and backward replay a step plan (fastnn._step_plan) where
        the model has one (x, y and w then are buffers fit reuses)."""
        be = backend.get(self.device)
        fused = self._fused()
        layers = self.layers
        out = metric_sums = None
        plan = _step_plan.get(self, x, y, w, part, fused) if planned and x.shape[0] else None
        if plan is not None:
            loss, out = plan.run(x, y, w, part)
        else:
            with training_plan(layers, part):
                if part is not None and x.shape[0] == 0:
                    # An empty part (a short last global batch) still joins every collective.
                    first = next((i for i, layer in enumerate(layers) if layer.params), len(layers))
                    for layer in layers:
                        if hasattr(layer, "_skip"):
                            layer._skip()
                    for i in range(len(layers) - 1, first - 1, -1):
                        if hasattr(layers[i], "_skip_backward"):
                            layers[i]._skip_backward(i > first)
                    self._flat_grads[...] = 0
                    loss, metric_sums = 0.0, dict.fromkeys(self.metrics, 0.0)
                else:
                    loss, out = self._forward_backward(x, y, w, part, fused)
        if part is not None:
            if metric_sums is None:
                metric_sums = self._metric_sums(out, y, fused)
            sums = part.comm.allreduce_gradients(self._flat_grads_base, self._flat_grads.size,
                                                 [loss, *metric_sums.values()])
            loss, metric_sums = float(sums[0]), dict(zip(self.metrics, (float(v) for v in sums[1:])))
        for layer in layers:       # weight penalties: gradient and value in one kernel pass
            for j, reg in layer.regularized:
                loss = loss + be.penalty(layer.params[j], layer.grads[j], reg.l1, reg.l2)
        self.optimizer.step(be, self._flat_params, self._flat_grads, self._grad_views, planned)
        return loss, out, fused, metric_sums

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None) -> float:
        """One optimizer step on the batch (x, y); returns the batch loss before the step
        (weighted as in ``fit``)."""
        self._check_compiled("train_on_batch")
        x, y = self._prepare_xy(x, y, "train_on_batch")
        w = self._sample_weights(y, sample_weight, class_weight, "train_on_batch")
        be = backend.get(self.device)
        loss, _, _, _ = self._train_step(be.asarray(x), be.asarray(y), None if w is None else be.asarray(w))
        return float(loss)

    def _sample_weights(self, y, sample_weight, class_weight, where: str):
        """Per-sample loss weights (N,) of the model dtype from sample_weight (N,) and class_weight
        {class: weight} (multiplied, as Keras), or None when neither is given."""
        n = y.shape[0]
        w = None
        if sample_weight is not None:
            w = as_array(sample_weight, f"{self.name}.{where}(sample_weight=...)", dtype=np.float64)
            if w.ndim == 2 and w.shape[1] == 1:
                w = w[:, 0]
            if w.shape != (n,):
                fail(f"{self.name}.{where}(sample_weight=...)", f"shape ({n},), one weight per sample",
                     f"shape {w.shape}")
            if not np.isfinite(w).all() or (w < 0).any():
                fail(f"{self.name}.{where}(sample_weight=...)", "finite weights >= 0",
                     "negative, NaN or infinite values")
        if class_weight is not None:
            where_cw = f"{self.name}.{where}(class_weight=...)"
            if not isinstance(class_weight, dict):
                fail(where_cw, "a dict {class index: weight}", type(class_weight).__name__, TypeError)
            classes, k = self.loss.class_indices(y, self.output_shape, where_cw)
            table = np.ones(k)
            for cls, cw in class_weight.items():
                if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or not 0 <= cls < k:
                    fail(where_cw, f"class indices in [0, {k}) for {self.loss.name} with {k} classes", repr(cls))
                table[int(cls)] = real(cw, f"{where_cw}[{cls}]", lo=0.0)
            w = table[classes] if w is None else w * table[classes]
        return None if w is None else np.ascontiguousarray(w, dtype=self.dtype)

    def _metric_sums(self, out, y, logits: bool) -> dict:
        """Per-batch sums of each metric (divided by the sample count at the end), as 0-d arrays
        on the model's device."""
        # Array methods only, so the sums stay on the model's device (read back once per epoch).
        sums = {}
        for m in self.metrics:
            if m in ("accuracy", "acc"):
                sums[m] = self._correct(out, y, logits)
            else:
                d = out.reshape(out.shape[0], -1) - y.astype(out.dtype).reshape(out.shape[0], -1)
                per = abs(d) if m == "mae" else d * d
                sums[m] = per.mean(axis=1).sum()
        return sums

    def _correct(self, out, y, logits: bool):
        loss = self.loss
        if isinstance(loss, losses.SparseCategoricalCrossentropy):
            return (out.argmax(axis=1) == y).sum()
        if isinstance(loss, losses.CategoricalCrossentropy):
            return (out.argmax(axis=1) == y.argmax(axis=1)).sum()
        if out.ndim == 2 and out.shape[1] > 1 and not isinstance(loss, losses.BinaryCrossentropy):
            return (out.argmax(axis=1) == y.argmax(axis=1)).sum()
        threshold = 0.0 if (logits or loss.from_logits) and isinstance(loss, losses.BinaryCrossentropy) else 0.5
        hit = (out > threshold) == (y > 0.5)
        return hit.reshape(out.shape[0], -1).mean(axis=1).sum()

    def fit(self, x, y, batch_size=32, epochs=1, validation_data=None, validation_split=0.0, shuffle=True,
            verbose=1, callbacks=None, class_weight=None, sample_weight=None, distributed=False) -> cbks.History:
        """Train for ``epochs`` passes over (x, y); returns the History.

        Each epoch reshuffles the samples (``shuffle=True``) in an order drawn from the model's own
        counter-based stream (seeded from ``fnn.seed`` at the first fit and saved with the model).
        ``validation_split`` holds out the last fraction of the samples (before shuffling), with
        their sample weights; ``validation_data`` is ``(x_val, y_val)`` or ``(x_val, y_val,
        sample_weight_val)``, evaluated after every epoch. ``class_weight`` ({class index:
        weight}) and ``sample_weight`` ((N,)) weight each sample's loss (multiplied when both are
        given): the loss is the mean over the batch of weight x loss (Keras 3), computed in the
        fused loss kernels; metrics stay unweighted. Ctrl-C stops at the next batch boundary
        with a KeyboardInterrupt, leaving a model that ``fit`` can continue.

        ``distributed=True`` trains data-parallel over the processes of an MPI job (launched with
        ``mpiexec``; needs ``pip install "fastnn[mpi]"``), every process calling fit with the same
        arrays: ``batch_size`` is per process, step k's global batch is the k-th block of
        ``batch_size * size`` samples of the epoch's order (the same order everywhere) and
        process r computes on its r-th share of it; the gradients are added over the processes
        (one all-reduce of the flat gradient buffer) and divided by the global batch's sample
        count, so the weights follow one process training at ``batch_size * size``. Losses and
        metrics cover all processes' samples, the progress bar and the file-writing callbacks
        (ModelCheckpoint, CSVLogger) run on rank 0 only, and an exception on any process aborts
        the job. In a single process it is a plain fit. See ``fastnn.distributed``.
        """
        self._check_compiled("fit")
        if not isinstance(distributed, bool):
            fail(f"{self.name}.fit(distributed=...)", "a bool", repr(distributed), TypeError)
        comm = None
        if distributed:
            from . import distributed as _distributed
            comm = _distributed.world()
        batch_size = positive_int(batch_size, f"{self.name}.fit(batch_size=...)")
        epochs = positive_int(epochs, f"{self.name}.fit(epochs=...)", minimum=0)
        split = real(validation_split, f"{self.name}.fit(validation_split=...)", lo=0.0, hi=1.0, hi_open=True)
        if verbose not in (0, 1, 2, True, False):
            fail(f"{self.name}.fit(verbose=...)", "0, 1 or 2", repr(verbose))
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, cbks.Callback):
                fail(f"{self.name}.fit(callbacks=...)", "Callback instances", type(cb).__name__, TypeError)
        x, y = self._prepare_xy(x, y, "fit", comm)
        w = self._sample_weights(y, sample_weight, class_weight, "fit")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                fail(f"{self.name}.fit(validation_data=...)", "a pair (x_val, y_val) or (x_val, y_val, sample_weight)",
                     type(validation_data).__name__)
            xv, yv = self._prepare_xy(validation_data[0], validation_data[1], "fit validation_data")
            val = (xv, yv, self._sample_weights(yv, validation_data[2] if len(validation_data) == 3 else None, None,
                                                "fit validation_data"))
        elif split > 0:
            n_val = int(round(x.shape[0] * split))
            if n_val < 1 or n_val >= x.shape[0]:
                fail(f"{self.name}.fit(validation_split={split})", "a split leaving samples on both sides",
                     f"{n_val} of {x.shape[0]} samples for validation")
            # Validation keeps its sample weights; class weights are a training device only (Keras).
            wv = None if sample_weight is None else self._sample_weights(y, sample_weight, None, "fit")[-n_val:]
            x, val = x[:-n_val], (x[-n_val:], y[-n_val:], wv)
            y, w = y[:-n_val], None if w is None else w[:-n_val]

        # Any callback may stop training on something of its own process: with callbacks, every
        # step asks all processes (rank 0 may have more callbacks than the others: decide first).
        sync_stop = bool(callbacks)
        if comm is not None:
            self._distributed_start(comm, x, y, w, val, batch_size, epochs, shuffle, split)
            if comm.rank != 0:
                verbose = 0
                callbacks = [cb for cb in callbacks if not getattr(cb, "writes_files", False)]
        history = cbks.History()
        steps = -(-x.shape[0] // (batch_size * (comm.size if comm is not None else 1)))
        params = {"epochs": epochs, "steps": steps, "samples": x.shape[0], "batch_size": batch_size,
                  "verbose": verbose, "do_validation": val is not None,
                  "metrics": ["loss", *self.metrics] + ([f"val_{k}" for k in ("loss", *self.metrics)] if val else [])}
        for cb in [history] + callbacks:
            cb.set_model(self)
            cb.set_params(params)
        self.history = history
        self.stop_training = False
        with _interrupt.deferred() as interrupt:
            if comm is None:
                self._fit_epochs(x, y, w, val, batch_size, epochs, shuffle, verbose, history, callbacks, interrupt)
                return history
            try:
                with comm.shared_gradients(self):
                    self._fit_epochs(x, y, w, val, batch_size, epochs, shuffle, verbose, history, callbacks,
                                     interrupt, comm, sync_stop)
            except BaseException as exc:    # the others would wait in a collective forever
                from . import distributed as _distributed
                _distributed.fail(comm, exc)
        comm.check_replicas(self)
        return history

    def _distributed_start(self, comm, x, y, w, val, batch_size, epochs, shuffle, split) -> None:
        """Check that every process passed the same arguments and data shapes (a ValueError on
        every process otherwise), then give every process rank 0's model state."""
        def ends(a):        # a cheap fingerprint of the data: the first and last samples
            a = np.ascontiguousarray(a[[0, -1]]) if a.shape[0] else a
            return zlib.crc32(a.view(np.uint8).reshape(-1))
        comm.same((x.shape, str(x.dtype), y.shape, batch_size, epochs, bool(shuffle), split, w is None,
                   None if val is None else (val[0].shape, val[2] is None)), "arguments and data shapes")
        comm.same((ends(x), ends(y)), "training data (first and last samples differ)")
        comm.broadcast_model(self)

    def _epoch_order(self, n: int):
        """The next epoch's shuffle order (and one step of the model's shuffle stream)."""
        if self._shuffle_state is None:
            self._shuffle_state = [int(_config.rng().integers(0, 2**63 - 1)), 0]
        seed, epoch = self._shuffle_state
        self._shuffle_state[1] = epoch + 1
        return np.random.default_rng([seed, epoch]).permutation(n)

    def _fit_epochs(self, x, y, w, val, batch_size, epochs, shuffle, verbose, history, callbacks, interrupt,
                    comm=None, sync_stop=False):
        """fit's loop over checked data. ``interrupt.check()`` raises a deferred Ctrl-C only
        between complete steps, so an interrupted model is always one a later fit can continue.
        ``comm``: the communicator of a data-parallel fit (fastnn.distributed), or None;
        ``sync_stop``: whether every step agrees on ``stop_training`` over the processes."""
        all_cbs = [history] + callbacks
        n = x.shape[0]
        be = backend.get(self.device)
        planned = be.name == "cpu" and _step_plan.enabled()
        ranks, rank = (comm.size, comm.rank) if comm is not None else (1, 0)
        global_batch = batch_size * ranks
        # On a GPU the training set goes to the device once per fit and batches are gathered
        # there, unless it is large: then batches are gathered on the host and copied one by one.
        on_device = be.name != "cpu" and x.nbytes + y.nbytes <= DEVICE_DATA_MAX
        if on_device:
            x, y = be.asarray(x), be.asarray(y)
            w = None if w is None else be.asarray(w)
        else:
            xb_full = np.empty((min(batch_size, n),) + x.shape[1:], dtype=x.dtype)
            yb_full = np.empty((min(batch_size, n),) + y.shape[1:], dtype=y.dtype)
            wb_full = None if w is None else np.empty(min(batch_size, n), dtype=w.dtype)
            # Float samples: gathered by the C row copy on the model's threads (np.take is one
            # thread, and with out= and mode='raise' copies through a temporary).
            fast_take = x.dtype in (np.float32, np.float64) and x.flags.c_contiguous and x.ndim >= 2
        for cb in all_cbs:
            cb.on_train_begin()
        for epoch in range(epochs):
            for cb in all_cbs:
                cb.on_epoch_begin(epoch)
            order = self._epoch_order(n) if shuffle else None
            bar = ProgressBar(n, epoch, epochs) if verbose == 1 else None
            loss_sum, sums, seen = 0.0, dict.fromkeys(self.metrics, 0.0), 0
            t0 = time.perf_counter()
            xe, ye, we = x, y, w
            if order is not None and on_device:
                # One gather of the whole epoch on the device; batches are then plain slices
                # (two launches an epoch instead of two a step).
                order_d = be.asarray(order)
                xe, ye, order = x.take(order_d, axis=0), y.take(order_d, axis=0), None
                we = None if w is None else w.take(order_d)
            for batch, block in enumerate(range(0, n, global_batch)):
                size = min(global_batch, n - block)
                # this process's share of the global batch: [start, stop), the whole of it alone
                start, stop = block + size * rank // ranks, block + size * (rank + 1) // ranks
                if order is None:
                    xb, yb = xe[start:stop], ye[start:stop]
                    wb = None if we is None else we[start:stop]
                else:
                    idx = order[start:stop]
                    if fast_take:
                        xb = backend.cpu.take_rows(x, idx, xb_full[:stop - start])
                    else:
                        xb = np.take(x, idx, axis=0, out=xb_full[:stop - start])
                    yb = np.take(y, idx, axis=0, out=yb_full[:stop - start])
                    wb = None if w is None else np.take(w, idx, out=wb_full[:stop - start])
                xb, yb = be.asarray(xb), be.asarray(yb)      # no copy when they are there already
                wb = None if wb is None else be.asarray(wb)
                for cb in callbacks:
                    cb.on_train_batch_begin(batch, {"size": size})
                part = None if comm is None else _Part(start - block, size, comm)
                loss, out, fused, step_sums = self._train_step(xb, yb, wb, part, planned)
                loss_sum += loss * size
                seen += size
                if step_sums is None:
                    step_sums = self._metric_sums(out, yb, fused)
                for k, v in step_sums.items():
                    sums[k] += v
                for cb in callbacks:
                    cb.on_train_batch_end(batch, {"loss": loss, "size": size})
                if bar is not None:
                    bar.update(seen, lambda s=seen, ls=loss_sum, ms=dict(sums): {
                        "loss": float(ls) / s, **{k: float(v) / s for k, v in ms.items()}})
                interrupt.check()
                if sync_stop and comm is not None:
                    self.stop_training = comm.any(self.stop_training)
                if self.stop_training:     # a callback (TerminateOnNaN) stops within the epoch
                    break
            # The losses and metric sums may be device scalars: read back here, once per epoch.
            logs = {"loss": float(loss_sum) / seen, **{k: float(v) / seen for k, v in sums.items()}}
            train_seconds = time.perf_counter() - t0
            if val is not None:
                vlogs = self._evaluate_checked(val[0], val[1], 256, val[2], comm)
                logs.update({f"val_{k}": v for k, v in vlogs.items()})
            if bar is not None:
                bar.finish(logs, train_seconds)
            elif verbose == 2:
                from ._progress import format_logs
                print(f"Epoch {epoch + 1}/{epochs} - {train_seconds:.2f}s - {format_logs(logs)} - "
                      f"{seen / max(train_seconds, 1e-9):,.0f} samples/s")
            for cb in all_cbs:
                cb.on_epoch_end(epoch, logs)
            interrupt.check()
            if comm is not None:
                self.stop_training = comm.any(self.stop_training)
            if self.stop_training:
                break
        for cb in all_cbs:
            cb.on_train_end()

    # ---- inference ---------------------------------------------------------------------
    def _evaluate_checked(self, x, y, batch_size: int, w=None, comm=None) -> dict:
        """Mean loss and metrics; with ``comm`` (a data-parallel fit's validation) each process
        evaluates its share of the samples and the sums are added over the processes."""
        fused = self._fused()
        be = backend.get(self.device)
        loss_sum, sums, n = 0.0, dict.fromkeys(self.metrics, 0.0), x.shape[0]
        lo, hi = (0, n) if comm is None else (n * comm.rank // comm.size, n * (comm.rank + 1) // comm.size)
        for start in range(lo, hi, batch_size):
            stop = min(start + batch_size, hi)
            xb, yb = be.asarray(x[start:stop]), be.asarray(y[start:stop])
            wb = None if w is None else be.asarray(w[start:stop])
            out = self._forward(xb, False, fused)
            loss_sum += self.loss.compute(be, out, yb, None, logits=fused, w=wb) * xb.shape[0]
            for k, v in self._metric_sums(out, yb, fused).items():
                sums[k] += v
        if comm is not None:
            loss_sum, *rest = comm.sum([float(loss_sum), *(float(v) for v in sums.values())])
            sums = dict(zip(self.metrics, rest))
        return {"loss": float(loss_sum) / n, **{k: float(v) / n for k, v in sums.items()}}

    def evaluate(self, x, y, batch_size=256, verbose=0, sample_weight=None) -> dict:
        """Mean loss and metrics over (x, y), e.g. ``{"loss": 0.12, "accuracy": 0.97}``; with
        ``sample_weight`` the loss is the mean of weight x loss (metrics stay unweighted)."""
        self._check_compiled("evaluate")
        batch_size = positive_int(batch_size, f"{self.name}.evaluate(batch_size=...)")
        x, y = self._prepare_xy(x, y, "evaluate")
        w = self._sample_weights(y, sample_weight, None, "evaluate")
        logs = self._evaluate_checked(x, y, batch_size, w)
        if verbose:
            from ._progress import format_logs
            print(format_logs(logs))
        return logs

    def predict(self, x, batch_size=256) -> np.ndarray:
        """Model outputs for x (probabilities after a final Sigmoid/Softmax).

        Safe to call from many threads at once: inference allocates its own buffers and
        does not touch the training state (but do not call it on a model that another thread is
        training at the same time: training steps reuse the layers' buffers).

        Small batches (activations under ``fastnn._inference.PLAN_MAX_BYTES``) on the CPU run
        through an inference plan: the forward pass captured once per thread, input shape and
        thread count as a list of kernel calls, then replayed in one C loop (the same results,
        without the Python cost of each layer and kernel call).
        """
        # The common inference call (an array already of the model's dtype, layout and input
        # shape) passes every check below: go straight to its plan.
        if (type(x) is np.ndarray and self.built and x.dtype == self.dtype and type(batch_size) is int
                and self._integer_input() is None
                and x.shape[1:] == self.input_shape and 0 < x.shape[0] <= batch_size and x.flags.c_contiguous):
            plan = plan_for(self, x)
            if plan is not None:
                return plan.run(x)
        batch_size = positive_int(batch_size, f"{self.name}.predict(batch_size=...)")
        x = self._prepare_x(x, "predict", finite=False)
        n = x.shape[0]
        be = backend.get(self.device)
        if n <= batch_size:
            plan = plan_for(self, x)
            if plan is not None:
                return plan.run(x)
            out = be.to_numpy(self._forward(be.asarray(x), False, False))
            # Shape-only models (Flatten, Dropout at inference) would return a view of x.
            return out.copy() if np.may_share_memory(out, x) else out
        out = None
        for start in range(0, n, batch_size):
            yb = be.to_numpy(self._forward(be.asarray(x[start:start + batch_size]), False, False))
            if out is None:
                out = np.empty((n,) + yb.shape[1:], dtype=yb.dtype)
            out[start:start + yb.shape[0]] = yb
        return out

    # ---- files -------------------------------------------------------------------------
    def save(self, path) -> None:
        """Save architecture, weights and optimizer state to one file (see ``fnn.load_model``)."""
        from .io import save_model
        save_model(self, path)

    def export(self, path, format="onnx") -> None:
        """Write the built model for other runtimes: ``format="onnx"`` (needs ``pip install
        "fastnn[onnx]"``) gives an ONNX graph (opset 17) with one input ``"input"`` of shape
        ``(batch, *input_shape)``, the batch axis dynamic; see ``fastnn.onnx``."""
        if format != "onnx":
            raise ValueError(f"{self.name}.export: expected format 'onnx', got {format!r}")
        from .onnx import export_onnx
        export_onnx(self, path)
