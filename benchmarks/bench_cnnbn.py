"""cnnbn64 and infer-cnnbn: the cnn64 network with BatchNormalization after each convolution
(Conv2D -> BatchNormalization -> ReLU -> MaxPool2D, twice), against PyTorch CPU with
nn.BatchNorm2d; training samples/s and batch-1 predict (where fastnn's inference plan folds each
BatchNormalization into its convolution and the ReLU into the convolution's epilogue).

    python benchmarks/run.py --workloads cnnbn64,infer-cnnbn --threads 1,2
    python benchmarks/bench_cnnbn.py --threads 2          # the per-layer table only
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_cnn  # noqa: E402
import common  # noqa: E402

import fastnn as fnn  # noqa: E402


def cnnbn_fastnn(dtype=None):
    L = fnn.layers
    model = fnn.Sequential([
        L.Conv2D(16, 3, padding=1), L.BatchNormalization(), L.ReLU(), L.MaxPool2D(2),
        L.Conv2D(32, 3, padding=1), L.BatchNormalization(), L.ReLU(), L.MaxPool2D(2),
        L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.2), L.Dense(10),
    ], input_shape=(1, 28, 28), dtype=dtype)
    return bench_cnn.compile_cnn(model)


def cnnbn_torch():
    import torch
    from torch import nn
    # Keras' momentum 0.99 is torch's 0.01; epsilon as Keras' default
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16, eps=1e-3, momentum=0.01), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32, eps=1e-3, momentum=0.01), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss()


def bench_cnnbn64(report, threads, repeats, min_seconds):
    n = bench_cnn.BATCH * bench_cnn.CNN_STEPS
    x, y = bench_cnn._data(n)
    model = cnnbn_fastnn()
    common.training_vs_torch(report, "cnnbn64", threads, repeats, min_seconds, model, cnnbn_torch(), x, y,
                             bench_cnn.BATCH)
    if common.DEVICE == "cpu":
        bench_cnn.layer_times(model, x[:bench_cnn.BATCH], y[:bench_cnn.BATCH], steps=max(3, repeats))


def bench_infer_cnnbn(report, threads, repeats, min_seconds):
    common.inference_vs_torch(report, "infer-cnnbn", threads, repeats, min_seconds, cnnbn_fastnn(),
                              cnnbn_torch()[0], bench_cnn._data(1, seed=1)[0])


if __name__ == "__main__":
    bench_cnn.main(build=cnnbn_fastnn)
