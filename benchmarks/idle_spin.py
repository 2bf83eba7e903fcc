"""CPU time fastnn's idle OpenMP workers burn after a call returns (they should sleep quickly so
an app alternating fastnn with numpy or PyTorch on 2 cores keeps both cores).

    python benchmarks/idle_spin.py        # CPU ms used while the main thread sleeps 100 ms
"""
import os
import resource
import time

import numpy as np

import fastnn as fnn


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    fnn.set_num_threads(2)
    a = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    burnt = []
    for _ in range(7):
        fnn.ops.matmul(a, a)
        c0 = cpu_seconds()
        time.sleep(0.1)
        burnt.append((cpu_seconds() - c0) * 1e3)
    print(f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}: CPU ms burnt in the 100 ms after a 2-thread call: "
          f"median {np.median(burnt):.1f}, max {max(burnt):.1f}")


if __name__ == "__main__":
    main()
