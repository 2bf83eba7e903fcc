"""cnn64, infer-cnn and cnnrgb64 (shared/BENCHMARKS.md): fastnn against PyTorch CPU, plus a
per-layer forward/backward timing of the fastnn training step so the slowest part is visible.

    python benchmarks/run.py --workloads cnn64,infer-cnn,cnnrgb64 --threads 1,2
    python benchmarks/bench_cnn.py --threads 2          # the per-layer table only (cnn64)
    python benchmarks/bench_cnn.py --threads 2 --model cnnrgb64
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import fastnn as fnn  # noqa: E402

CNN_STEPS = 10           # training steps per timed block (one fit epoch of 10 batches)
BATCH = 64
RGB_SHAPE = (3, 32, 32)


def cnn_fastnn(dtype=None):
    L = fnn.layers
    model = fnn.Sequential([
        L.Conv2D(16, 3, padding=1, activation="relu"), L.MaxPool2D(2),
        L.Conv2D(32, 3, padding=1, activation="relu"), L.MaxPool2D(2),
        L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.2), L.Dense(10),
    ], input_shape=(1, 28, 28), dtype=dtype)
    return compile_cnn(model)


def cnnrgb_fastnn(dtype=None):
    """cnnrgb64: 3x32x32 input, Conv2D 32 and 64 (3x3, same padding, ReLU) each followed by 2x2
    max pooling, Dense 256 ReLU, Dense 10."""
    L = fnn.layers
    model = fnn.Sequential([
        L.Conv2D(32, 3, padding=1, activation="relu"), L.MaxPool2D(2),
        L.Conv2D(64, 3, padding=1, activation="relu"), L.MaxPool2D(2),
        L.Flatten(), L.Dense(256, activation="relu"), L.Dense(10),
    ], input_shape=RGB_SHAPE, dtype=dtype)
    return compile_cnn(model)


def compile_cnn(model):
    """The training setup of the CNN workloads (SGD with momentum, cross-entropy from logits)."""
    model.compile(optimizer=fnn.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss=fnn.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=())
    return model


def cnn_torch():
    import torch
    from torch import nn
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss()


def cnnrgb_torch():
    import torch
    from torch import nn
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, 10))
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss()


def _data(n, seed=0, shape=(1, 28, 28)):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + shape).astype(np.float32), rng.integers(0, 10, n)


def bench_cnn64(report, threads, repeats, min_seconds):
    n = BATCH * CNN_STEPS
    x, y = _data(n)
    model = cnn_fastnn()
    common.training_vs_torch(report, "cnn64", threads, repeats, min_seconds, model, cnn_torch(), x, y, BATCH)
    if common.DEVICE == "cpu":         # per-layer wall times mean nothing for asynchronous GPU work
        layer_times(model, x[:BATCH], y[:BATCH], steps=max(3, repeats))


def bench_cnnrgb64(report, threads, repeats, min_seconds, dtype=None):
    n = BATCH * CNN_STEPS
    x, y = _data(n, shape=RGB_SHAPE)
    model = cnnrgb_fastnn(dtype)
    name = "cnnrgb64" if dtype in (None, "float32") else f"cnnrgb64-{dtype}"
    common.training_vs_torch(report, name, threads, repeats, min_seconds, model, cnnrgb_torch(), x, y, BATCH)
    if common.DEVICE == "cpu":
        layer_times(model, x[:BATCH], y[:BATCH], steps=max(3, repeats))


def bench_infer_cnn(report, threads, repeats, min_seconds):
    common.inference_vs_torch(report, "infer-cnn", threads, repeats, min_seconds, cnn_fastnn(), cnn_torch()[0],
                              _data(1, seed=1)[0])


def layer_times(model, x, y, steps=5, out=print):
    """Median microseconds of each layer's forward and backward inside a training step (planned
    buffers, as in fit), plus the loss and the optimizer update; printed as a table."""
    from fastnn import backend
    from fastnn.models import training_plan
    be = backend.get(model.device)
    layers = model.layers
    fused = model._fused()
    fwd = {i: [] for i in range(len(layers))}
    bwd = {i: [] for i in range(len(layers))}
    rest = {"loss": [], "optimizer": []}
    grad = be.empty((x.shape[0],) + tuple(model.output_shape), dtype=model.dtype)
    first = next((i for i, layer in enumerate(layers) if layer.params), len(layers))
    with training_plan(layers):
        for _ in range(steps + 1):                    # the first step warms up (plans the buffers)
            h = x
            for i, layer in enumerate(layers):
                t0 = time.perf_counter()
                h = layer._forward(h, True, fused and i == len(layers) - 1)
                fwd[i].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model.loss.compute(be, h, y, grad, logits=fused)
            rest["loss"].append(time.perf_counter() - t0)
            d = grad
            for i in range(len(layers) - 1, first - 1, -1):
                t0 = time.perf_counter()
                d = layers[i]._backward(d, i > first)
                bwd[i].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model.optimizer.step(be, model._flat_params, model._flat_grads, model._grad_views)
            rest["optimizer"].append(time.perf_counter() - t0)

    def med(v):
        return common.median(v[1:]) * 1e6 if len(v) > 1 else 0.0

    total = 0.0
    out(f"  per-layer step times at {fnn.get_num_threads()} thread(s), batch {x.shape[0]} (median us):")
    for i, layer in enumerate(layers):
        f, b = med(fwd[i]), med(bwd[i])
        total += f + b
        out(f"    {layer.name:<16} {type(layer).__name__:<10} forward {f:8.1f}  backward {b:8.1f}")
    for k, v in rest.items():
        total += med(v)
        out(f"    {k:<27} {med(v):8.1f}")
    out(f"    {'total':<27} {total:8.1f}  ({x.shape[0] / total * 1e6:,.0f} samples/s)")


def main(argv=None, build=cnn_fastnn):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--model", default=None, choices=("cnn64", "cnnrgb64"))
    args = parser.parse_args(argv)
    shape = (1, 28, 28)
    if args.model == "cnnrgb64":
        build, shape = cnnrgb_fastnn, RGB_SHAPE
    elif args.model == "cnn64":
        build = cnn_fastnn
    fnn.seed(0)
    x, y = _data(BATCH, shape=shape)
    for threads in map(int, args.threads.split(",")):
        fnn.set_num_threads(threads)
        layer_times(build(), x, y, steps=args.steps)


if __name__ == "__main__":
    main()
