"""Data-parallel training over MPI: ``fit(..., distributed=True)`` on every process of an MPI job.

Needs mpi4py and an MPI library (``pip install "fastnn[mpi]"`` installs both from wheels); the rest
of fastnn never imports this module or mpi4py unless a distributed fit asks for it.

Launch the same script on every process::

    mpiexec -n 2 python train.py          # as root in a container, Open MPI also needs
                                          # OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

and call ``model.fit(x, y, batch_size=b, distributed=True)`` with the same arrays everywhere.
The model is Horovod's (and PyTorch DDP's): every process holds the whole model, computes the
gradient of its part of each global batch, and the gradients are added over the processes in one
in-place ``Allreduce`` of the model's flat gradient buffer before the optimizer update, which
every process then applies to identical weights. See ``Sequential.fit`` and the README for the
exact slicing and what is reproducible.

Examples
--------
>>> import fastnn.distributed as fd      # doctest: +SKIP
>>> fd.rank(), fd.size()                 # doctest: +SKIP
(0, 1)
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import zlib

import numpy as np

from . import _config, backend

__all__ = ["rank", "size", "timings"]

# Environment variables a launcher sets in each process it starts (Open MPI, MPICH/Hydra and
# Intel MPI, MVAPICH), read without importing mpi4py (which would initialise MPI).
_LAUNCH_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
_INSTALL_HINT = 'fastnn.distributed needs mpi4py and an MPI library: pip install "fastnn[mpi]"'

_world = None


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return MPI


def rank() -> int:
    """This process's rank in ``MPI.COMM_WORLD`` (0 in a plain, single-process run)."""
    return _communicator().rank


def size() -> int:
    """The number of processes in ``MPI.COMM_WORLD`` (1 in a plain, single-process run)."""
    return _communicator().size


def _communicator():
    """The job's Communicator, made on first use (it also sets the default thread count and the
    excepthook that aborts the job)."""
    global _world
    if _world is None:
        _world = Communicator(_mpi().COMM_WORLD)
    return _world


def launched_size() -> int:
    """The process count an MPI launcher announced in the environment (1 when none did)."""
    for var in _LAUNCH_SIZE_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit():
            return int(value)
    return 1


def timings() -> dict:
    """Counters of this process's distributed fits so far: ``steps`` (training steps),
    ``allreduce_seconds`` (wall time in the per-step gradient all-reduce, waiting for the other
    processes included), ``bytes`` (gradient bytes all-reduced) and ``shared_memory_steps`` (the
    steps summed in shared memory rather than by MPI_Allreduce)."""
    if _world is None:
        return {"steps": 0, "allreduce_seconds": 0.0, "bytes": 0, "shared_memory_steps": 0}
    return dict(_world.stats)


def world():
    """The communicator of a distributed fit, or None when the job has one process.

    mpi4py missing is an ImportError only when a launcher started several processes (each would
    otherwise train alone); a plain ``python train.py`` trains as an ordinary fit.
    """
    if _world is None:
        try:
            _mpi()
        except ImportError:
            if launched_size() > 1:
                raise
            return None
    comm = _communicator()
    return comm if comm.size > 1 else None


def _shared_threads(comm) -> int:
    """Threads for this process: each core it may run on, shared with the other processes on
    this machine that may run on it, counted in fractions (2 processes on 2 shared cores: 1 each;
    processes bound to their own cores: all of theirs)."""
    try:
        mine = sorted(os.sched_getaffinity(0))
    except AttributeError:          # not Linux: every process sees every core
        mine = list(range(os.cpu_count() or 1))
    everyone = [set(s) for s in comm.allgather(mine)]
    share = sum(1.0 / sum(c in s for s in everyone) for c in mine)
    return max(1, int(share + 1e-9))


class Communicator:
    """``MPI.COMM_WORLD`` with the operations a distributed fit needs."""

    def __init__(self, comm):
        self.MPI = _mpi()
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.stats = {"steps": 0, "allreduce_seconds": 0.0, "bytes": 0, "shared_memory_steps": 0}
        self._shared = {}       # (elements, dtype) -> _SharedGradients
        self.local = None
        if self.size > 1:
            self.local = comm.Split_type(self.MPI.COMM_TYPE_SHARED)
            _config.set_default_num_threads(_shared_threads(self.local))
            _install_excepthook(self)

    # ---- collectives -------------------------------------------------------------------
    def allreduce(self, buf) -> None:
        """Sum ``buf`` (a NumPy array, or a device array through a host copy) over the processes,
        in place."""
        if isinstance(buf, np.ndarray):
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
            return
        be = backend.get("cuda")
        host = np.ascontiguousarray(be.to_numpy(buf))
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        buf[...] = be.asarray(host)

    def allreduce_gradients(self, flat_base, n: int, extras: list) -> np.ndarray:
        """Sum the flat gradient buffer ``flat_base[:n]`` and the scalars ``extras`` (loss and
        metric sums, carried in the buffer's tail so a step needs one collective) over the
        processes; the gradients in place, the extras returned as float64."""
        k = len(extras)
        t0 = time.perf_counter()
        shared = self._shared.get((flat_base.size, str(flat_base.dtype)))
        if shared is not None and shared.mine is flat_base:
            host = flat_base[:n + k]
            host[n:] = [float(v) for v in extras]
            shared.allreduce(n + k)
            out = host[n:].astype(np.float64)
            self.stats["shared_memory_steps"] += 1
        elif isinstance(flat_base, np.ndarray):
            host = flat_base[:n + k]
            host[n:] = [float(v) for v in extras]
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            out = host[n:].astype(np.float64)
        else:       # a GPU model: through the host (a device all-reduce, NCCL, is a later step)
            be = backend.get("cuda")
            host = np.empty(n + k, dtype=flat_base.dtype)
            host[:n] = be.to_numpy(flat_base[:n])
            host[n:] = [float(v) for v in extras]
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            flat_base[:n] = be.asarray(host[:n])
            out = host[n:].astype(np.float64)
        self.stats["allreduce_seconds"] += time.perf_counter() - t0
        self.stats["steps"] += 1
        self.stats["bytes"] += host.nbytes
        return out

    @contextlib.contextmanager
    def shared_gradients(self, model):
        """During a fit, keep a CPU model's flat gradient buffer in memory shared by the processes
        of this machine (when the whole job runs on one machine: see _SharedGradients)."""
        mode = os.environ.get("FASTNN_ALLREDUCE", "auto").strip().lower()
        if mode not in ("auto", "mpi", "shared"):
            raise ValueError(f"FASTNN_ALLREDUCE: expected 'auto', 'mpi' or 'shared', got {mode!r}")
        private = model._flat_grads_base
        if mode == "mpi" or not isinstance(private, np.ndarray) or self.local.Get_size() != self.size:
            yield
            return
        key = (private.size, str(private.dtype))
        shared = self._shared.get(key)
        if shared is None:
            shared = self._shared[key] = _SharedGradients(self.MPI, self.local, private.size, private.dtype)
        if shared.in_use:      # a fit inside a callback of another fit: the plain all-reduce
            yield
            return
        shared.in_use = True
        model._use_grad_buffer(shared.mine)
        try:
            yield
        finally:
            private[...] = shared.mine
            model._use_grad_buffer(private)
            shared.in_use = False

    def sum(self, values) -> np.ndarray:
        """Float64 sums over the processes of a few numbers."""
        buf = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any process (the same answer on every process)."""
        return bool(self.sum([1.0 if flag else 0.0])[0] > 0)

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def same(self, value, what: str) -> None:
        """Raise ValueError on every process unless ``value`` is equal on all of them."""
        values = self.comm.allgather(value)
        bad = [r for r, v in enumerate(values) if v != values[0]]
        if bad:
            raise ValueError(f"fit(distributed=True): every process must pass the same {what}; rank 0 has "
                             f"{values[0]!r}, rank {bad[0]} has {values[bad[0]]!r}")

    def abort(self, code: int = 1) -> None:
        """End every process of the job (MPI_Abort) after this one's traceback is out."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)

    # ---- model state -------------------------------------------------------------------
    def broadcast_model(self, model) -> None:
        """Give every process rank 0's weights (moving statistics included), optimizer state and
        step count, random streams (Dropout and augmentation seeds and counters) and shuffle
        stream."""
        if model._shuffle_state is None:
            model._shuffle_state = [int(_config.rng().integers(0, 2**63 - 1)), 0]
        state = None
        if self.rank == 0:
            be = backend.get(model.device)
            opt = model.optimizer
            state = {"weights": model.get_weights(),
                     "streams": [layer.state() if hasattr(layer, "state") else None for layer in model.layers],
                     "shuffle": list(model._shuffle_state), "iterations": opt.iterations,
                     "optimizer": {k: be.to_numpy(v) for k, v in opt.state.items()}}
        state = self.bcast(state)
        if self.rank != 0:
            be = backend.get(model.device)
            model.set_weights(state["weights"])
            for layer, stream in zip(model.layers, state["streams"]):
                if stream is not None:
                    layer.load_state(stream)
            model._shuffle_state = list(state["shuffle"])
            model.optimizer.iterations = state["iterations"]
            model.optimizer.state = {k: be.asarray(np.array(v)) for k, v in state["optimizer"].items()}

    def check_replicas(self, model) -> bool:
        """Whether every process holds the same weights (a CRC of the flat parameter buffer);
        warns and returns False if not."""
        flat = backend.get(model.device).to_numpy(model._flat_params)
        crc = zlib.crc32(np.ascontiguousarray(flat).view(np.uint8))
        crcs = self.comm.allgather(crc)
        if len(set(crcs)) > 1:
            import warnings
            warnings.warn("fit(distributed=True): the processes' weights differ at the end of fit (the MPI "
                          "library's all-reduce gave different sums on different processes)", RuntimeWarning,
                          stacklevel=3)
            return False
        return True


class _SharedGradients:
    """The flat gradient buffers of all processes of one machine, in one MPI-3 shared-memory
    window (``MPI_Win_allocate_shared``), summed in place without MPI_Allreduce's copies.

    Each process owns a contiguous share of the buffer: after a barrier it adds that share over
    every process's buffer, in rank order, straight from their memory, and writes the sum into
    all of them; a second barrier ends the step. Every element is summed once, by one process,
    in a fixed order, so all processes get the same bits. A step moves each element about twice
    through memory where MPICH's shared-memory Allreduce copies it in and out of its cells several
    times: on a 2-core machine the sum of mlp128's 0.9 MB of gradients takes about a quarter of the
    time (see the README's benchmark). Used when the whole job is on one machine; across machines
    fit uses MPI_Allreduce. ``FASTNN_ALLREDUCE=mpi`` forces MPI_Allreduce everywhere.
    """

    def __init__(self, MPI, local, count: int, dtype):
        dtype = np.dtype(dtype)
        self.local, self.in_use = local, False
        self.win = MPI.Win.Allocate_shared(count * dtype.itemsize, dtype.itemsize, comm=local)
        self.bufs = []
        for q in range(local.Get_size()):
            mem, _ = self.win.Shared_query(q)
            self.bufs.append(np.frombuffer(mem, dtype=dtype, count=count))
        self.rank, self.ranks = local.Get_rank(), local.Get_size()
        self.mine = self.bufs[self.rank]
        self.mine[...] = 0
        self.tmp = np.empty(count // self.ranks + 1, dtype=dtype) if self.rank >= 2 else None
        self.win.Lock_all(MPI.MODE_NOCHECK)      # one passive epoch: Sync + Barrier order the steps

    def _barrier(self) -> None:
        self.win.Sync()
        self.local.Barrier()
        self.win.Sync()

    def allreduce(self, n: int) -> None:
        """Sum the first n elements of every process's buffer, in place, into all of them."""
        lo, hi = n * self.rank // self.ranks, n * (self.rank + 1) // self.ranks
        self._barrier()
        if hi > lo:
            out, bufs = self.mine[lo:hi], [b[lo:hi] for b in self.bufs]
            # the sum in rank order, ((b0 + b1) + b2) + ..., whichever process forms it (a + b and
            # b + a are the same bits, so ranks 0 and 1 add into their own buffer)
            acc = out if self.rank < 2 else self.tmp[:hi - lo]
            np.add(bufs[0], bufs[1], out=acc)
            for b in bufs[2:]:
                np.add(acc, b, out=acc)
            if acc is not out:
                out[...] = acc
            for q, b in enumerate(bufs):
                if q != self.rank:
                    b[...] = out
        self._barrier()


def _install_excepthook(comm: Communicator) -> None:
    """An exception that no one catches, on any process, ends the whole job (MPI_Abort) instead
    of leaving the others waiting in a collective."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        comm.abort(1)

    if getattr(sys.excepthook, "_fastnn_abort", False):
        return
    hook._fastnn_abort = True
    sys.excepthook = hook


def fail(comm: Communicator, exc: BaseException) -> None:
    """An exception inside a distributed fit: print it (with the rank) and abort the job."""
    sys.stderr.write(f"fastnn: rank {comm.rank} of {comm.size}: {type(exc).__name__} in fit(distributed=True); "
                     f"aborting the MPI job\n")
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    comm.abort(1)
