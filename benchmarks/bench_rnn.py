"""Recurrent training workloads (shared/BENCHMARKS.md), last step -> Dense(10), softmax
cross-entropy, SGD momentum 0.9; fastnn ``fit`` against a PyTorch loop over
nn.RNN/LSTM/GRU(batch_first=True) + Linear:

- rnn64 / lstm64 / gru64: input (N=64, T=28, F=28), SimpleRNN/LSTM/GRU(128);
- lstm256 / gru256: input (N=32, T=50, F=40), LSTM/GRU(256).

    python benchmarks/run.py --workloads lstm64,gru64,rnn64,lstm256,gru256 --threads 2
"""
from __future__ import annotations

import common
import numpy as np

import fastnn as fnn

CLASSES = 10
RNN_STEPS = 10          # training steps per timed block (one fit epoch of 10 batches)
CELLS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
# (batch, steps, features, units) by workload size: the 64 workloads and the 256 ones
SHAPES = {64: (64, 28, 28, 128), 256: (32, 50, 40, 256)}


def rnn_fastnn(cell, steps, features, units):
    layer = getattr(fnn.layers, CELLS[cell])(units)
    model = fnn.Sequential([layer, fnn.layers.Dense(CLASSES)], input_shape=(steps, features))
    model.compile(optimizer=fnn.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss=fnn.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=())
    return model


def rnn_torch(cell, features, units):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](features, units, batch_first=True)
            self.head = nn.Linear(units, CLASSES)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    model = Net()
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss()


def bench_rnn(report, threads, repeats, min_seconds, cell, size=64):
    batch, steps, features, units = SHAPES[size]
    rng = np.random.default_rng(0)
    n = batch * RNN_STEPS
    x = rng.standard_normal((n, steps, features)).astype(np.float32)
    y = rng.integers(0, CLASSES, n)
    common.training_vs_torch(report, f"{cell}{size}", threads, repeats, min_seconds,
                             rnn_fastnn(cell, steps, features, units), rnn_torch(cell, features, units), x, y, batch)
