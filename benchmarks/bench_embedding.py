"""Embedding training workload emb64: integer sequences (N=64, T=40) over a vocabulary of 1000,
Embedding(1000, 64) -> LSTM(128), last step -> Dense(2) softmax, cross-entropy, SGD momentum 0.9;
fastnn ``fit`` against a PyTorch loop over nn.Embedding + nn.LSTM(batch_first=True) + nn.Linear.

    python benchmarks/run.py --workloads emb64 --threads 1,2
"""
from __future__ import annotations

import common
import numpy as np

import fastnn as fnn

BATCH, STEPS, VOCAB, DIM, UNITS, CLASSES = 64, 40, 1000, 64, 128, 2
EMB_STEPS = 10          # training steps per timed block (one fit epoch of 10 batches)


def emb_fastnn():
    model = fnn.Sequential([fnn.layers.Embedding(VOCAB, DIM), fnn.layers.LSTM(UNITS),
                            fnn.layers.Dense(CLASSES, activation="softmax")], input_shape=(STEPS,))
    model.compile(optimizer=fnn.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=())
    return model


def emb_torch():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, DIM)
            self.rnn = nn.LSTM(DIM, UNITS, batch_first=True)
            self.head = nn.Linear(UNITS, CLASSES)

        def forward(self, x):
            out, _ = self.rnn(self.emb(x))
            return self.head(out[:, -1])      # logits; CrossEntropyLoss applies the softmax

    model = Net()
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss()


def bench_emb64(report, threads, repeats, min_seconds):
    rng = np.random.default_rng(0)
    n = BATCH * EMB_STEPS
    x = rng.integers(0, VOCAB, (n, STEPS))          # int64, as both libraries take it
    y = rng.integers(0, CLASSES, n)
    common.training_vs_torch(report, "emb64", threads, repeats, min_seconds, emb_fastnn(), emb_torch(), x, y, BATCH)
