"""Recurrent layers: SimpleRNN, LSTM and GRU (batch-first sequences, PyTorch's equations)."""
from __future__ import annotations

import numpy as np

from .. import regularizers
from .._validate import fail, positive_int
from .base import Layer


def table_pays(vocab: int, dim: int, n: int, t: int) -> bool:
    """Whether an Embedding(vocab, dim) -> recurrent pair trains faster through the table
    E W_x + b_x than through the n*t embedded rows: its three input-side products (table,
    dW_x = E^T dP, dE = dP W_x^T) run over vocab rows instead of n*t, and its row gathers and
    scatters (kH values per step, weighted as four multiply-adds each) replace the products'
    over n*t. Depends on the shapes only, never on the thread count."""
    return 3 * vocab * dim + 8 * n * t < 3 * n * t * dim


class _Recurrent(Layer):
    """Shared body of the recurrent layers; subclasses set ``cell`` and ``gates``.

    The whole time loop runs in C: one call for the forward (one GEMM for the input
    projections of all steps, then per step one recurrent GEMM and one fused gate kernel) and one
    for backpropagation through time. The forward keeps what backward needs in a workspace
    buffer planned like the layer's other buffers.

    Under "mixed_bfloat16" every product takes bf16-rounded inputs with float32 sums (x W_x and
    h_{t-1} W_h forward; dG W_x^T, dG W_h^T and the weight gradients backward, dG the gate
    pre-activation gradients); the gate math, the states and the bias gradients stay float32.
    The Embedding table path is not planned then (see models.training_plan): its table
    gradient sums dG rows before the product dW_x = E^T dP, which would round other values.
    """

    capturable = True
    train_capturable = True

    cell = ""
    gates = 1
    #: the Embedding in front during training steps (set by Sequential's training plan): the
    #: input projections then come from its table when table_pays (see _forward_table)
    _embedded = None

    def __init__(self, units: int, return_sequences: bool = False, kernel_regularizer=None,
                 recurrent_regularizer=None, name=None):
        super().__init__(name)
        cls = type(self).__name__
        self.units = positive_int(units, f"{cls}(units=...) in {self.name}")
        if not isinstance(return_sequences, (bool, np.bool_)):
            fail(f"{cls}(return_sequences=...) in {self.name}", "a bool", repr(return_sequences), TypeError)
        self.return_sequences = bool(return_sequences)
        # kernel_regularizer on W_x, recurrent_regularizer on W_h (API.md)
        self.kernel_regularizer = regularizers.get(kernel_regularizer, f"{cls}(kernel_regularizer=...) in {self.name}")
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer,
                                                      f"{cls}(recurrent_regularizer=...) in {self.name}")
        self.regularized = tuple((i, r) for i, r in ((0, self.kernel_regularizer), (1, self.recurrent_regularizer))
                                 if r is not None)

    def get_config(self):
        return {"units": self.units, "return_sequences": self.return_sequences,
                "kernel_regularizer": regularizers.config(self.kernel_regularizer),
                "recurrent_regularizer": regularizers.config(self.recurrent_regularizer), "name": self.name}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            fail(self.name, "input of shape (N, T, features) (batch first; stacked recurrent layers need "
                 "return_sequences=True below them)", f"input_shape (N, {', '.join(map(str, input_shape))})")
        steps = int(input_shape[0])
        return (steps, self.units) if self.return_sequences else (self.units,)

    def param_specs(self, input_shape):
        self.compute_output_shape(input_shape)      # rank check before indexing
        k = self.gates * self.units
        return [((int(input_shape[1]), k), "glorot_uniform"), ((self.units, k), "orthogonal"),
                ((k,), "zeros"), ((k,), "zeros")]

    def weight_names(self):
        return ["W_x", "W_h", "b_x", "b_h"]

    def _forward(self, x, training, logits):
        emb = self._embedded
        if emb is not None and table_pays(emb.input_dim, emb.output_dim, x.shape[0], x.shape[1]):
            return self._forward_table(emb, x, training)
        be = self.backend
        n, t, f = x.shape
        fwd_size, _ = be.recurrent_workspace(self.cell, n, t, f, self.units)
        ws = self._buf("ws", (fwd_size,))
        y = self._buf("y", (n,) + tuple(self.output_shape))
        wx, wh, bx, bh = self.params
        be.recurrent_fwd(self.cell, x, wx, wh, bx, bh, y, ws, self.return_sequences, bf16=self.mixed)
        if training:
            self._remember(x, y, ws=ws)
        return y

    def _forward_table(self, emb, idx, training):
        """The forward on the indices idx (n, t) of the Embedding emb in front (which passed them
        through): the input projections are rows of P = E W_x + b_x, one product over the
        vocabulary instead of one over every step (the same bits per row)."""
        be = self.backend
        n, t = idx.shape
        wx, wh, bx, bh = self.params
        table = self._buf("table", (emb.input_dim, wx.shape[1]))
        be.linear_fwd(emb.params[0], wx, bx, table)
        fwd_size, _ = be.recurrent_workspace(self.cell, n, t, 0, self.units)
        ws = self._buf("ws", (fwd_size,))
        y = self._buf("y", (n,) + tuple(self.output_shape))
        be.recurrent_table_fwd(self.cell, idx, table, wh, bh, y, ws, self.return_sequences)
        if training:
            self._remember(idx, y, ws=ws, emb=emb)
        return y

    def _backward(self, dy, need_dx):
        be = self.backend
        x, _, extra = self._cache
        emb = extra.get("emb")
        if emb is not None:
            # dP = the table's gradient; then dW_x = E^T dP and the Embedding's dE = dP W_x^T
            n, t = x.shape
            _, bwd_size = be.recurrent_workspace(self.cell, n, t, 0, self.units)
            wx, wh = self.params[0], self.params[1]
            dwx, dwh, dbx, dbh = self.grads
            dtable = self._buf("dtable", (emb.input_dim, wx.shape[1]))
            be.recurrent_table_bwd(self.cell, x, wh, extra["ws"], dy, dwh, dbx, dbh, dtable,
                                   self._buf("bws", (bwd_size,)), self.return_sequences)
            be.matmul(emb.params[0], dtable, dwx, trans_a=True)
            be.matmul(dtable, wx, emb.grads[0], trans_b=True)
            return None
        n, t, f = x.shape
        _, bwd_size = be.recurrent_workspace(self.cell, n, t, f, self.units)
        bws = self._buf("bws", (bwd_size,))
        dx = self._buf("dx", x.shape) if need_dx else None
        dwx, dwh, dbx, dbh = self.grads
        be.recurrent_bwd(self.cell, x, self.params[0], self.params[1], extra["ws"], dy, dwx, dwh, dbx, dbh, dx,
                         bws, self.return_sequences, bf16=self.mixed)
        return dx


class SimpleRNN(_Recurrent):
    """Fully connected recurrent layer, ``h_t = tanh(x_t W_x + b_x + h_{t-1} W_h + b_h)``.

    Input ``(N, T, features)`` (batch first), zero initial state. Output the last state
    ``(N, units)``, or every state ``(N, T, units)`` with ``return_sequences=True``.

    Parameters
    ----------
    units : int
        Size of the hidden state H.
    return_sequences : bool, default False
        Output every step instead of the last.

    Weights: ``W_x (features, H)`` (glorot_uniform), ``W_h (H, H)`` (orthogonal), ``b_x (H,)``,
    ``b_h (H,)`` (zeros), as ``torch.nn.RNN`` with ``weight_ih_l0 = W_x.T``.

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> layer = fnn.layers.SimpleRNN(4, return_sequences=True)
    >>> layer.forward(np.zeros((2, 5, 3), dtype="float32")).shape
    (2, 5, 4)
    """

    cell = "rnn"
    gates = 1


class LSTM(_Recurrent):
    """Long short-term memory layer, PyTorch's ``torch.nn.LSTM`` equations::

        [i, f, g, o] = x_t W_x + b_x + h_{t-1} W_h + b_h     (blocks of H columns)
        i, f, o = sigmoid(i, f, o);  g = tanh(g)
        c_t = f c_{t-1} + i g;       h_t = o tanh(c_t)

    Input ``(N, T, features)`` (batch first), zero initial state. Output the last state
    ``(N, units)``, or every state ``(N, T, units)`` with ``return_sequences=True``.

    Parameters
    ----------
    units : int
        Size of the hidden state H.
    return_sequences : bool, default False
        Output every step instead of the last (needed below another recurrent layer).

    Weights: ``W_x (features, 4H)`` (glorot_uniform), ``W_h (H, 4H)`` (orthogonal per gate),
    ``b_x (4H,)``, ``b_h (4H,)`` (zeros), gate blocks in the order i, f, g, o.

    Examples
    --------
    >>> import fastnn as fnn
    >>> model = fnn.Sequential([fnn.layers.LSTM(32, return_sequences=True), fnn.layers.LSTM(32),
    ...                         fnn.layers.Dense(10, activation="softmax")], input_shape=(8, 8))
    >>> [w.shape for w in model.layers[0].get_weights()]
    [(8, 128), (32, 128), (128,), (128,)]
    """

    cell = "lstm"
    gates = 4


class GRU(_Recurrent):
    """Gated recurrent unit layer, PyTorch's ``torch.nn.GRU`` equations::

        a = x_t W_x + b_x;  b = h_{t-1} W_h + b_h               (blocks r, z, n of H columns)
        r = sigmoid(a_r + b_r);  z = sigmoid(a_z + b_z);  n = tanh(a_n + r * b_n)
        h_t = (1 - z) n + z h_{t-1}

    Input ``(N, T, features)`` (batch first), zero initial state. Output the last state
    ``(N, units)``, or every state ``(N, T, units)`` with ``return_sequences=True``.

    Parameters
    ----------
    units : int
        Size of the hidden state H.
    return_sequences : bool, default False
        Output every step instead of the last.

    Weights: ``W_x (features, 3H)`` (glorot_uniform), ``W_h (H, 3H)`` (orthogonal per gate),
    ``b_x (3H,)``, ``b_h (3H,)`` (zeros), gate blocks in the order r, z, n.

    Examples
    --------
    >>> import fastnn as fnn
    >>> layer = fnn.layers.GRU(16)
    >>> layer.build((10, 3))
    >>> [w.shape for w in layer.get_weights()]
    [(3, 48), (16, 48), (48,), (48,)]
    """

    cell = "gru"
    gates = 3
