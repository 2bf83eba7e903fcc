"""Recurrent training workloads rnn64 / lstm64 / gru64 (shared/BENCHMARKS.md): input (N=64, T=28,
F=28), SimpleRNN/LSTM/GRU(128), last step -> Dense(10), softmax cross-entropy, SGD momentum 0.9;
fastnn ``fit`` against a PyTorch loop over nn.RNN/LSTM/GRU(batch_first=True) + Linear.

    python benchmarks/run.py --workloads lstm64,gru64,rnn64 --threads 2
"""
from __future__ import annotations

import common
import numpy as np

import fastnn as fnn

BATCH, STEPS, FEATURES, UNITS, CLASSES = 64, 28, 28, 128, 10
RNN_STEPS = 10          # training steps per timed block (one fit epoch of 10 batches)
CELLS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


def rnn_fastnn(cell):
    layer = getattr(fnn.layers, CELLS[cell])(UNITS)
    model = fnn.Sequential([layer, fnn.layers.Dense(CLASSES)], input_shape=(STEPS, FEATURES))
    model.compile(optimizer=fnn.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss=fnn.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=())
    return model


def rnn_torch(cell):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](FEATURES, UNITS, batch_first=True)
            self.head = nn.Linear(UNITS, CLASSES)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    model = Net()
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss()


def bench_rnn(report, threads, repeats, min_seconds, cell):
    rng = np.random.default_rng(0)
    n = BATCH * RNN_STEPS
    x = rng.standard_normal((n, STEPS, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, n)
    common.training_vs_torch(report, f"{cell}64", threads, repeats, min_seconds, rnn_fastnn(cell), rnn_torch(cell),
                             x, y, BATCH)
