"""Short GEMM benchmark: fastnn's C GEMM (via ctypes, libfnngemm.so from `make lib`) against
numpy.matmul (OpenBLAS) in the same process, interleaved, with a pause when switching
libraries so neither one's spinning worker threads steal a core from the other.

    python3 bench.py [--threads 1,2] [--arch avx512] [--dtype float32] [--shapes nn|1024|all]
                     [--reps 5] [--time 0.15]
Prints GFLOP/s (median of reps) and the ratio fastnn / numpy per shape, and the geometric
mean over the five gemmnn shapes.
"""
import argparse
import ctypes
import math
import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.environ.get("FNN_GEMM_LIB", "/tmp/fnn_gemm_build/libfnngemm.so")

NN_SHAPES = [(128, 784, 256), (128, 256, 128), (64, 1568, 128), (784, 256, 128), (256, 512, 512)]
# backward shapes of the same layers: dW = X^T dY (trans_a), dX = dY W^T (trans_b)
BWD_SHAPES = [(784, 128, 256, 1), (256, 128, 128, 1), (128, 256, 784, 2), (128, 128, 256, 2)]

# one training step of the mlp workload (784-256-128-10) at batch B: forward x W,
# dW = x^T dy (trans_a), dx = dy W^T (trans_b)
def mlp_shapes(bs):
    out = []
    for (i, o) in ((784, 256), (256, 128), (128, 10)):
        out += [(bs, i, o, 0), (i, bs, o, 1)]
        if i != 784:
            out.append((bs, o, i, 2))
    return out


ARCHS = {"generic": 0, "avx2": 1, "avx512": 2}


def load():
    lib = ctypes.CDLL(LIB)
    P = ctypes.c_void_p
    i64 = ctypes.c_int64
    for name, t in (("fnn_gemm_f32_repeat", ctypes.c_float), ("fnn_gemm_f64_repeat", ctypes.c_double)):
        f = getattr(lib, name)
        f.argtypes = [ctypes.c_int, ctypes.c_int, i64, i64, i64, t, t, P, i64, P, i64, P, P, i64, ctypes.c_int]
        f.restype = ctypes.c_int
    lib.fnn_arch_set.argtypes = [ctypes.c_int]
    return lib


def timeit(fn, budget, per_call=1):
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += per_call
        t = time.perf_counter() - t0
        if t > budget:
            return t / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--arch", default="avx512")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--shapes", default="nn")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--time", type=float, default=0.15)
    args = ap.parse_args()

    lib = load()
    assert lib.fnn_arch_set(ARCHS[args.arch]) == 0
    dt = np.dtype(args.dtype)
    gemm = lib.fnn_gemm_f32_repeat if dt == np.float32 else lib.fnn_gemm_f64_repeat
    shapes = []
    if args.shapes in ("nn", "all"):
        shapes += [(m, k, n, 0) for (m, k, n) in NN_SHAPES]
    if args.shapes in ("bwd", "all"):
        shapes += BWD_SHAPES
    if args.shapes in ("1024", "all"):
        shapes += [(1024, 1024, 1024, 0)]
    if args.shapes.startswith("mlp"):
        shapes += mlp_shapes(int(args.shapes[3:]))
    if args.shapes.startswith("x"):  # x m,k,n[,flags]
        v = [int(s) for s in args.shapes[1:].split(",")]
        shapes += [tuple(v + [0] * (4 - len(v)))]

    rng = np.random.default_rng()
    for nt in [int(s) for s in args.threads.split(",")]:
        gm_f, gm_n = [], []
        for (m, k, n, flags) in shapes:
            a = rng.standard_normal((k, m) if flags & 1 else (m, k)).astype(dt)
            b = rng.standard_normal((n, k) if flags & 2 else (k, n)).astype(dt)
            c = np.empty((m, n), dt)
            c2 = np.empty((m, n), dt)
            lda, ldb = a.shape[1], b.shape[1]
            pa, pb, pc = a.ctypes.data, b.ctypes.data, c.ctypes.data
            opa = a.T if flags & 1 else a
            opb = b.T if flags & 2 else b

            # fastnn is called REPS times per ctypes call (ctypes costs microseconds per call,
            # the Cython binding well under one); numpy is timed call by call from Python.
            reps = max(1, min(100, int(2e6 / (m * n * k) * 50)))

            def f_fnn(reps=reps, flags=flags, m=m, n=n, k=k, pa=pa, lda=lda, pb=pb, ldb=ldb, pc=pc, nt=nt):
                gemm(reps, flags, m, n, k, 1.0, 0.0, pa, lda, pb, ldb, None, pc, n, nt)

            def f_np(opa=opa, opb=opb, c2=c2):
                np.matmul(opa, opb, out=c2)

            with threadpool_limits(nt):
                f_fnn()
                f_np()
                err = float(np.max(np.abs(c - c2)) / (np.max(np.abs(c2)) + 1e-30))
                tf, tn = [], []
                for _ in range(args.reps):
                    time.sleep(0.3)
                    tf.append(timeit(f_fnn, args.time, reps))
                    time.sleep(0.3)
                    tn.append(timeit(f_np, args.time))
            flop = 2.0 * m * n * k
            gf, gn = flop / statistics.median(tf) / 1e9, flop / statistics.median(tn) / 1e9
            if (m, k, n) in NN_SHAPES and flags == 0:
                gm_f.append(gf)
                gm_n.append(gn)
            print(f"threads={nt} {args.arch:7s} {dt.name} m={m:5d} k={k:5d} n={n:5d} flags={flags} "
                  f"fastnn {gf:7.1f}  numpy {gn:7.1f} GFLOP/s  ratio {gf / gn:5.3f}  relerr {err:.1e}",
                  flush=True)
        if len(gm_f) == len(NN_SHAPES):
            g1 = math.exp(sum(map(math.log, gm_f)) / len(gm_f))
            g2 = math.exp(sum(map(math.log, gm_n)) / len(gm_n))
            print(f"threads={nt} gemmnn geomean fastnn {g1:.1f} numpy {g2:.1f} ratio {g1 / g2:.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
