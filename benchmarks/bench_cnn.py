"""cnn64 and infer-cnn (shared/BENCHMARKS.md): fastnn against PyTorch CPU, plus a per-layer
forward/backward timing of the fastnn training step so the slowest part is visible.

    python benchmarks/run.py --workloads cnn64,infer-cnn --threads 1,2
    python benchmarks/bench_cnn.py --threads 2          # the per-layer table only
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


def cnn_fastnn():
    L = fnn.layers
    model = fnn.Sequential([
        L.Conv2D(16, 3, padding=1, activation="relu"), L.MaxPool2D(2),
        L.Conv2D(32, 3, padding=1, activation="relu"), L.MaxPool2D(2),
        L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.2), L.Dense(10),
    ], input_shape=(1, 28, 28))
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


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, n)


def bench_cnn64(report, threads, repeats, min_seconds):
    n = BATCH * CNN_STEPS
    x, y = _data(n)
    model = cnn_fastnn()
    common.training_vs_torch(report, "cnn64", threads, repeats, min_seconds, model, cnn_torch(), x, y, BATCH)
    if common.DEVICE == "cpu":         # per-layer wall times mean nothing for asynchronous GPU work
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
    args = parser.parse_args(argv)
    fnn.seed(0)
    x, y = _data(BATCH)
    for threads in map(int, args.threads.split(",")):
        fnn.set_num_threads(threads)
        layer_times(build(), x, y, steps=args.steps)


if __name__ == "__main__":
    main()
