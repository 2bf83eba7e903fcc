"""2-D convolution (NCHW)."""
from __future__ import annotations

import threading

from .. import initializers, regularizers
from .._config import get_num_threads
from .._validate import fail, positive_int
from .activation import activation_grad, apply_activation, check_activation
from .base import Layer


def as_pair(value, where: str, minimum: int = 1) -> tuple:
    """An int or an (h, w) pair of ints >= minimum, as a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            fail(where, f"an int >= {minimum} or an (h, w) pair of them", repr(value))
        return tuple(positive_int(v, where, minimum) for v in value)
    v = positive_int(value, where, minimum)
    return (v, v)


def pair_config(pair: tuple):
    """A pair as a model-file value: the int when both are equal, else a list."""
    return pair[0] if pair[0] == pair[1] else list(pair)


def check_4d(layer, input_shape) -> tuple:
    if len(input_shape) != 3:
        fail(layer.name, "input of shape (N, C, H, W) (channels first)",
             f"input_shape (N, {', '.join(map(str, input_shape))})")
    return tuple(int(d) for d in input_shape)


class Conv2D(Layer):
    """2-D convolution over ``(N, C, H, W)`` input: ``y = activation(conv(x, W) + b)``.

    Cross-correlation as PyTorch's ``Conv2d``; ``W`` has shape ``(filters, in_channels, kh, kw)``.
    Computed by im2col + GEMM in C, with the bias and ReLU fused into the GEMM.

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size : int or (kh, kw)
    stride : int or (sh, sw), default 1
    padding : int, (ph, pw), "valid" or "same", default 0
        Zeros added on each side (``(ph, pw)``: rows top and bottom, columns left and right).
        "valid" is 0; "same" gives outputs of ``ceil(in / stride)`` with any odd extra row or
        column of padding at the bottom/right, as Keras.
    activation : str or None
        One of "relu", "sigmoid", "tanh", "softmax" (over the channels), "leaky_relu", "linear"/None.
    use_bias : bool, default True
    kernel_initializer : str, default "glorot_uniform"

    Examples
    --------
    >>> import fastnn as fnn
    >>> layer = fnn.layers.Conv2D(8, 3, padding="same", activation="relu")
    >>> layer.build((1, 28, 28))
    >>> layer.output_shape, [w.shape for w in layer.get_weights()]
    ((8, 28, 28), [(8, 1, 3, 3), (8,)])
    """

    def __init__(self, filters: int, kernel_size, stride=1, padding=0, activation=None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", kernel_regularizer=None, name=None):
        super().__init__(name)
        where = f"in {self.name}"
        self.kernel_regularizer = regularizers.get(kernel_regularizer, f"Conv2D(kernel_regularizer=...) {where}")
        self.regularized = ((0, self.kernel_regularizer),) if self.kernel_regularizer else ()
        self.filters = positive_int(filters, f"Conv2D(filters=...) {where}")
        self.kernel_size = as_pair(kernel_size, f"Conv2D(kernel_size=...) {where}")
        self.stride = as_pair(stride, f"Conv2D(stride=...) {where}")
        if isinstance(padding, str):
            if padding.lower() not in ("same", "valid"):
                fail(f"Conv2D(padding=...) {where}", "an int >= 0, an (h, w) pair, 'same' or 'valid'", repr(padding))
            self.padding = padding.lower()
        else:
            self.padding = as_pair(padding, f"Conv2D(padding=...) {where}", minimum=0)
        self.activation = check_activation(activation, f"Conv2D(activation=...) {where}")
        if not isinstance(use_bias, bool):
            fail(f"Conv2D(use_bias=...) {where}", "a bool", repr(use_bias), TypeError)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.check_name(kernel_initializer,
                                                          f"Conv2D(kernel_initializer=...) {where}")
        self.alpha = 0.01 if self.activation == "leaky_relu" else 0.0
        self._pads = (0, 0, 0, 0)
        self._ws_sizes: dict = {}
        self._relu_premasked = False    # set by Sequential while a MaxPool2D after it masks dy

    bf16_gemm = True

    @property
    def capturable(self):
        # The channel softmax transposes with array methods, outside the kernels.
        return self.activation != "softmax"

    @property
    def train_capturable(self):
        return self.capturable

    @property
    def output_activation(self):
        # Sigmoid is elementwise, so a final Conv2D(sigmoid) can be fused with binary
        # cross-entropy; the channel softmax is always applied by the layer itself.
        return "sigmoid" if self.activation == "sigmoid" else None

    def get_config(self):
        return {"filters": self.filters, "kernel_size": pair_config(self.kernel_size),
                "stride": pair_config(self.stride),
                "padding": self.padding if isinstance(self.padding, str) else pair_config(self.padding),
                "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "kernel_regularizer": regularizers.config(self.kernel_regularizer), "name": self.name}

    # ---- geometry -----------------------------------------------------------------------
    def _geometry(self, input_shape):
        """(pads (top, bottom, left, right), output shape) for inputs of input_shape."""
        c, h, w = check_4d(self, input_shape)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if self.padding == "same":
            pads = []
            for size, k, s in ((h, kh, sh), (w, kw, sw)):
                total = max((-(-size // s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
        elif self.padding == "valid":
            pads = [0, 0, 0, 0]
        else:
            ph, pw = self.padding
            pads = [ph, ph, pw, pw]
        hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
        if max(hp, wp, kh, kw, sh, sw) >= 2 ** 31:
            fail(self.name, "padded sizes, kernel and strides below 2^31",
                 f"padded input ({hp}, {wp}), kernel {self.kernel_size}, stride {self.stride}")
        if kh > hp or kw > wp:
            fail(self.name, f"an input no smaller than the kernel {self.kernel_size} after padding",
                 f"input_shape (N, {c}, {h}, {w}) padded to ({hp}, {wp})")
        return tuple(pads), (self.filters, (hp - kh) // sh + 1, (wp - kw) // sw + 1)

    def compute_output_shape(self, input_shape):
        return self._geometry(input_shape)[1]

    def param_specs(self, input_shape):
        c = check_4d(self, input_shape)[0]
        specs = [((self.filters, c) + self.kernel_size, self.kernel_initializer)]
        if self.use_bias:
            specs.append(((self.filters,), "zeros"))
        return specs

    def weight_names(self):
        return ["W", "b"] if self.use_bias else ["W"]

    def _build(self, input_shape):
        self._pads = self._geometry(input_shape)[0]
        self._ws_sizes = {}

    def _drop_buffers(self):
        super()._drop_buffers()
        self._ws_sizes = {}     # workspace sizes are the backend's

    def _workspace(self, n: int, backward: bool):
        """The C kernels' scratch: in training (planned buffers) one buffer of this layer serves
        both directions; otherwise a buffer private to the calling thread, reused by every call
        on it (the kernels fully overwrite what they read, and predict may run in many threads)."""
        key = (n, get_num_threads(), backward, self._plan)
        size = self._ws_sizes.get(key)
        if size is None:
            be, xs, ws = self.backend, (n,) + self.input_shape, self.params[0].shape
            sizes = [be.conv2d_workspace(xs, ws, self.stride, self._pads, backward=b)
                     for b in ((False, True) if self._plan else (backward,))]
            self._ws_sizes[key] = size = max(1, *map(int, sizes))
        if self._plan:
            return self._buf("ws", (size,))
        return _thread_scratch(self.backend, size, self.dtype)

    # ---- computing ----------------------------------------------------------------------
    def _forward(self, x, training, logits):
        be = self.backend
        act = self.activation
        if logits and act == "sigmoid":
            act = "linear"
        y = self._buf("y", (x.shape[0],) + self.output_shape)
        # "mixed_bfloat16": the backend's bf16 convolution (x rounded while its columns are packed)
        # on the weights rounded once per step.
        w = self._bf16_weight() if self.mixed else self.params[0]
        be.conv2d_fwd(x, w, self.params[1] if self.use_bias else None, y, self.stride, self._pads,
                      relu=act == "relu", ws=self._workspace(x.shape[0], False), bf16=self.mixed)
        if act == "softmax":
            _channel_softmax(be, y, y)
        elif act not in ("linear", "relu"):
            apply_activation(be, act, y, y, self.alpha)
        if training:
            self._remember(x, y, act=act)
        return y

    def _backward(self, dy, need_dx):
        be = self.backend
        x, y, extra = self._cache
        act = extra["act"]
        dz = dy
        if act == "softmax":
            dz = _channel_softmax_grad(be, y, dy, self._buf("dz", dy.shape))
        elif act not in ("linear", "relu"):     # the ReLU mask is applied inside conv2d_bwd
            dz = activation_grad(be, act, y, dy, self._buf("dz", dy.shape), self.alpha)
        dx = self._buf("dx", x.shape) if need_dx else None
        relu = act == "relu" and not self._relu_premasked
        w = self._bf16_weight() if self.mixed else self.params[0]
        be.conv2d_bwd(x, w, dz, self.grads[0], self.grads[1] if self.use_bias else None, dx,
                      self.stride, self._pads, y=y if relu else None, relu=relu,
                      ws=self._workspace(x.shape[0], True), bf16=self.mixed)
        return dx


_tls = threading.local()


def _thread_scratch(be, size: int, dtype):
    """A scratch buffer of at least size elements owned by the calling thread (grown on demand)."""
    bufs = getattr(_tls, "bufs", None)
    if bufs is None:
        bufs = _tls.bufs = {}
    key = (be.name, dtype)
    buf = bufs.get(key)
    if buf is None or buf.shape[0] < size:
        buf = bufs[key] = be.empty((size,), dtype=dtype)
    return buf


def _channels_last(z):
    """(N, C, H, W) -> a contiguous (N*H*W, C) copy. Array methods only (no np.* calls), so the
    same code runs on CuPy arrays."""
    return z.transpose(0, 2, 3, 1).copy().reshape(-1, z.shape[1])


def _channel_softmax(be, z, out):
    """out = softmax of z over its channel axis (axis 1); out may be z."""
    t = _channels_last(z)
    be.softmax_fwd(t, t)
    out[...] = t.reshape(z.shape[0], z.shape[2], z.shape[3], z.shape[1]).transpose(0, 3, 1, 2)
    return out


def _channel_softmax_grad(be, y, dy, out):
    t = _channels_last(y)
    g = _channels_last(dy)
    be.softmax_bwd(t, g, g)
    out[...] = g.reshape(y.shape[0], y.shape[2], y.shape[3], y.shape[1]).transpose(0, 3, 1, 2)
    return out
