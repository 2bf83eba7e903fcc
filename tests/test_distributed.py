"""Data-parallel training (fit(distributed=True), fastnn.distributed).

The MPI tests launch ``mpiexec -n 2 python mpi_worker.py MODE OUT`` (skipped without mpi4py or an
mpiexec): one launch runs every equivalence case (2 ranks at batch b against 1 process at 2b,
after several epochs: SGD with momentum, Adam, Dropout, GaussianNoise, RandomFlip and
BatchNormalization, uneven and empty parts, shuffling, weights, validation, a regularizer and
clipping), one makes rank 1 raise mid-fit, one trains a GPU model on the CuPy emulator. The split
BatchNormalization kernels, and distributed=True without MPI, are tested here in one process.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import fastnn as fnn
from fastnn.backend import cpu, numpy_ref

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "mpi_worker.py")


def _mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


def _open_mpi() -> bool:
    """Whether the launcher is Open MPI's (which refuses more processes than cores unless told)."""
    try:
        out = subprocess.run([_mpiexec(), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return "Open MPI" in out.stdout + out.stderr or "OpenRTE" in out.stdout + out.stderr


needs_mpi = pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None or _mpiexec() is None,
                               reason='needs mpi4py and an mpiexec (pip install "fastnn[mpi]")')


def _launch(mode, folder, ranks=2, timeout=120, allreduce="auto"):
    """Run the worker under mpiexec; (return code, seconds, output, result file path)."""
    out = os.path.join(str(folder), f"{mode}.json")
    env = dict(os.environ, FASTNN_ALLREDUCE=allreduce)
    # Open MPI refuses to start as root without these (containers, CI); MPICH ignores them.
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.pop("FASTNN_NUM_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    launcher = [_mpiexec(), "-n", str(ranks)] + (["--oversubscribe"] if ranks > 2 and _open_mpi() else [])
    cmd = launcher + [sys.executable, WORKER, mode, out] if ranks else [sys.executable, WORKER, mode, out]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, time.perf_counter() - start, proc.stdout + proc.stderr, out


def _results(mode, folder, **launch):
    """Launch the worker; it must succeed: its result file's contents."""
    rc, _, output, out = _launch(mode, folder, **launch)
    assert rc == 0, output
    with open(out) as f:
        return json.load(f)


@pytest.fixture(scope="module", params=["shared", "mpi"])
def checks(request, tmp_path_factory):
    """One launch of every case, with the gradients summed in shared memory or by MPI_Allreduce."""
    folder = tmp_path_factory.mktemp(f"mpi_checks_{request.param}")
    rc, _, output, out = _launch("checks", folder, allreduce=request.param)
    assert rc == 0, output
    with open(out) as f:
        results = json.load(f)
    timings = results["timings"]
    assert timings["shared_memory_steps"] == (timings["steps"] if request.param == "shared" else 0)
    return results, output


TOL = {"float64": 1e-9, "float32": 1e-5}


@needs_mpi
@pytest.mark.parametrize("case", ["sgd_momentum", "adam", "adam_float32", "bn_dropout", "cnn_bn_flip", "uneven_101",
                                  "dropout_101", "empty_part", "shuffled_weighted", "sample_weight_l2"])
def test_two_ranks_train_as_one_process_at_twice_the_batch(checks, case):
    result = checks[0]["cases"][case]
    tol = TOL[result["dtype"]]
    assert result["weights_rel_diff"] < tol, result["weights_rel_diff"]
    assert result["identical_across_ranks"]
    assert result["iterations"][0] == result["iterations"][1]
    assert result["streams"] == result["single_streams"]        # Dropout/augmentation counters
    hist, ref = result["history"], result["single_history"]
    assert set(hist) == set(ref)
    for key in ref:     # losses and metrics (train and validation) of all ranks' samples
        np.testing.assert_allclose(hist[key], ref[key], rtol=tol * 10, atol=tol, err_msg=key)


@needs_mpi
def test_three_ranks_train_as_one_process_at_three_times_the_batch(tmp_path):
    results = _results("three", tmp_path, ranks=3)
    assert results["size"] == 3
    for case, result in results["cases"].items():
        assert result["weights_rel_diff"] < TOL[result["dtype"]], case
        assert result["identical_across_ranks"], case
        np.testing.assert_allclose(result["history"]["loss"], result["single_history"]["loss"], rtol=1e-8,
                                   err_msg=case)


@needs_mpi
def test_same_steps_everywhere_checkpoints_on_rank_0_threads_shared(checks):
    results, output = checks
    assert results["size"] == 2
    assert results["steps_per_rank"] == [14, 14]          # 101 samples, 8 per rank: 7 steps x 2 epochs
    files = results["files"]
    assert "ck-rank0-1.fnn" in files and "ck-rank0-2.fnn" in files and "log-rank0.csv" in files
    assert not any("rank1" in name for name in files)
    # 2 ranks share this machine's cores: each gets its share (1 on 2 cores, never more than half)
    cores = len(results["affinity"])
    assert results["threads"] == max(1, cores // 2)
    assert output.count("Epoch 1/1") == 1                # the progress bar on rank 0 only
    assert results["timings"]["steps"] > 0 and results["timings"]["allreduce_seconds"] > 0


@needs_mpi
def test_an_exception_on_one_rank_ends_the_job(tmp_path):
    rc, seconds, output, out = _launch("fail", tmp_path, timeout=60)
    assert rc != 0, output
    assert seconds < 30, output
    assert os.path.exists(out + ".raised"), (rc, output)     # it failed where it was meant to
    assert not os.path.exists(out)                          # and rank 0 never finished


@needs_mpi
def test_bad_data_on_one_rank_raises_on_every_rank(tmp_path):
    messages = _results("nan", tmp_path, timeout=60)
    assert "on another process" in messages[0]
    assert "1 NaN or infinite value" in messages[1]


@needs_mpi
def test_gpu_model_all_reduces_through_the_host(tmp_path):
    results = _results("gpu", tmp_path, timeout=180)
    for case, result in results.items():
        assert result["device"] == "cuda"
        assert result["weights_rel_diff"] < 1e-9, case
        assert result["identical_across_ranks"], case


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="needs mpi4py")
def test_distributed_in_one_process_is_plain_fit(tmp_path):
    assert _results("plain", tmp_path, ranks=0) == {"same_weights": True, "same_history": True}


# ---- without MPI -------------------------------------------------------------------------------

def _model(seed=0):
    fnn.seed(seed)
    model = fnn.Sequential([fnn.layers.Dense(4, activation="relu"), fnn.layers.Dense(2, activation="softmax")],
                           input_shape=(3,))
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


@pytest.fixture
def no_mpi4py(monkeypatch):
    from fastnn import distributed
    monkeypatch.setitem(sys.modules, "mpi4py", None)       # import mpi4py raises ImportError
    monkeypatch.setattr(distributed, "_world", None)
    for var in distributed._LAUNCH_SIZE_VARS:
        monkeypatch.delenv(var, raising=False)
    return distributed


def test_without_mpi4py_one_process_trains_as_plain_fit(no_mpi4py, rng):
    x, y = rng.standard_normal((20, 3)), rng.integers(0, 2, 20)
    a = _model()        # the shuffle stream is drawn from fnn.seed's generator at the first fit
    ha = a.fit(x, y, batch_size=4, epochs=2, verbose=0, distributed=True)
    b = _model()
    hb = b.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert ha.history == hb.history
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    with pytest.raises(ImportError, match="fastnn\\[mpi\\]"):
        no_mpi4py.rank()


def test_without_mpi4py_under_a_launcher_is_an_import_error(no_mpi4py, monkeypatch, rng):
    monkeypatch.setenv("PMI_SIZE", "2")      # each process would otherwise train alone
    with pytest.raises(ImportError, match="fastnn\\[mpi\\]"):
        _model().fit(rng.standard_normal((8, 3)), rng.integers(0, 2, 8), epochs=1, verbose=0, distributed=True)


def test_distributed_must_be_a_bool(rng):
    with pytest.raises(TypeError, match="distributed"):
        _model().fit(rng.standard_normal((8, 3)), rng.integers(0, 2, 8), verbose=0, distributed="yes")


# ---- the split BatchNormalization kernels: parts of a batch added up = the whole batch ---------

def _split_bn(be, x, g, b, dy, parts, relu, momentum=0.9, eps=1e-3):
    """The training forward and backward of x computed by parts (as processes would), the sums
    added between the phases; the same outputs as _whole_bn."""
    ch, dt = x.shape[1], x.dtype
    count = float(x.shape[0] * x.shape[2])
    mm, mv = np.linspace(-1, 1, ch).astype(dt), np.linspace(0.5, 2, ch).astype(dt)
    bounds = np.linspace(0, x.shape[0], parts + 1).astype(int)
    pieces = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    total = np.zeros((2, ch))
    for s in pieces:
        total += be.batchnorm_sums(np.ascontiguousarray(x[s]), mm, np.empty((2, ch)))
    y, sm, si = np.empty_like(x), np.empty(ch, dt), np.empty(ch, dt)
    shift = mm.copy()
    for i, s in enumerate(pieces):      # every part updates its own copy of the statistics alike
        m_mean, m_var = (mm, mv) if i == 0 else (shift.copy(), np.linspace(0.5, 2, ch).astype(dt))
        y[s] = be.batchnorm_fwd_apply(np.ascontiguousarray(x[s]), g, b, shift, total, count,
                                      np.empty_like(x[s]), sm, si, m_mean, m_var, momentum, eps, relu=relu)
    bsum, dgs, dbs = np.zeros((2, ch)), np.zeros(ch), np.zeros(ch)
    for s in pieces:
        part = be.batchnorm_sums(np.ascontiguousarray(x[s]), sm, np.empty((2, ch)), dy=np.ascontiguousarray(dy[s]),
                                 y=np.ascontiguousarray(y[s]), relu=relu)
        bsum += part
        dgs += part[1] * si
        dbs += part[0]
    dx = np.empty_like(x)
    for s in pieces:
        dx[s] = be.batchnorm_bwd_apply(np.ascontiguousarray(x[s]), g, sm, si, np.ascontiguousarray(dy[s]), bsum, count,
                                       np.empty_like(x[s]), y=np.ascontiguousarray(y[s]), relu=relu)
    return {"y": y, "mean": sm, "invstd": si, "moving_mean": mm, "moving_var": mv, "dx": dx, "dgamma": dgs,
            "dbeta": dbs}


def _whole_bn(x, g, b, dy, relu, momentum=0.9, eps=1e-3):
    ch, dt = x.shape[1], x.dtype
    mm, mv = np.linspace(-1, 1, ch).astype(dt), np.linspace(0.5, 2, ch).astype(dt)
    y, sm, si = np.empty_like(x), np.empty(ch, dt), np.empty(ch, dt)
    cpu.batchnorm_fwd_train(x, g, b, y, sm, si, mm, mv, momentum, eps, relu=relu)
    dx, dg, db = np.empty_like(x), np.empty(ch, dt), np.empty(ch, dt)
    cpu.batchnorm_bwd(x, g, sm, si, dy, dx, dg, db, y=y, relu=relu)
    return {"y": y, "mean": sm, "invstd": si, "moving_mean": mm, "moving_var": mv, "dx": dx, "dgamma": dg,
            "dbeta": db}


@pytest.mark.parametrize("view", [(7, 3, 1), (33, 17, 1), (6, 5, 49), (9, 2, 17)])
@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("be", [cpu, numpy_ref], ids=["cpu", "numpy_ref"])
def test_split_batchnorm_kernels_equal_the_whole_batch(view, parts, relu, be, dtype, rng):
    x = (rng.standard_normal(view) * 2 + 3).astype(dtype)
    dy = rng.standard_normal(view).astype(dtype)
    g, b = rng.uniform(0.5, 1.5, view[1]).astype(dtype), rng.standard_normal(view[1]).astype(dtype)
    got, want = _split_bn(be, x, g, b, dy, parts, relu), _whole_bn(x, g, b, dy, relu)
    tol = 3e-5 if dtype == np.float32 else 1e-11
    for key in want:
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=tol, atol=tol * scale, err_msg=key)


def test_split_batchnorm_kernels_take_an_empty_part(dtype):
    ch = 3
    x = np.empty((0, ch, 4), dtype)
    shift = np.arange(ch, dtype=dtype)
    sums = cpu.batchnorm_sums(x, shift, np.full((2, ch), 7.0))
    np.testing.assert_array_equal(sums, 0)
    sums = cpu.batchnorm_sums(x, shift, np.full((2, ch), 7.0), dy=x, y=x, relu=True)
    np.testing.assert_array_equal(sums, 0)
    total = np.array([[4.0, 8.0, 0.0], [10.0, 20.0, 5.0]])
    sm, si, mm, mv = (np.zeros(ch, dtype) for _ in range(4))
    cpu.batchnorm_fwd_apply(x, None, None, shift, total, 5.0, np.empty_like(x), sm, si, mm, mv, 0.5, 1e-3)
    mean = shift + total[0] / 5
    np.testing.assert_allclose(sm, mean, rtol=1e-6)
    np.testing.assert_allclose(mm, 0.5 * mean, rtol=1e-6)
    cpu.batchnorm_bwd_apply(x, None, sm, si, x, total, 5.0, np.empty_like(x))


@pytest.mark.parametrize("call", ["sums", "fwd", "bwd"])
def test_split_batchnorm_kernels_check_their_arguments(call):
    x = np.ones((4, 3, 2))
    shift = np.zeros(3)
    with pytest.raises(ValueError):
        if call == "sums":
            cpu.batchnorm_sums(x, shift, np.empty((2, 4)))
        elif call == "fwd":
            cpu.batchnorm_fwd_apply(x, None, None, shift, np.ones((2, 3)), 0.0, np.empty_like(x), None, None, None,
                                    None, 0.9, 1e-3)
        else:
            cpu.batchnorm_bwd_apply(x, None, shift, shift, x, np.ones((3, 2)), 8.0, np.empty_like(x))
