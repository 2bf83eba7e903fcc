"""fork() after threaded kernels: children (and their children) compute with threads and get the
parent's results (csrc/core/threads.c releases the OpenMP pool before each fork)."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time

import numpy as np
import pytest

import fastnn as fnn
from fastnn import _core
from fastnn.layers import Dense, Dropout

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not _core.openmp_enabled(),
                                reason="needs os.fork and an OpenMP build")
TIMEOUT = 30.0     # generous on a loaded 2-core machine; a hang is what this guards against


def _model(seed: int):
    fnn.seed(seed)
    model = fnn.Sequential([Dense(256, activation="relu"), Dropout(0.2), Dense(10, activation="softmax")],
                           input_shape=(64,))
    model.compile(optimizer=fnn.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    return model


def _data(rng, n=2048):
    return rng.standard_normal((n, 64)).astype(np.float32), rng.integers(0, 10, n)


def _work(model, x, y):
    """What each process computes after the fork: a threaded predict of a large batch and one
    epoch of fit (weights after it)."""
    pred = model.predict(x, batch_size=1024)
    model.fit(x, y, batch_size=256, epochs=1, shuffle=False, verbose=0)
    return [pred] + model.get_weights()


def _wait_all(pids, deadline):
    """Exit statuses of the children; kills and fails on any still running at the deadline."""
    statuses = {}
    while len(statuses) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in statuses:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    hung = [p for p in pids if p not in statuses]
    for pid in hung:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert not hung, f"{len(hung)} forked children hung (OpenMP pool not reset after fork?)"
    return statuses


def _child(body) -> None:
    """Run body in a forked child and leave with its status, never returning into pytest."""
    code = 1
    try:
        code = body()
    except BaseException:   # report, then leave: the child must not run the rest of the test
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def test_fork_after_threaded_fit_and_predict(rng, tmp_path):
    fnn.set_num_threads(2)
    x, y = _data(rng)
    model = _model(int(rng.integers(1 << 30)))
    model.fit(x, y, batch_size=256, epochs=1, verbose=0)    # the parent's pool now has workers
    model.predict(x, batch_size=1024)

    def child_body(i):
        def body():
            fnn.set_num_threads(2)
            out = _work(model, x, y)
            if i == 0:   # a grandchild, forked from a child that has used its own pool
                pid = os.fork()
                if pid == 0:
                    _child(lambda: (np.savez(tmp_path / "grandchild.npz", *_work(model, x, y)), 0)[1])
                if _wait_all([pid], time.monotonic() + TIMEOUT)[pid] != 0:
                    return 3
            np.savez(tmp_path / f"child{i}.npz", *out)
            return 0
        return body

    t0 = time.monotonic()
    pids = []
    for i in range(4):
        pid = os.fork()
        if pid == 0:
            _child(child_body(i))
        pids.append(pid)
    statuses = _wait_all(pids, t0 + TIMEOUT)
    assert all(code == 0 for code in statuses.values()), statuses

    # The parent, after the forks, computes the same thing (and its own pool still works).
    expect = _work(model, x, y)
    for name in [f"child{i}" for i in range(4)] + ["grandchild"]:
        if name == "grandchild":     # forked after its parent's _work: one more round
            expect = _work(model, x, y)
        with np.load(tmp_path / f"{name}.npz") as got:
            arrays = [got[f"arr_{j}"] for j in range(len(expect))]
        for a, b in zip(arrays, expect):
            np.testing.assert_array_equal(a, b, err_msg=name)


_MP = {}   # what the pool's forked workers inherit (models are not pickled to them)


def _mp_predict(i):
    fnn.set_num_threads(2)
    return _MP["model"].predict(_MP["x"], batch_size=512)


def test_multiprocessing_fork_pool(rng):
    fnn.set_num_threads(2)
    x, _ = _data(rng, 1024)
    model = _model(int(rng.integers(1 << 30)))
    expect = model.predict(x, batch_size=512)      # threads used before the pool forks
    _MP.update(model=model, x=x)
    ctx = multiprocessing.get_context("fork")
    try:
        with ctx.Pool(4) as pool:
            outs = pool.map_async(_mp_predict, range(8)).get(timeout=TIMEOUT)
    finally:
        _MP.clear()
    for out in outs:
        np.testing.assert_array_equal(out, expect)
    np.testing.assert_array_equal(model.predict(x, batch_size=512), expect)


def test_threads_usable_after_fork():
    """The fallback flag stays clear where the OpenMP runtime can release its pool."""
    fnn.set_num_threads(2)
    fnn.ops.matmul(np.ones((300, 300), np.float32), np.ones((300, 300), np.float32))
    pid = os.fork()
    if pid == 0:
        _child(lambda: 0 if _core.threads_usable() and fnn.get_num_threads() == 2 else 5)
    assert _wait_all([pid], time.monotonic() + TIMEOUT)[pid] == 0
