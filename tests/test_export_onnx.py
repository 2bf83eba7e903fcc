"""ONNX export: onnxruntime's output equals predict for every layer type and the demo models."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn as fnn
from fastnn import demo
from fastnn import layers as L

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx.reference import ReferenceEvaluator  # noqa: E402

from fastnn import onnx as fonnx  # noqa: E402  (after the skips: needs the onnx package)

RTOL, ATOL = 1e-5, 1e-6
# onnxruntime's CPU LSTM/GRU/RNN kernels evaluate sigmoid and tanh with fast approximations: on a
# 30-step LSTM their float32 output is ~4e-5 from a float64 reference where fastnn's is ~5e-6. So
# graphs with recurrent nodes get this absolute tolerance in onnxruntime, and are held to RTOL/ATOL
# through onnx's reference evaluator (exact numpy semantics of every op), as all graphs are.
ORT_RECURRENT_ATOL = 2e-4


def _randomize(model, rng):
    """Random weights of a useful scale (positive variances for BatchNormalization)."""
    weights = []
    for layer in model.layers:
        for name, w in zip(layer.weight_names(), layer.get_weights()):
            if name == "moving_variance":
                w = rng.uniform(0.5, 2.0, w.shape)
            elif name != "embeddings":
                w = rng.normal(0.0, 0.5, w.shape)
            weights.append(w)
    model.set_weights(weights)
    return model


def _session(model, tmp_path):
    path = tmp_path / "model.onnx"
    model.export(path, format="onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    return proto, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _inputs(model, n, rng):
    if getattr(model.layers[0], "integer_input", False):
        return rng.integers(0, model.layers[0].input_dim, (n,) + model.input_shape).astype(np.int64)
    return rng.normal(size=(n,) + model.input_shape).astype(model.dtype)


def _check(model, tmp_path, rng, batches=(1, 7)):
    proto, sess = _session(model, tmp_path)
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert sess.get_inputs()[0].shape[0] == "batch"
    recurrent = any(node.op_type in ("LSTM", "GRU", "RNN") for node in proto.graph.node)
    reference = ReferenceEvaluator(proto)
    for n in batches:
        x = _inputs(model, n, rng)
        want = model.predict(x)
        got = sess.run(None, {"input": x})[0]
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ORT_RECURRENT_ATOL if recurrent else ATOL)
        exact = reference.run(None, {"input": x})[0]
        assert exact.shape == want.shape and exact.dtype == want.dtype
        np.testing.assert_allclose(exact, want, rtol=RTOL, atol=ATOL)
    return proto


CASES = {
    "dense": ([L.Dense(6, activation="relu"), L.Dense(5, activation="tanh", use_bias=False),
               L.Dense(4, activation="leaky_relu"), L.Dense(3, activation="softmax")], (5,)),
    "dense_sigmoid_layers": ([L.Dense(6), L.LeakyReLU(0.2), L.Dropout(0.3), L.Dense(4), L.Tanh(), L.Dense(1),
                              L.Sigmoid()], (5,)),
    "dense_softmax_layer": ([L.Dense(6), L.ReLU(), L.Dense(4), L.Softmax()], (3,)),
    "conv_same_odd": ([L.Conv2D(4, 3, stride=2, padding="same", activation="relu"),
                       L.Conv2D(3, (2, 3), padding="same", activation="sigmoid", use_bias=False),
                       L.MaxPool2D(2), L.Flatten(), L.Dense(3, activation="softmax")], (2, 9, 8)),
    "conv_pad_pool": ([L.Conv2D(4, 3, padding=(1, 2), activation="leaky_relu"), L.AvgPool2D(2, stride=1),
                       L.Conv2D(3, 2, stride=(1, 2), activation="tanh"), L.MaxPool2D((2, 1), stride=(1, 2)),
                       L.Flatten(), L.Dense(2)], (3, 7, 7)),
    "conv_channel_softmax": ([L.Conv2D(4, 3, padding="valid", activation="softmax")], (2, 6, 5)),
    "global_pools_bn": ([L.Conv2D(4, 3, use_bias=False), L.BatchNormalization(), L.ReLU(), L.GlobalMaxPooling2D(),
                         L.BatchNormalization(center=False), L.Dense(3)], (2, 6, 6)),
    "global_avg_bn": ([L.BatchNormalization(scale=False), L.Conv2D(4, 3), L.GlobalAveragePooling2D()], (2, 5, 5)),
    "simplernn": ([L.SimpleRNN(5, return_sequences=True), L.SimpleRNN(4)], (6, 3)),
    "lstm": ([L.LSTM(5, return_sequences=True), L.LSTM(4), L.Dense(3, activation="softmax")], (6, 3)),
    "gru": ([L.GRU(5, return_sequences=True), L.GRU(4)], (6, 3)),
    "rnn_seq_bn": ([L.BatchNormalization(), L.GRU(4, return_sequences=True), L.BatchNormalization(),
                    L.LSTM(3, return_sequences=True)], (5, 2)),
    "embedding_lstm": ([L.Embedding(11, 4), L.LSTM(5), L.Dense(2, activation="softmax")], (7,)),
    "embedding_flat": ([L.Embedding(9, 3), L.Flatten(), L.Dense(2)], (4,)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layers_match_predict(case, tmp_path, rng):
    layers, shape = CASES[case]
    model = _randomize(fnn.Sequential(layers, input_shape=shape), rng)
    proto = _check(model, tmp_path, rng)
    assert proto.opset_import[0].version == fonnx.OPSET == 17


def test_every_layer_class_has_a_converter():
    for name in L.REGISTRY:
        assert name in fonnx.CONVERTERS or name in fonnx.IDENTITY_AT_INFERENCE, name
    assert {"Dropout", "RandomFlip", "RandomTranslation", "GaussianNoise"} <= fonnx.IDENTITY_AT_INFERENCE
    covered = {type(layer).__name__ for layers, _ in CASES.values() for layer in layers}
    assert covered >= set(fonnx.CONVERTERS) | {"Dropout"}


def test_recurrent_nodes_and_gate_order(tmp_path, rng):
    """LSTM/GRU/SimpleRNN become single ONNX LSTM/GRU/RNN nodes (not unrolled loops)."""
    model = _randomize(fnn.Sequential([L.LSTM(3, return_sequences=True), L.GRU(3, return_sequences=True),
                                       L.SimpleRNN(2)], input_shape=(4, 2)), rng)
    proto = _check(model, tmp_path, rng)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == ops.count("GRU") == ops.count("RNN") == 1
    gru = next(n for n in proto.graph.node if n.op_type == "GRU")
    assert {a.name: a.i for a in gru.attribute}["linear_before_reset"] == 1


def test_final_softmax_kept_and_dropout_dropped(tmp_path, rng):
    model = _randomize(fnn.Sequential([L.Dense(4, activation="relu"), L.Dropout(0.5),
                                       L.Dense(3, activation="softmax")], input_shape=(2,)), rng)
    proto = _check(model, tmp_path, rng)
    ops = [n.op_type for n in proto.graph.node]
    assert ops[-2] == "Softmax" and "Dropout" not in ops


def test_trained_model_and_dynamic_batch(tmp_path, rng):
    fnn.seed(3)
    model = fnn.Sequential([L.Conv2D(4, 3, padding="same", activation="relu"), L.BatchNormalization(),
                            L.MaxPool2D(2), L.Flatten(), L.Dense(3, activation="softmax")], input_shape=(1, 6, 6))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = rng.normal(size=(64, 1, 6, 6)).astype("float32")
    model.fit(x, rng.integers(0, 3, 64), epochs=2, batch_size=16, verbose=0)
    _check(model, tmp_path, rng, batches=(1, 7, 33))


@pytest.mark.parametrize("name", sorted(demo.DEMOS))
def test_demo_models(name, tmp_path, rng, monkeypatch):
    """Each demo's model (built and trained by the demo itself, for one epoch) exports exactly."""
    built = []
    real_fit = fnn.Sequential.fit

    def short_fit(self, *args, **kwargs):
        built.append(self)
        kwargs["epochs"] = 1
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(fnn.Sequential, "fit", short_fit)
    fnn.seed(0)
    demo.DEMOS[name](verbose=0)
    (model,) = built
    _check(model, tmp_path, rng)


def test_float64_model(tmp_path, rng):
    model = _randomize(fnn.Sequential([L.Dense(5, activation="relu"), L.BatchNormalization(),
                                       L.Dense(3, activation="softmax")], input_shape=(4,), dtype="float64"), rng)
    proto = _check(model, tmp_path, rng)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


def test_float64_recurrent_and_conv_files_are_valid(tmp_path, rng):
    """onnxruntime has no double kernels for Conv/RNN/LSTM/GRU; the files are still checker-clean
    with double weights (other runtimes may run them)."""
    model = _randomize(fnn.Sequential([L.LSTM(3)], input_shape=(4, 2), dtype="float64"), rng)
    proto = fonnx.to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    assert all(t.data_type == onnx.TensorProto.DOUBLE for t in proto.graph.initializer
               if t.name.rsplit("/", 1)[-1] in ("W", "R", "B"))


def test_gpu_model_exports_host_weights(tmp_path, rng):
    if not fnn.cuda_available():
        pytest.skip("needs CUDA")
    model = _randomize(fnn.Sequential([L.Dense(4, activation="relu"), L.Dense(2)], input_shape=(3,)), rng)
    model.to("cuda")
    _, sess = _session(model, tmp_path)
    x = rng.normal(size=(5, 3)).astype("float32")
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], model.predict(x), rtol=RTOL, atol=ATOL)


def test_unbuilt_model_raises_and_writes_nothing(tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match="not built"):
        fnn.Sequential([L.Dense(2)]).export(path)
    assert not path.exists()


def test_unknown_format_and_layer(tmp_path):
    model = fnn.Sequential([L.Dense(2)], input_shape=(3,))
    with pytest.raises(ValueError, match="format"):
        model.export(tmp_path / "m.tflite", format="tflite")

    class Custom(L.Dense):
        pass

    path = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match="no ONNX conversion"):
        fnn.Sequential([L.Dense(2), Custom(2)], input_shape=(3,)).export(path)
    assert not path.exists()
    with pytest.raises(ValueError, match="opset"):
        fonnx.to_onnx(model, opset=13)
