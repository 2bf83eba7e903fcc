"""Ctrl-C (SIGINT) during fit, evaluate and predict: KeyboardInterrupt within about a second, at a
batch boundary, and a model that then predicts and trains on (fastnn/_interrupt.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from fastnn import _interrupt

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")

CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import fastnn as fnn
    from fastnn.layers import Dense, Dropout

    def say(**kw):
        print(json.dumps(kw), flush=True)

    class SlowSGD(fnn.optimizers.SGD):
        # Python work between the step count and the update, as a user's optimizer may have:
        # a Ctrl-C that lands there must not leave a counted step without its update.
        def _step(self, be, param, grad, prefix, lr):
            time.sleep(0.03)
            super()._step(be, param, grad, prefix, lr)

    def model_for(seed):
        fnn.seed(seed)
        m = fnn.Sequential([Dense(512, activation="relu"), Dropout(0.3), Dense(512, activation="relu"),
                            Dense(10, activation="softmax")], input_shape=(256,))
        m.compile(optimizer=SlowSGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
        return m

    class Count(fnn.callbacks.Callback):
        steps = epochs = 0
        def on_batch_end(self, batch, logs=None):
            Count.steps += 1
            if Count.steps == 1:
                say(phase="fit")
        def on_epoch_end(self, epoch, logs=None):
            Count.epochs += 1

    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((4096, 256)).astype(np.float32)
    y = rng.integers(0, 10, 4096)
    model = model_for(SEED)
    w0 = model.get_weights()
    try:
        model.fit(x, y, batch_size=64, epochs=1000, shuffle=False, verbose=0, callbacks=[Count()])
        say(error="fit was not interrupted")
        sys.exit(1)
    except KeyboardInterrupt:
        say(caught="fit")
    steps = model.optimizer.iterations
    assert steps == Count.steps, (steps, Count.steps)
    assert len(model.history.history.get("loss", [])) == len(model.history.epoch) == Count.epochs
    # No half-applied step: a fresh model given exactly `steps` steps over the same batches
    # has the same weights, bit for bit.
    again = model_for(SEED)
    again.set_weights(w0)
    per_epoch = -(-len(x) // 64)
    for s in range(steps):
        b = s % per_epoch
        again.train_on_batch(x[b * 64:(b + 1) * 64], y[b * 64:(b + 1) * 64])
    same = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
    # The interrupted model goes on: it predicts, and it fits again from where it stopped.
    p = model.predict(x[:5])
    model.fit(x[:256], y[:256], batch_size=64, epochs=1, shuffle=False, verbose=0)
    say(steps=steps, epochs=Count.epochs, same=same, finite=bool(np.isfinite(p).all()),
        after=model.optimizer.iterations)

    big = np.repeat(x, 16, axis=0)
    yb = np.repeat(y, 16)
    for phase in ("evaluate", "predict"):
        say(phase=phase)
        t0 = time.perf_counter()
        try:
            for _ in range(1000):
                model.evaluate(big, yb, batch_size=256) if phase == "evaluate" else model.predict(big, batch_size=256)
            say(error=phase + " was not interrupted")
            sys.exit(1)
        except KeyboardInterrupt:
            say(caught=phase)
    say(done=bool(np.isfinite(model.predict(x[:3])).all()))
""")


def _expect(proc, key, value, timeout=60.0):
    """Read the child's JSON lines until one has key == value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child ended early: {proc.stderr.read()}")
        msg = json.loads(line)
        assert "error" not in msg, msg
        if msg.get(key) == value or (value is None and key in msg):
            return msg
    raise AssertionError(f"no {key}={value} from the child in {timeout} s")


def test_sigint_during_fit_evaluate_predict(rng):
    code = CHILD.replace("SEED", str(int(rng.integers(1 << 30))))
    env = dict(os.environ, FASTNN_NUM_THREADS="2")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=os.path.dirname(__file__))
    try:
        for phase in ("fit", "evaluate", "predict"):
            _expect(proc, "phase", phase)
            time.sleep(0.4)                 # well inside the phase's work
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _expect(proc, "caught", phase)
            latency = time.monotonic() - sent
            assert latency < 2.0, f"KeyboardInterrupt during {phase} took {latency:.2f} s"
            if phase == "fit":
                res = _expect(proc, "steps", None)
                assert res["steps"] >= 1 and res["same"] and res["finite"], res
                assert res["after"] == res["steps"] + 4, res
        assert _expect(proc, "done", None)["done"]
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_deferral_records_then_raises_at_check():
    """In-process: the handler records the first press, check() raises it once, a second press
    raises at once, and the default handler is back afterwards."""
    with _interrupt.deferred() as d:
        assert signal.getsignal(signal.SIGINT) == d._handler
        d.check()                                   # nothing pending: no-op
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not d.pending and time.monotonic() < deadline:
            time.sleep(0.001)                        # the handler runs at the next bytecode
        assert d.pending
        with pytest.raises(KeyboardInterrupt):
            d.check()
        d.check()                                    # raised once only
        d.pending = True
        with pytest.raises(KeyboardInterrupt):       # a second press: at once
            d._handler(signal.SIGINT, None)
        d.pending = False
        with _interrupt.deferred() as inner:         # nested loops share the outer deferral
            assert inner is d
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_press_after_last_check_is_not_lost():
    with pytest.raises(KeyboardInterrupt):
        with _interrupt.deferred() as d:
            d.pending = True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_user_handler_is_left_alone():
    seen = []
    old = signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
    try:
        with _interrupt.deferred() as d:
            assert signal.getsignal(signal.SIGINT) is not d._handler
            d.check()
    finally:
        signal.signal(signal.SIGINT, old)


def test_fit_in_a_thread_does_not_touch_the_handler(rng):
    import threading

    import fastnn as fnn
    from fastnn.layers import Dense
    model = fnn.Sequential([Dense(3, activation="softmax")], input_shape=(4,))
    model.compile(loss="sparse_categorical_crossentropy")
    x, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    errors = []

    def work():
        try:
            model.fit(x, y, epochs=2, verbose=0)
        except BaseException as err:
            errors.append(err)
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert not errors and len(model.history.history["loss"]) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
