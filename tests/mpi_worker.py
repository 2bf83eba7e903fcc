"""The MPI side of test_distributed.py: run under ``mpiexec -n 2 python mpi_worker.py MODE OUT``.

Mode ``checks`` runs every equivalence case in one launch (MPI start-up costs seconds): each
case trains a model with ``fit(distributed=True)`` on every rank and, on rank 0, the same model
(same seed, so the same initial weights and random streams) in one process at the global batch
size; rank 0 writes the measured differences to OUT (JSON) for the test to judge. Mode ``fail``
raises on rank 1 in the middle of fit (the test checks that the job ends). Mode ``plain`` is
distributed=True without mpiexec.
"""
from __future__ import annotations

import json
import os
import sys
import zlib

import numpy as np

import fastnn as fnn
from fastnn import layers as L

HERE = os.path.dirname(os.path.abspath(__file__))


def data(n, shape, classes, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n,) + shape)
    y = rng.integers(0, classes, n)
    return x, y


def mlp(opt):
    return [L.Dense(16, activation="relu"), L.Dense(3, activation="softmax")], opt


def bn_dropout(opt):
    return [L.GaussianNoise(0.1), L.Dense(16), L.BatchNormalization(momentum=0.9), L.ReLU(), L.Dropout(0.3),
            L.Dense(3, activation="softmax")], opt


def cnn_bn(opt):
    return [L.RandomFlip("horizontal"), L.Conv2D(4, 3, padding=1), L.BatchNormalization(momentum=0.8), L.ReLU(),
            L.MaxPool2D(2), L.Flatten(), L.Dropout(0.25), L.Dense(3, activation="softmax")], opt


CASES = {
    # name: (layers builder, optimizer, input shape, samples, per-rank batch, epochs, dtype, fit extras)
    "sgd_momentum": (mlp, lambda: fnn.optimizers.SGD(0.1, momentum=0.9), (8,), 64, 8, 4, "float64", {}),
    "adam": (mlp, lambda: fnn.optimizers.Adam(0.01), (8,), 64, 8, 4, "float64", {}),
    "adam_float32": (mlp, lambda: fnn.optimizers.Adam(0.01), (8,), 64, 8, 4, "float32", {}),
    "bn_dropout": (bn_dropout, lambda: fnn.optimizers.SGD(0.05, momentum=0.9), (8,), 64, 8, 4, "float64", {}),
    "cnn_bn_flip": (cnn_bn, lambda: fnn.optimizers.Adam(0.01), (1, 6, 6), 48, 6, 3, "float64", {}),
    # 101 samples at 8 per rank: 7 steps, the last global batch of 5 split 2 + 3
    # planned steps (fastnn._step_plan): Dropout offsets by global sample position, uneven parts
    "dropout_101": (lambda opt: ([L.Dense(16, activation="relu"), L.Dropout(0.3), L.Dense(3, activation="softmax")],
                                 opt), lambda: fnn.optimizers.SGD(0.05, momentum=0.9), (8,), 101, 8, 3, "float64",
                    {"shuffle": True}),
    "uneven_101": (bn_dropout, lambda: fnn.optimizers.SGD(0.05, momentum=0.9), (8,), 101, 8, 3, "float64", {}),
    # 17 samples at 8 per rank: the last global batch has one sample, rank 0's part is empty
    "empty_part": (bn_dropout, lambda: fnn.optimizers.Adam(0.01), (8,), 17, 8, 3, "float64", {}),
    "shuffled_weighted": (bn_dropout, lambda: fnn.optimizers.Adam(0.01), (8,), 64, 8, 3, "float64",
                          {"shuffle": True, "class_weight": {0: 2.0, 1: 0.5}, "validation_split": 0.25}),
    "sample_weight_l2": (lambda opt: ([L.Dense(16, activation="relu", kernel_regularizer=fnn.regularizers.l2(0.01)),
                                       L.Dense(3, activation="softmax")], opt),
                         lambda: fnn.optimizers.SGD(0.1, momentum=0.9, clipnorm=1.0), (8,), 64, 8, 3, "float64",
                         {"sample_weight": True}),
}


def build(case, seed):
    make, opt, shape, n, batch, epochs, dtype, extras = CASES[case]
    fnn.seed(seed)
    layers, optimizer = make(opt())
    model = fnn.Sequential(layers, input_shape=shape, dtype=dtype)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=("accuracy",))
    return model


def fit_args(case, world):
    make, opt, shape, n, batch, epochs, dtype, extras = CASES[case]
    x, y = data(n, shape, 3, seed=7)
    kwargs = {"epochs": epochs, "shuffle": False, "verbose": 0}
    kwargs.update(extras)
    if kwargs.pop("sample_weight", False):
        kwargs["sample_weight"] = np.random.default_rng(3).uniform(0.2, 2.0, n)
    return x, y, batch * world, kwargs


def crc(model):
    return zlib.crc32(b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights()))


def rel_diff(a, b):
    """The largest difference of two weight lists relative to the largest weight (a bias that
    should stay 0, before a BatchNormalization, holds rounding noise: no per-array ratio)."""
    scale = max(float(np.max(np.abs(v))) for v in b)
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b)) / scale


def checks(out_path, cases=CASES, extra=True):
    from mpi4py import MPI

    import fastnn.distributed as fd
    comm = MPI.COMM_WORLD
    rank, world = fd.rank(), fd.size()
    results = {"size": world, "threads": fnn.get_num_threads(), "affinity": sorted(os.sched_getaffinity(0)),
               "cases": {}}
    for i, case in enumerate(cases):
        seed = 100 + i
        x, y, global_batch, kwargs = fit_args(case, world)
        model = build(case, seed + rank)       # different initial weights: fit must broadcast rank 0's
        hist = model.fit(x, y, batch_size=global_batch // world, distributed=True, **kwargs)
        crcs = comm.allgather(crc(model))
        if rank == 0:
            single = build(case, seed)
            ref = single.fit(x, y, batch_size=global_batch, **kwargs)
            results["cases"][case] = {
                "weights_rel_diff": rel_diff(model.get_weights(), single.get_weights()),
                "identical_across_ranks": len(set(crcs)) == 1,
                "history": hist.history, "single_history": ref.history,
                "streams": [[str(layer.counter)] for layer in model.layers if hasattr(layer, "counter")],
                "single_streams": [[str(layer.counter)] for layer in single.layers if hasattr(layer, "counter")],
                "iterations": [model.optimizer.iterations, single.optimizer.iterations],
                "dtype": str(model.dtype)}
    if not extra:
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(results, f)
        return
    # every rank takes the same number of steps: count them with a callback on each rank
    steps = _count_steps()
    results["steps_per_rank"] = comm.allgather(steps)
    results["files"] = _checkpoint_files(rank, os.path.dirname(out_path))
    _progress_bar()
    results["timings"] = fd.timings()
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)


def _count_steps():
    class Count(fnn.callbacks.Callback):
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            Count.steps += 1
    x, y = data(101, (8,), 3, seed=1)
    model = build("uneven_101", 5)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[Count()], distributed=True)
    return Count.steps


def _checkpoint_files(rank, folder):
    x, y = data(40, (8,), 3, seed=2)
    model = build("sgd_momentum", 6)
    # each rank names its own files: only rank 0's may appear
    ck = fnn.callbacks.ModelCheckpoint(os.path.join(folder, f"ck-rank{rank}-{{epoch}}.fnn"), monitor="loss")
    log = fnn.callbacks.CSVLogger(os.path.join(folder, f"log-rank{rank}.csv"))
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[ck, log], distributed=True)
    MPI_barrier()
    return sorted(os.listdir(folder))


def _progress_bar():
    x, y = data(32, (8,), 3, seed=4)
    model = build("sgd_momentum", 8)
    model.fit(x, y, batch_size=4, epochs=1, verbose=1, distributed=True)   # prints "Epoch 1/1" on rank 0 only
    sys.stdout.flush()


def MPI_barrier():
    from mpi4py import MPI
    MPI.COMM_WORLD.Barrier()


def fail(out_path):
    import fastnn.distributed as fd

    class Boom(fnn.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if fd.rank() == 1 and batch == 3:
                with open(out_path + ".raised", "w") as f:    # the test's proof that it got here
                    f.write("raised")
                raise RuntimeError("rank 1 fails on purpose")
    x, y = data(4000, (8,), 3, seed=1)
    model = build("sgd_momentum", 1)
    model.fit(x, y, batch_size=8, epochs=1000, verbose=0, callbacks=[Boom()], distributed=True)
    with open(out_path, "w") as f:          # never reached: the job is aborted
        f.write("finished")


def gpu(out_path):
    """A GPU model on the CuPy emulator (tests/cuda_emu.py): the gradients and the batch
    normalization sums go through host buffers."""
    sys.path.insert(0, HERE)
    import cuda_emu

    class Patch:
        def setitem(self, mapping, key, value):
            mapping[key] = value
    cuda_emu.install(Patch())
    from mpi4py import MPI

    import fastnn.distributed as fd
    rank, world = fd.rank(), fd.size()
    results = {}
    for case in ("bn_dropout", "empty_part"):
        x, y, global_batch, kwargs = fit_args(case, world)
        model = build(case, 11 + rank).to("cuda")
        model.fit(x, y, batch_size=global_batch // world, distributed=True, **kwargs)
        crcs = MPI.COMM_WORLD.allgather(crc(model))
        if rank == 0:
            single = build(case, 11)
            single.fit(x, y, batch_size=global_batch, **kwargs)
            results[case] = {"weights_rel_diff": rel_diff(model.get_weights(), single.get_weights()),
                             "identical_across_ranks": len(set(crcs)) == 1, "device": model.device}
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)


def plain(out_path):
    x, y, global_batch, kwargs = fit_args("bn_dropout", 1)
    a, b = build("bn_dropout", 3), build("bn_dropout", 3)
    ha = a.fit(x, y, batch_size=global_batch, distributed=True, **kwargs)
    hb = b.fit(x, y, batch_size=global_batch, **kwargs)
    with open(out_path, "w") as f:
        json.dump({"same_weights": crc(a) == crc(b), "same_history": ha.history == hb.history}, f)


def nan(out_path):
    """A NaN in the last sample on rank 1 only: each process checks its share of the samples, and
    every one must raise ValueError (rank 0 sees none itself)."""
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.rank
    x, y, global_batch, kwargs = fit_args("adam", 2)
    if rank == 1:
        x = x.copy()
        x[-1, 0] = np.nan
    model = build("adam", 3)
    try:
        model.fit(x, y, batch_size=global_batch // 2, distributed=True, **kwargs)
        got = "no error"
    except ValueError as err:
        got = str(err)
    got = MPI.COMM_WORLD.allgather(got)
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(got, f)


def three(out_path):
    """Three processes (the shared-memory sum of more than two buffers; an empty part on two)."""
    checks(out_path, cases=["bn_dropout", "cnn_bn_flip", "empty_part", "uneven_101"], extra=False)


if __name__ == "__main__":
    {"checks": checks, "fail": fail, "gpu": gpu, "plain": plain, "three": three, "nan": nan}[sys.argv[1]](sys.argv[2])
