"""Embedding: integer indices -> rows of a trainable table (Keras' ``Embedding``)."""
from __future__ import annotations

import numpy as np

from .. import initializers
from .._validate import as_array, check_shape, fail, positive_int
from .base import Layer
from .recurrent import table_pays

#: the dtype integer inputs reach the kernels in (and the model keeps them in)
INDEX_DTYPE = np.dtype(np.int64)


def check_indices(x, input_dim: int, where: str) -> np.ndarray:
    """x as a C-contiguous int64 array of indices in [0, input_dim), or a ValueError/TypeError
    naming what is wrong. Integer arrays of any width are accepted, and float arrays whose every
    value is a whole number (converted); bool, complex, strings and objects are a TypeError;
    NaN, infinities, fractions and indices out of range a ValueError."""
    arr = as_array(x, where)        # numbers on the CPU (TypeError otherwise), dtype kept
    if arr.dtype.kind not in "iuf":
        fail(where, "integer indices (an integer array, or floats holding whole numbers)", f"dtype {arr.dtype}",
             TypeError)
    kind = arr.dtype.kind
    if arr.size:
        if kind == "f":
            finite = np.isfinite(arr)
            if not finite.all():
                fail(where, "integer indices", f"{int(arr.size - np.count_nonzero(finite))} NaN or infinite value(s)")
            frac = arr != np.floor(arr)
            if frac.any():
                fail(where, "integer indices (floats must hold whole numbers)",
                     f"non-integer value {arr[frac].flat[0]!r}")
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= input_dim:
            bad = lo if lo < 0 else hi
            fail(where, f"indices in [0, {input_dim}) (input_dim)",
                 f"index {int(bad) if kind != 'f' else float(bad)!r} (values in [{lo}, {hi}])")
    return np.asarray(arr, dtype=INDEX_DTYPE, order="C")


class Embedding(Layer):
    """Turns integer indices into dense vectors: ``y[..., :] = embeddings[x[...], :]``.

    Input: integer indices of any shape ``(N, ...)`` with values in ``[0, input_dim)``, e.g.
    ``(N, T)`` token sequences -> output ``(N, T, output_dim)``, or ``(N,)`` -> ``(N,
    output_dim)`` (as Keras: one more axis of ``output_dim`` after the input's). Integer arrays of
    any width are accepted, and floats holding whole numbers (converted); anything else, and an
    index out of range, raises before any kernel runs. In a ``Sequential`` model whose first layer
    is an Embedding the inputs stay integer through ``fit``, ``evaluate`` and ``predict``.

    The layer has no input gradient (its input is discrete): ``backward`` stores the gradient of
    the table and returns None. Repeated indices sum their gradients in index order, so training
    is bit-identical for any thread count.

    Parameters
    ----------
    input_dim : int
        Size of the vocabulary (rows of the table); indices are in ``[0, input_dim)``.
    output_dim : int
        Size of each vector.
    embeddings_initializer : str, default "uniform"
        Keras' default: uniform in [-0.05, 0.05]; any name of ``fnn.initializers``.

    Weights: ``embeddings (input_dim, output_dim)``, as ``torch.nn.Embedding.weight``.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> model = fnn.Sequential([fnn.layers.Embedding(1000, 16), fnn.layers.LSTM(32),
    ...                         fnn.layers.Dense(2, activation="softmax")])
    >>> model.predict(np.array([[3, 14, 15, 92]])).shape
    (1, 2)
    """

    capturable = True
    train_capturable = True
    #: the model keeps its inputs integer (int64) for this layer instead of converting them
    integer_input = True

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer: str = "uniform", name=None):
        super().__init__(name)
        self.input_dim = positive_int(input_dim, f"Embedding(input_dim=...) in {self.name}")
        self.output_dim = positive_int(output_dim, f"Embedding(output_dim=...) in {self.name}")
        self.embeddings_initializer = initializers.check_name(
            embeddings_initializer, f"Embedding(embeddings_initializer=...) in {self.name}")

    def get_config(self):
        return {"input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": self.embeddings_initializer, "name": self.name}

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def param_specs(self, input_shape):
        return [((self.input_dim, self.output_dim), self.embeddings_initializer)]

    def weight_names(self):
        return ["embeddings"]

    def check_indices(self, x, where: str) -> np.ndarray:
        """x as checked int64 indices for this layer (see the module function)."""
        return check_indices(x, self.input_dim, where)

    def forward(self, x, training: bool = True):
        """Gather the vectors of the indices x ``(N, ...)``; builds the layer on first use."""
        x = self.check_indices(x, f"{self.name} input")
        if x.ndim < 1:
            fail(f"{self.name} input", "a batch of indices (N, ...)", f"shape {x.shape}")
        if not self.built:
            self.build(x.shape[1:])
        check_shape(x, self.input_shape, f"{self.name} input")
        return self._forward(self.backend.asarray(x), bool(training), False)

    #: the recurrent layer after this one during training steps (set by Sequential's training
    #: plan): where its table pays, the indices pass through and it computes this table's gradient
    _fused_into = None

    def _forward(self, x, training, logits):
        rnn = self._fused_into
        if rnn is not None and x.ndim == 2 and table_pays(self.input_dim, self.output_dim, x.shape[0], x.shape[1]):
            if training:
                self._remember(x, x, table=True)
            return x
        y = self._buf("y", tuple(x.shape) + (self.output_dim,))
        self.backend.embedding_fwd(x, self.params[0], y)
        if training:
            self._remember(x, y)
        return y

    def _backward(self, dy, need_dx):
        x, _, extra = self._cache
        if not extra.get("table"):      # else the recurrent layer after it wrote the gradient
            self.backend.embedding_bwd(x, dy, self.grads[0])
        return None
