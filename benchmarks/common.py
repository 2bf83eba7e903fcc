"""Shared helpers of the side-by-side benchmarks: interleaved timing, thread control, reporting.

Every measurement runs fastnn and its peer in the same process, alternating blocks after a
warm-up, with a pause before each block (idle OpenBLAS/OpenMP/PyTorch workers spin for ~0.2 s and
would steal a core from the next library on a 2-core machine). Reported: median per block and the
ratio fastnn/peer of throughputs (> 1 means fastnn is faster).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time

PAUSE = 0.3
# "cuda" (run.py --device cuda): the models train on the GPU, fastnn against PyTorch CUDA eager.
DEVICE = "cpu"
# run.py --dtype mixed_bfloat16: fastnn models are built under that policy and each training
# workload also times the same fastnn model in float32 and PyTorch under torch.autocast (bfloat16).
MIXED = False


def sync() -> None:
    """Wait for the GPU (nothing on the CPU): a timed block ends when its work is done."""
    if DEVICE == "cuda":
        import cupy
        import torch
        cupy.cuda.runtime.deviceSynchronize()
        torch.cuda.synchronize()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def set_threads(n: int) -> None:
    import fastnn as fnn
    fnn.set_num_threads(n)
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass


def numpy_threads(n: int):
    """Context manager limiting numpy's BLAS threads (threadpoolctl)."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=n, user_api="blas")


def time_block(fn, min_seconds: float) -> float:
    """Seconds per call of fn, running it for at least min_seconds."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def interleaved(fns: dict, repeats: int, min_seconds: float) -> dict:
    """{name: [seconds per call, one per repeat]}, the named functions alternating."""
    for fn in fns.values():          # warm-up: caches, thread pools, buffers
        time_block(fn, min_seconds / 2)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(PAUSE)
            times[name].append(time_block(fn, min_seconds))
    return times


def median(values) -> float:
    return statistics.median(values)


def training_vs_torch(report, name, threads, repeats, min_seconds, model, torch_parts, x, y, batch):
    """Interleave one epoch of ``model.fit`` over (x, y) with the same batches through a plain
    PyTorch loop (zero_grad, forward, loss, backward, step); report samples/s of both."""
    import torch
    tmodel, opt, lossf = torch_parts
    tmodel.train()
    n = len(x)
    tx = [torch.from_numpy(x[i:i + batch]) for i in range(0, n, batch)]
    ty = [torch.from_numpy(y[i:i + batch]) for i in range(0, n, batch)]
    if DEVICE == "cuda":
        # Both start from data in host memory: fit moves the epoch's samples itself, PyTorch's
        # batches are moved here once (its parameters move in place, the optimizer keeps them).
        model.to("cuda")
        tmodel.cuda()
        tx, ty = [t.cuda() for t in tx], [t.cuda() for t in ty]

    def run_fastnn():
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        sync()

    def run_torch():
        for xb, yb in zip(tx, ty):
            opt.zero_grad()
            lossf(tmodel(xb), yb).backward()
            opt.step()
        sync()

    set_threads(threads)
    fns = {"fastnn": run_fastnn, "torch": run_torch}
    if MIXED:
        fns.update(_mixed_peers(model, (tmodel, opt, lossf), x, y, batch, tx, ty))
    t = interleaved(fns, repeats, min_seconds)
    if not MIXED:
        report.add(name, threads, "samples/s", n / median(t["fastnn"]), "torch", n / median(t["torch"]))
        return
    for peer in ("torch", "torch-ac", "fastnn32"):
        report.add(name + "-bf16", threads, "samples/s", n / median(t["fastnn"]), peer, n / median(t[peer]))


def _mixed_peers(model, torch_parts, x, y, batch, tx, ty) -> dict:
    """For --dtype mixed_bfloat16: the same fastnn model in float32 ("fastnn32") and a copy of the
    PyTorch model trained under torch.autocast("cpu", dtype=torch.bfloat16) ("torch-ac")."""
    import copy

    import torch

    import fastnn as fnn
    twin = fnn.Sequential([type(layer)(**{k: v for k, v in layer.get_config().items() if k != "name"})
                           for layer in model.layers], input_shape=model.input_shape, dtype="float32")
    twin.compile(optimizer=copy.deepcopy(model.optimizer), loss=model.loss, metrics=model.metrics)
    tmodel, opt, lossf = torch_parts
    amodel = copy.deepcopy(tmodel)
    aopt = type(opt)(amodel.parameters(), **opt.defaults)

    def run_autocast():
        for xb, yb in zip(tx, ty):
            aopt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = lossf(amodel(xb), yb)
            loss.backward()
            aopt.step()

    return {"torch-ac": run_autocast, "fastnn32": lambda: twin.fit(x, y, batch_size=batch, epochs=1, verbose=0)}


def inference_vs_torch(report, name, threads, repeats, min_seconds, model, tmodel, x):
    """Interleave ``model.predict(x)`` with the PyTorch model under ``no_grad``; report µs per call."""
    import torch
    tmodel.eval()
    tx = torch.from_numpy(x)

    def run_torch():
        with torch.no_grad():
            tmodel(tx)

    set_threads(threads)
    t = interleaved({"fastnn": lambda: model.predict(x), "torch": run_torch}, repeats, min_seconds)
    report.add(name, threads, "us/call", median(t["fastnn"]) * 1e6, "torch", median(t["torch"]) * 1e6,
               higher_is_better=False)


class Report:
    """Collects rows, prints a table, writes JSON lines."""

    def __init__(self, path: str | None):
        self.rows = []
        self.path = path
        import fastnn as fnn
        cfg = fnn._info.config()
        self.meta = {"cpu": cpu_model(), "cores": os.cpu_count(), "fastnn_variant": cfg["kernel_variant"],
                     "bf16_variant": cfg["bf16_variant"], "openmp": cfg["openmp"], "python": platform.python_version()}
        try:
            import numpy
            self.meta["numpy"] = numpy.__version__
            import torch
            self.meta["torch"] = torch.__version__
            if DEVICE == "cuda":
                import cupy
                self.meta["gpu"] = torch.cuda.get_device_name()
                self.meta["cupy"] = cupy.__version__
        except ImportError:
            pass

    def add(self, workload, threads, unit, fastnn_value, peer_name, peer_value, higher_is_better=True, **extra):
        ratio = fastnn_value / peer_value if higher_is_better else peer_value / fastnn_value
        row = {"workload": workload, "threads": threads, "unit": unit, "fastnn": fastnn_value,
               "peer": peer_name, "peer_value": peer_value, "ratio": ratio, **extra, **self.meta}
        self.rows.append(row)
        print(f"{workload:<14} {threads:>2} thr  fastnn {fastnn_value:>12,.1f}  {peer_name:<8} {peer_value:>12,.1f} "
              f"{unit:<12} ratio {ratio:5.2f}", flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
