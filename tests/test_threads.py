"""Thread safety: predict, evaluate and the kernels called from many Python threads at once give
bit-identical results to serial calls, and training one model does not disturb another."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers import run_concurrently

import fastnn as fnn
from fastnn import layers as L
from fastnn import optimizers

N_THREADS = 8
REPEATS = 4
# one batch size per thread: odd sizes, one row, and sizes above predict's batch_size (256)
BATCH_SIZES = (1, 3, 17, 64, 129, 256, 300, 513)


@pytest.fixture
def two_kernel_threads():
    """Each C call may also fork OpenMP threads (sizes above the GEMM threshold use both)."""
    saved = fnn.get_num_threads()
    fnn.set_num_threads(2)
    yield
    fnn.set_num_threads(saved)


def make_model(dtype):
    return fnn.Sequential([L.Dense(96, activation="relu"), L.Dense(64, activation="tanh"), L.Dropout(0.3),
                           L.LeakyReLU(0.05), L.Dense(10, activation="softmax")],
                          input_shape=(48,), dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_concurrent_predict_equals_serial(rng, dtype, two_kernel_threads):
    model = make_model(dtype)
    model.compile("adam")
    model.fit(rng.standard_normal((64, 48)), rng.integers(0, 10, 64), epochs=1, verbose=0)
    batches = [rng.standard_normal((n, 48)).astype(dtype) for n in BATCH_SIZES]
    # serial references, with the default batch_size and a small one that splits the input
    expected = [(model.predict(x), model.predict(x, batch_size=50)) for x in batches]
    results = [[] for _ in range(N_THREADS)]

    def work(i):
        x = batches[i]
        for r in range(REPEATS):
            results[i].append((model.predict(x), model.predict(x, batch_size=50)))
            x2 = batches[(i + r + 1) % N_THREADS]             # and someone else's batch too
            got = model.predict(x2)
            want = expected[(i + r + 1) % N_THREADS][0]
            assert np.array_equal(got, want), f"thread {i} repeat {r}: another batch differs"

    run_concurrently(N_THREADS, work)
    for i in range(N_THREADS):
        assert len(results[i]) == REPEATS
        for r, (full, split) in enumerate(results[i]):
            assert full.dtype == np.dtype(dtype) and full.shape == (BATCH_SIZES[i], 10)
            np.testing.assert_array_equal(full, expected[i][0], err_msg=f"thread {i} repeat {r}")
            np.testing.assert_array_equal(split, expected[i][1], err_msg=f"thread {i} repeat {r} (split)")
            assert not np.shares_memory(full, batches[i])
    # results returned to different threads never share memory
    outs = [res[0][0] for res in results]
    assert not any(np.shares_memory(a, b) for k, a in enumerate(outs) for b in outs[k + 1:])


def test_concurrent_evaluate_equals_serial(rng, two_kernel_threads):
    model = make_model("float64")
    model.compile("sgd")
    data = [(rng.standard_normal((n, 48)), rng.integers(0, 10, n)) for n in BATCH_SIZES]
    expected = [model.evaluate(x, y, batch_size=100) for x, y in data]
    got = [None] * N_THREADS

    def work(i):
        x, y = data[i]
        logs = [model.evaluate(x, y, batch_size=100) for _ in range(REPEATS)]
        assert all(entry == logs[0] for entry in logs)
        got[i] = logs[0]

    run_concurrently(N_THREADS, work)
    assert got == expected


MATMUL_CASES = [
    # (m, k, n, dtype, trans_a, trans_b)
    (1, 1, 1, np.float32, False, False),
    (7, 17, 33, np.float64, False, False),
    (129, 64, 33, np.float32, True, False),
    (256, 128, 200, np.float32, False, True),
    (33, 1023, 7, np.float64, True, True),
    (300, 96, 129, np.float64, False, False),
    (64, 257, 64, np.float32, False, False),
    (513, 40, 96, np.float32, True, True),
]


def matmul_inputs(rng, m, k, n, dtype, trans_a, trans_b):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


def test_concurrent_matmul_equals_serial(rng, two_kernel_threads):
    assert len(MATMUL_CASES) == N_THREADS
    inputs = [matmul_inputs(rng, *case) for case in MATMUL_CASES]
    expected = []
    for (a, b), (_, k, _, dtype, ta, tb) in zip(inputs, MATMUL_CASES):
        c = fnn.ops.matmul(a, b, trans_a=ta, trans_b=tb)
        ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
        tol = 4 * (k + 2) * np.finfo(dtype).eps
        np.testing.assert_allclose(c, ref, rtol=tol, atol=tol * np.abs(ref).max())
        expected.append(c)
    mismatches = []

    def work(i):
        a, b = inputs[i]
        _, _, _, dtype, ta, tb = MATMUL_CASES[i]
        out = np.empty_like(expected[i])
        for r in range(REPEATS):
            if not np.array_equal(fnn.ops.matmul(a, b, trans_a=ta, trans_b=tb), expected[i]):
                mismatches.append((i, r, "new array"))
            out.fill(np.nan)
            fnn.ops.matmul(a, b, out=out, trans_a=ta, trans_b=tb)
            if not np.array_equal(out, expected[i]):
                mismatches.append((i, r, "out="))
            j = (i + r + 1) % N_THREADS                      # shapes change between calls
            a2, b2 = inputs[j]
            if not np.array_equal(fnn.ops.matmul(a2, b2, trans_a=MATMUL_CASES[j][4],
                                                 trans_b=MATMUL_CASES[j][5]), expected[j]):
                mismatches.append((i, r, f"case {j}"))

    run_concurrently(N_THREADS, work)
    assert not mismatches


def test_concurrent_elementwise_ops_equal_serial(rng, two_kernel_threads):
    xs = [rng.standard_normal((n, 37)) * 5 for n in BATCH_SIZES]
    ops = [fnn.ops.relu, fnn.ops.sigmoid, fnn.ops.tanh, fnn.ops.softmax]
    expected = [[op(x) for op in ops] for x in xs]
    mismatches = []

    def work(i):
        for r in range(REPEATS):
            for k, op in enumerate(ops):
                if not np.array_equal(op(xs[i]), expected[i][k]):
                    mismatches.append((i, r, op.__name__))

    run_concurrently(N_THREADS, work)
    assert not mismatches


def test_predict_while_another_model_trains(rng, two_kernel_threads):
    x_train = rng.standard_normal((512, 48)).astype(np.float32)
    y_train = rng.integers(0, 10, 512)
    trainer = fnn.Sequential([L.Dense(128, activation="relu"), L.Dense(64, activation="tanh"),
                              L.Dense(10, activation="softmax")], input_shape=(48,))
    twin = fnn.Sequential([L.Dense(128, activation="relu"), L.Dense(64, activation="tanh"),
                           L.Dense(10, activation="softmax")], input_shape=(48,))
    twin.set_weights(trainer.get_weights())
    for m in (trainer, twin):
        m.compile(optimizers.Adam(learning_rate=0.01))

    predictor = make_model("float32")
    predictor.compile("adam")
    predictor.fit(rng.standard_normal((64, 48)), rng.integers(0, 10, 64), epochs=1, verbose=0)
    batches = [rng.standard_normal((n, 48)).astype(np.float32) for n in (5, 64, 300)]
    expected = [predictor.predict(x) for x in batches]

    done = threading.Event()
    checks = []

    def work(i):
        if i == 0:
            try:
                trainer.fit(x_train, y_train, batch_size=32, epochs=3, shuffle=False, verbose=0)
            finally:
                done.set()
            return
        count = 0
        while not done.is_set() or count < 3:
            for x, want in zip(batches, expected):
                got = predictor.predict(x)
                checks.append(np.array_equal(got, want))
            count += 1

    run_concurrently(4, work)
    assert checks and all(checks), f"{checks.count(False)} of {len(checks)} predictions differ"
    # and the concurrent predictions did not disturb the training either
    twin.fit(x_train, y_train, batch_size=32, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(trainer.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_two_models_train_concurrently_like_serially(rng, two_kernel_threads):
    data = [(rng.standard_normal((200, 48)), rng.integers(0, 10, 200)) for _ in range(2)]
    models, twins = [], []
    for _ in range(2):
        m, t = (fnn.Sequential([L.Dense(96, activation="relu"), L.Dense(10, activation="softmax")],
                               input_shape=(48,)) for _ in range(2))
        t.set_weights(m.get_weights())
        for model in (m, t):
            model.compile(optimizers.SGD(learning_rate=0.05, momentum=0.9))
        models.append(m)
        twins.append(t)

    def work(i):
        x, y = data[i]
        models[i].fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)

    run_concurrently(2, work)
    for i in range(2):
        x, y = data[i]
        twins[i].fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        for a, b in zip(models[i].get_weights(), twins[i].get_weights()):
            np.testing.assert_array_equal(a, b)


def test_concurrent_first_predict_builds_the_model_once(rng, two_kernel_threads):
    """Threads that all call predict on an unbuilt model get the model's (one) weights."""
    for _ in range(3):
        model = fnn.Sequential([L.Dense(128, activation="relu"), L.Dense(64),
                                L.Dense(10, activation="softmax")])
        x = rng.standard_normal((64, 100)).astype(np.float32)
        outs = [None] * N_THREADS

        def work(i, model=model, x=x, outs=outs):
            outs[i] = model.predict(x)

        run_concurrently(N_THREADS, work)
        assert model.built and model.input_shape == (100,)
        reference = model.predict(x)
        same = [np.array_equal(out, reference) for out in outs]
        assert all(same), f"{same.count(False)} of {N_THREADS} threads saw other weights"
