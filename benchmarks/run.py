"""Side-by-side benchmarks of fastnn against PyTorch CPU and numpy (shared/BENCHMARKS.md).

    python benchmarks/run.py                         # everything, 1 and 2 threads
    python benchmarks/run.py --workloads mlp128,gemmnn --threads 2 --repeats 7
    python benchmarks/run.py --device cuda --workloads mlp128,mlp1024,cnn64,lstm64 --threads 1
    python benchmarks/run.py --dtype mixed_bfloat16 --workloads gemm1024-bf16,mlp128,cnn64 --threads 2

Prints one line per (workload, threads) with medians and the ratio fastnn/peer (> 1: fastnn
faster); --json appends the rows (with CPU model, versions and kernel variant) as JSON lines.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_cnn  # noqa: E402
import bench_rnn  # noqa: E402
import common  # noqa: E402

import fastnn as fnn  # noqa: E402

MLP_STEPS = 20           # training steps per timed block (one fit epoch of 20 batches)
GEMMNN = [(128, 784, 256), (128, 256, 128), (64, 1568, 128), (784, 256, 128), (256, 512, 512)]


MLP_SIZES = (784, 256, 128, 10)             # mlp32 / mlp128 / mlp1024
MLPWIDE_SIZES = (3072, 512, 512, 10)        # mlpwide256 (shared/BENCHMARKS.md, version 0.2)


def mlp_fastnn(dropout=0.2, sizes=MLP_SIZES, dtype=None):
    """Dense layers of ``sizes`` (input first) with ReLU between them, Dropout after the first
    hidden layer when ``dropout``; SGD with momentum on cross-entropy from logits. dtype None: the
    default dtype, which ``--dtype`` sets (an explicit "float32" would override it)."""
    layers = []
    for i, units in enumerate(sizes[1:-1]):
        layers.append(fnn.layers.Dense(units, activation="relu"))
        if dropout and i == 0:
            layers.append(fnn.layers.Dropout(dropout))
    layers.append(fnn.layers.Dense(sizes[-1]))
    model = fnn.Sequential(layers, input_shape=(sizes[0],), dtype=dtype)
    model.compile(optimizer=fnn.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss=fnn.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=())
    return model


def mlp_torch(dropout=0.2, sizes=MLP_SIZES):
    import torch
    from torch import nn
    mods = []
    for i in range(len(sizes) - 2):
        mods += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU()]
        if dropout and i == 0:
            mods.append(nn.Dropout(dropout))
    mods.append(nn.Linear(sizes[-2], sizes[-1]))
    model = nn.Sequential(*mods)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss()


def bench_mlp(report, batch, threads, repeats, min_seconds, name=None, sizes=MLP_SIZES, dropout=0.2,
              dtype=None):
    rng = np.random.default_rng(0)
    n = batch * MLP_STEPS
    x = rng.standard_normal((n, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], n)
    common.training_vs_torch(report, name or f"mlp{batch}", threads, repeats, min_seconds,
                             mlp_fastnn(dropout, sizes, dtype), mlp_torch(dropout, sizes), x, y, batch)


def bench_mlp_sched(report, threads, repeats, min_seconds, steps=200):
    """mlp128 with a CosineDecay schedule and a ModelCheckpoint written every epoch against plain
    mlp128, both fastnn, interleaved: what the training-loop features cost (epochs of 200 steps,
    25,600 samples, so one checkpoint per 200 steps)."""
    import tempfile
    rng = np.random.default_rng(0)
    n = 128 * steps
    x = rng.standard_normal((n, 784)).astype(np.float32)
    y = rng.integers(0, 10, n)
    plain, sched = mlp_fastnn(), mlp_fastnn()
    cosine = fnn.optimizers.schedules.CosineDecay(0.01, decay_steps=10**7, warmup_target=0.02, warmup_steps=100)
    sched.compile(optimizer=fnn.optimizers.SGD(learning_rate=cosine, momentum=0.9),
                  loss=fnn.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=())
    fnn.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        ck = [fnn.callbacks.ModelCheckpoint(os.path.join(tmp, "ck-{epoch}.npz"))]
        t = common.interleaved({"plain": lambda: plain.fit(x, y, batch_size=128, epochs=1, verbose=0),
                                "sched": lambda: sched.fit(x, y, batch_size=128, epochs=1, verbose=0, callbacks=ck)},
                               repeats, min_seconds)
    report.add("mlp128-sched", threads, "samples/s", n / common.median(t["sched"]), "fastnn plain",
               n / common.median(t["plain"]))


def bench_infer_mlp(report, threads, repeats, min_seconds):
    x = np.random.default_rng(1).standard_normal((1, 784)).astype(np.float32)
    common.inference_vs_torch(report, "infer-mlp", threads, repeats, min_seconds, mlp_fastnn(), mlp_torch()[0], x)


def _gemm_pair(m, k, n, dtype, compute="float32"):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    out = np.empty((m, n), dtype=dtype)
    return (lambda: fnn.ops.matmul(a, b, out=out, compute=compute)), (lambda: np.matmul(a, b, out=out))


def bench_gemm(report, name, shapes, threads, repeats, min_seconds, dtype=np.float32):
    fnn.set_num_threads(threads)
    with common.numpy_threads(threads):
        fast, peer = [], []
        for m, k, n in shapes:
            f, p = _gemm_pair(m, k, n, dtype)
            t = common.interleaved({"fastnn": f, "numpy": p}, repeats, min_seconds)
            flops = 2.0 * m * k * n
            fast.append(flops / common.median(t["fastnn"]) / 1e9)
            peer.append(flops / common.median(t["numpy"]) / 1e9)
    geo = lambda v: math.exp(sum(map(math.log, v)) / len(v))  # noqa: E731
    suffix = "" if dtype == np.float32 else "-f64"
    report.add(name + suffix, threads, "GFLOP/s", geo(fast), "numpy", geo(peer),
               shapes=[list(s) for s in shapes], per_shape_fastnn=fast, per_shape_numpy=peer)


def bench_gemm_bf16(report, name, shapes, threads, repeats, min_seconds):
    """fnn.ops.matmul(compute="bfloat16") against numpy float32 and fastnn float32, interleaved."""
    fnn.set_num_threads(threads)
    with common.numpy_threads(threads):
        res = {"fastnn": [], "numpy": [], "fastnn32": []}
        for m, k, n in shapes:
            f32, p = _gemm_pair(m, k, n, np.float32)
            bf16, _ = _gemm_pair(m, k, n, np.float32, "bfloat16")
            t = common.interleaved({"fastnn": bf16, "numpy": p, "fastnn32": f32}, repeats, min_seconds)
            for key in res:
                res[key].append(2.0 * m * k * n / common.median(t[key]) / 1e9)
    geo = lambda v: math.exp(sum(map(math.log, v)) / len(v))  # noqa: E731
    for peer in ("numpy", "fastnn32"):
        report.add(name, threads, "GFLOP/s", geo(res["fastnn"]), peer, geo(res[peer]),
                   shapes=[list(s) for s in shapes], bf16_variant=fnn._info.config()["bf16_variant"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="gemm1024,gemmnn,gemm1024-f64,mlp128,mlp32,infer-mlp")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="minimum seconds per timed block")
    parser.add_argument("--json", default=None, help="append result rows to this JSON-lines file")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="cuda: train on the GPU against PyTorch CUDA eager (training workloads only)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "mixed_bfloat16"),
                        help="mixed_bfloat16: fastnn models under that policy; training workloads also time "
                             "fastnn float32 and PyTorch under torch.autocast(bfloat16), rows named <workload>-bf16")
    args = parser.parse_args(argv)
    common.DEVICE = args.device
    common.MIXED = args.dtype == "mixed_bfloat16"
    fnn.set_default_dtype(args.dtype)
    report = common.Report(args.json)
    print(f"# {report.meta}")
    fnn.seed(0)
    for w in args.workloads.split(","):
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r}; available: {', '.join(WORKLOADS)}")
        if args.device == "cuda" and w not in GPU_WORKLOADS:
            parser.error(f"workload {w!r} has no GPU mode; with --device cuda: {', '.join(GPU_WORKLOADS)}")
        for threads in map(int, args.threads.split(",")):
            WORKLOADS[w](report, threads, args.repeats, args.seconds)
    return report


# name -> function(report, threads, repeats, min_seconds); other modules add their workloads here.
WORKLOADS = {
    "gemm1024": lambda r, t, n, s: bench_gemm(r, "gemm1024", [(1024, 1024, 1024)], t, n, s),
    "gemm1024-f64": lambda r, t, n, s: bench_gemm(r, "gemm1024", [(1024, 1024, 1024)], t, n, s, np.float64),
    "gemmnn": lambda r, t, n, s: bench_gemm(r, "gemmnn", GEMMNN, t, n, s),
    "gemm1024-bf16": lambda r, t, n, s: bench_gemm_bf16(r, "gemm1024-bf16", [(1024, 1024, 1024)], t, n, s),
    "gemmnn-bf16": lambda r, t, n, s: bench_gemm_bf16(r, "gemmnn-bf16", GEMMNN, t, n, s),
    "mlp128": lambda r, t, n, s: bench_mlp(r, 128, t, n, s),
    "mlp32": lambda r, t, n, s: bench_mlp(r, 32, t, n, s),
    "mlp1024": lambda r, t, n, s: bench_mlp(r, 1024, t, n, s),
    "mlpwide256": lambda r, t, n, s: bench_mlp(r, 256, t, n, s, "mlpwide256", MLPWIDE_SIZES, dropout=0),
    "mlp128-sched": bench_mlp_sched,
    "infer-mlp": bench_infer_mlp,
    "cnn64": bench_cnn.bench_cnn64,
    "infer-cnn": bench_cnn.bench_infer_cnn,
    "cnnrgb64": bench_cnn.bench_cnnrgb64,
    "rnn64": lambda r, t, n, s: bench_rnn.bench_rnn(r, t, n, s, "rnn"),
    "lstm64": lambda r, t, n, s: bench_rnn.bench_rnn(r, t, n, s, "lstm"),
    "gru64": lambda r, t, n, s: bench_rnn.bench_rnn(r, t, n, s, "gru"),
}

GPU_WORKLOADS = ("mlp32", "mlp128", "mlp1024", "mlpwide256", "cnn64", "cnnrgb64", "rnn64", "lstm64", "gru64")

# Larger recurrent layers: LSTM/GRU(256), T=50, 40 features, batch 32 (benchmarks/bench_rnn.py)
WORKLOADS.update({"lstm256": lambda r, t, n, s: bench_rnn.bench_rnn(r, t, n, s, "lstm", 256),
                  "gru256": lambda r, t, n, s: bench_rnn.bench_rnn(r, t, n, s, "gru", 256)})
GPU_WORKLOADS += ("lstm256", "gru256")

# BatchNormalization (benchmarks/bench_cnnbn.py)
import bench_cnnbn  # noqa: E402

WORKLOADS.update({"cnnbn64": bench_cnnbn.bench_cnnbn64, "infer-cnnbn": bench_cnnbn.bench_infer_cnnbn})
GPU_WORKLOADS += ("cnnbn64",)


# Embedding -> LSTM on integer sequences (benchmarks/bench_embedding.py)
import bench_embedding  # noqa: E402

WORKLOADS["emb64"] = bench_embedding.bench_emb64
GPU_WORKLOADS += ("emb64",)

# scikit-learn estimators: NeuralNetClassifier vs MLPClassifier on digits (benchmarks/bench_sklearn.py)
import bench_sklearn  # noqa: E402

WORKLOADS["sklearn-digits"] = bench_sklearn.bench_sklearn_digits

if __name__ == "__main__":
    main()
