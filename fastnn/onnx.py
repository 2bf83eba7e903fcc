"""ONNX export (``model.export(path, format="onnx")``; needs ``pip install "fastnn[onnx]"``).

One converter per layer family turns a layer's configuration and weights into ONNX nodes
(the handler tables of keras2onnx/tf2onnx); the layers themselves know nothing of ONNX.

The graph has one input named ``"input"`` of shape ``("batch", *model.input_shape)`` (float32 or
float64 as the model, int64 indices when the first layer is an Embedding) and one output named
``"output"`` of shape ``("batch", *model.output_shape)``, the batch axis dynamic. Opset
:data:`OPSET` (17), IR version 8, so onnxruntime 1.13 and later load it.

Conversions:

* Dense -> ``Gemm`` (``MatMul`` without bias); Conv2D -> ``Conv`` with explicit pads (the odd
  extra row/column of "same" padding at the bottom/right); fused activations and activation
  layers -> ``Relu``/``Sigmoid``/``Tanh``/``LeakyRelu``/``Softmax`` (``axis=-1``; ``axis=1`` for
  Conv2D's channel softmax), so a final Softmax/Sigmoid is kept and the output matches ``predict``.
* MaxPool2D/AvgPool2D -> ``MaxPool``/``AveragePool``; GlobalAverage/MaxPooling2D ->
  ``GlobalAveragePool``/``GlobalMaxPool`` + ``Flatten``; Flatten -> ``Flatten(axis=1)`` (NCHW order).
* BatchNormalization -> ``BatchNormalization`` (inference form, moving statistics; gamma = 1 /
  beta = 0 when ``scale``/``center`` are off); ``(N, T, F)`` inputs are transposed to put the
  features on axis 1 and back.
* Embedding -> ``Gather`` on axis 0.
* SimpleRNN/LSTM/GRU -> ``RNN``/``LSTM``/``GRU`` (layout 0: the batch-first input is transposed to
  ``(T, N, F)``; onnxruntime implements only layout 0). fastnn's ``W_x (in, kH)``/``W_h (H, kH)``
  become ``W``/``R`` ``(1, kH, in)``/``(1, kH, H)`` (transposes) and ``B = [b_x, b_h]``, with the
  gate blocks reordered: LSTM i, f, g, o -> ONNX i, o, f, c; GRU r, z, n -> ONNX z, r, h with
  ``linear_before_reset=1`` (PyTorch's GRU). ``return_sequences=False`` takes ``Y_h``.
* Dropout, and the augmentation layers (identities at inference), export as nothing.

Anything else (a layer class without a converter, an unbuilt model) raises before a file is
written, so a file is never a partial or wrong graph.
"""
from __future__ import annotations

import os

import numpy as np

from ._validate import NotBuiltError

#: the ONNX operator set the exported graphs use
OPSET = 17
#: IR version 8 is the one of opset 17 (onnx 1.12): the oldest runtimes that know opset 17 load it
IR_VERSION = 8

#: layer classes that are the identity at inference (``predict``): exported as nothing. Listed by
#: name so the augmentation layers are covered wherever they are defined.
IDENTITY_AT_INFERENCE = frozenset({"Dropout", "RandomFlip", "RandomTranslation", "GaussianNoise"})

_ACT_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "leaky_relu": "LeakyRelu", "softmax": "Softmax"}


def _require_onnx():
    try:
        import onnx
    except ImportError as err:
        raise ImportError("exporting to ONNX needs the onnx package: pip install \"fastnn[onnx]\" "
                          "(or pip install onnx)") from err
    return onnx


class _Graph:
    """Nodes and initializers under construction, with unique names."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        self.nodes: list = []
        self.initializers: list = []
        self._names: set = set()

    def name(self, hint: str) -> str:
        base, i = hint, 1
        while hint in self._names:
            i += 1
            hint = f"{base}_{i}"
        self._names.add(hint)
        return hint

    def const(self, hint: str, array, dtype=None) -> str:
        array = np.ascontiguousarray(array, dtype=self.dtype if dtype is None else dtype)
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs, hint: str, outputs: int = 1, **attrs):
        names = [self.name(f"{hint}/{op}" + (f":{k}" if outputs > 1 else "")) for k in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), names, name=self.name(f"{hint}/{op}_node"),
                                                     **attrs))
        return names[0] if outputs == 1 else names


# ---- converters: (graph, layer, input name, input shape without the batch axis) -> output name ----
def _activation(g, act: str, x: str, hint: str, alpha: float = 0.0, axis: int = -1) -> str:
    if act in (None, "linear"):
        return x
    op = _ACT_OPS[act]
    if op == "LeakyRelu":
        return g.node(op, [x], hint, alpha=float(alpha))
    if op == "Softmax":
        return g.node(op, [x], hint, axis=axis)
    return g.node(op, [x], hint)


def _dense(g, layer, x, shape):
    w = layer.get_weights()
    if layer.use_bias:
        y = g.node("Gemm", [x, g.const(f"{layer.name}/W", w[0]), g.const(f"{layer.name}/b", w[1])], layer.name)
    else:
        y = g.node("MatMul", [x, g.const(f"{layer.name}/W", w[0])], layer.name)
    return _activation(g, layer.activation, y, layer.name, layer.alpha)


def _conv2d(g, layer, x, shape):
    w = layer.get_weights()
    top, bottom, left, right = layer._geometry(shape)[0]
    inputs = [x, g.const(f"{layer.name}/W", w[0])] + ([g.const(f"{layer.name}/b", w[1])] if layer.use_bias else [])
    y = g.node("Conv", inputs, layer.name, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
               pads=[top, left, bottom, right], dilations=[1, 1], group=1)
    return _activation(g, layer.activation, y, layer.name, layer.alpha, axis=1)


def _activation_layer(g, layer, x, shape):
    return _activation(g, layer.activation, x, layer.name, layer.alpha)


def _pool(op):
    def convert(g, layer, x, shape):
        return g.node(op, [x], layer.name, kernel_shape=list(layer.pool_size), strides=list(layer.stride))
    return convert


def _global_pool(op):
    def convert(g, layer, x, shape):
        return g.node("Flatten", [g.node(op, [x], layer.name)], layer.name, axis=1)
    return convert


def _flatten(g, layer, x, shape):
    return g.node("Flatten", [x], layer.name, axis=1)


def _batchnorm(g, layer, x, shape):
    w = dict(zip(layer.weight_names(), layer.get_weights()))
    f = w["moving_mean"].shape[0]
    gamma = w.get("gamma", np.ones(f))
    beta = w.get("beta", np.zeros(f))
    consts = [g.const(f"{layer.name}/{k}", v) for k, v in (("gamma", gamma), ("beta", beta),
                                                           ("moving_mean", w["moving_mean"]),
                                                           ("moving_variance", w["moving_variance"]))]
    seq = len(shape) == 2       # (N, T, F): the features are the last axis, ONNX wants them on axis 1
    if seq:
        x = g.node("Transpose", [x], layer.name, perm=[0, 2, 1])
    y = g.node("BatchNormalization", [x] + consts, layer.name, epsilon=float(layer.epsilon))
    if seq:
        y = g.node("Transpose", [y], layer.name, perm=[0, 2, 1])
    return y


def _embedding(g, layer, x, shape):
    return g.node("Gather", [g.const(f"{layer.name}/embeddings", layer.get_weights()[0]), x], layer.name, axis=0)


# gate-block order of ONNX's W/R/B, as indices of fastnn's blocks
_GATES = {"SimpleRNN": ("RNN", [0]), "LSTM": ("LSTM", [0, 3, 1, 2]), "GRU": ("GRU", [1, 0, 2])}


def _recurrent(g, layer, x, shape):
    op, order = _GATES[type(layer).__name__]
    wx, wh, bx, bh = layer.get_weights()
    h = layer.units

    def blocks(a):      # reorder the gate blocks along the last axis
        return np.concatenate([a[..., k * h:(k + 1) * h] for k in order], axis=-1)

    w = g.const(f"{layer.name}/W", blocks(wx).T[None])
    r = g.const(f"{layer.name}/R", blocks(wh).T[None])
    b = g.const(f"{layer.name}/B", np.concatenate([blocks(bx), blocks(bh)])[None])
    attrs = {"hidden_size": h}
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    if op == "RNN":
        attrs["activations"] = ["Tanh"]
    xt = g.node("Transpose", [x], layer.name, perm=[1, 0, 2])          # (T, N, F)
    y, y_h = g.node(op, [xt, w, r, b], layer.name, outputs=2, **attrs)
    if layer.return_sequences:                                          # Y (T, 1, N, H) -> (N, T, H)
        y = g.node("Squeeze", [y, g.const(f"{layer.name}/axis1", [1], np.int64)], layer.name)
        return g.node("Transpose", [y], layer.name, perm=[1, 0, 2])
    return g.node("Squeeze", [y_h, g.const(f"{layer.name}/axis0", [0], np.int64)], layer.name)   # (1, N, H) -> (N, H)


#: class name -> converter; keys must name fastnn's own classes (checked against layers.REGISTRY)
CONVERTERS = {
    "Dense": _dense, "Conv2D": _conv2d,
    "ReLU": _activation_layer, "Sigmoid": _activation_layer, "Tanh": _activation_layer,
    "Softmax": _activation_layer, "LeakyReLU": _activation_layer,
    "MaxPool2D": _pool("MaxPool"), "AvgPool2D": _pool("AveragePool"),
    "GlobalAveragePooling2D": _global_pool("GlobalAveragePool"), "GlobalMaxPooling2D": _global_pool("GlobalMaxPool"),
    "Flatten": _flatten, "BatchNormalization": _batchnorm, "Embedding": _embedding,
    "SimpleRNN": _recurrent, "LSTM": _recurrent, "GRU": _recurrent,
}


def _converter(layer):
    from . import layers
    cls = type(layer)
    name = cls.__name__
    if name in IDENTITY_AT_INFERENCE and cls.__module__.startswith("fastnn."):
        return None
    if name in CONVERTERS and layers.REGISTRY.get(name) is cls:
        return CONVERTERS[name]
    raise ValueError(f"export(format='onnx'): layer {layer.name} ({cls.__module__}.{name}) has no ONNX conversion "
                     f"(supported: {', '.join(sorted(CONVERTERS))}; identities: "
                     f"{', '.join(sorted(IDENTITY_AT_INFERENCE))})")


def to_onnx(model, opset: int = OPSET):
    """The model as an ``onnx.ModelProto`` (checked with ``onnx.checker``); see the module notes."""
    onnx = _require_onnx()
    from onnx import TensorProto, helper
    if opset != OPSET:
        raise ValueError(f"export(format='onnx'): opset must be {OPSET} (the one the converters are written "
                         f"for), got {opset!r}")
    if not model.built:
        raise NotBuiltError(f"{model.name}.export: the model is not built (call build(input_shape), fit or "
                            f"predict first, so its weights exist)")
    dtype = np.dtype(model.dtype)
    elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}.get(dtype)
    if elem is None:
        raise ValueError(f"{model.name}.export: ONNX export supports float32 and float64 models, not {dtype}")
    converters = [_converter(layer) for layer in model.layers]      # every layer checked before any work
    g = _Graph(onnx, dtype)
    integer = bool(getattr(model.layers[0], "integer_input", False))
    x = g.name("input")
    inp = helper.make_tensor_value_info(x, TensorProto.INT64 if integer else elem,
                                        ["batch", *model.input_shape])
    shape = tuple(model.input_shape)
    for layer, convert in zip(model.layers, converters):
        if convert is not None:
            x = convert(g, layer, x, shape)
        shape = tuple(layer.output_shape)
    g.nodes.append(helper.make_node("Identity", [x], ["output"], name=g.name("output/Identity")))
    out = helper.make_tensor_value_info("output", elem, ["batch", *model.output_shape])
    graph = helper.make_graph(g.nodes, model.name, [inp], [out], initializer=g.initializers)
    from . import __version__
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION,
                              producer_name="fastnn", producer_version=__version__,
                              doc_string=f"fastnn Sequential {model.name!r} exported with opset {opset}")
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, path, opset: int = OPSET):
    """Write ``model`` to ``path`` as an ONNX file (nothing is written when it cannot be exported)."""
    onnx = _require_onnx()
    proto = to_onnx(model, opset)
    onnx.save_model(proto, os.fspath(path))
