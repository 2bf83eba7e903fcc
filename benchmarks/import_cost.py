"""Cost of ``import fastnn`` over a bare interpreter (time and resident memory), next to numpy
and torch, each measured in fresh subprocesses (median of 5).

    python benchmarks/import_cost.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys

PROBE = r"""
import resource, sys, time
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
base = rss_mb()
t = time.perf_counter()
__import__(sys.argv[1])
print(time.perf_counter() - t, rss_mb() - base)
"""


def measure(module: str, runs: int = 5):
    times, mems = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, check=True)
        t, m = map(float, out.stdout.split())
        times.append(t)
        mems.append(m)
    return statistics.median(times), statistics.median(mems)


def main():
    for module in ("numpy", "fastnn", "torch"):
        try:
            t, m = measure(module)
        except subprocess.CalledProcessError:
            print(f"{module:<8} not importable")
            continue
        print(f"import {module:<8} {t:6.3f} s  {m:7.1f} MB over a bare interpreter")


if __name__ == "__main__":
    main()
