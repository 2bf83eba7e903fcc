"""Recurrent kernels' workspace placement and wide layers: the layout starts at a 64-byte line of
the caller's workspace wherever that lies (the forward records where, so a moved copy still
works), and layers wide enough for W_h^T to be transposed on several threads give the same bits
for any thread count and match the NumPy reference."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn as fnn
from fastnn import _core
from fastnn.backend import cpu, numpy_ref

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _weights(cell, f, h, dtype, rng):
    k = GATES[cell] * h
    return [(rng.standard_normal(s) * 0.3).astype(dtype) for s in ((f, k), (h, k), (k,), (k,))]


def _at(size, offset, dtype):
    """A zeroed workspace of size elements starting offset elements into a fresh buffer."""
    return np.zeros(size + 16, dtype)[offset:offset + size]


def _call(be, cell, x, w, dy, seq, ws, bws):
    h = w[1].shape[0]
    y = np.empty(dy.shape, x.dtype)
    be.recurrent_fwd(cell, x, *w, y, ws, seq)
    grads = [np.empty_like(a) for a in w]
    dx = np.empty_like(x)
    be.recurrent_bwd(cell, x, w[0], w[1], ws, dy, *grads, dx, bws, seq)
    assert y.shape[-1] == h
    return [y, dx, *grads]


@pytest.mark.parametrize("cell", GATES)
def test_any_workspace_offset_and_a_moved_copy_give_the_same_bits(cell, dtype, rng):
    n, t, f, h = 33, 4, 5, 24
    x = rng.standard_normal((n, t, f)).astype(dtype)
    w = _weights(cell, f, h, dtype, rng)
    dy = rng.standard_normal((n, t, h)).astype(dtype)
    fw, bw = cpu.recurrent_workspace(cell, n, t, f, h)
    want = _call(cpu, cell, x, w, dy, True, _at(fw, 0, dtype), _at(bw, 0, dtype))
    for offset in range(1, 9):
        got = _call(cpu, cell, x, w, dy, True, _at(fw, offset, dtype), _at(bw, offset + 3, dtype))
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        # the forward's workspace copied to another address before the backward
        ws = _at(fw, offset, dtype)
        cpu.recurrent_fwd(cell, x, *w, np.empty((n, t, h), dtype), ws, True)
        moved = _at(fw, offset + 1, dtype)
        moved[...] = ws
        ws[...] = np.nan
        grads = [np.empty_like(a) for a in w]
        dx = np.empty_like(x)
        cpu.recurrent_bwd(cell, x, w[0], w[1], moved, dy, *grads, dx, _at(bw, 0, dtype), True)
        for a, b in zip([dx, *grads], want[1:]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fill", [0.0, np.nan, 17.0])
def test_backward_refuses_a_workspace_no_forward_filled(fill):
    n, t, f, h = 4, 3, 2, 5
    fw, bw = cpu.recurrent_workspace("lstm", n, t, f, h)
    w = _weights("lstm", f, h, np.float32, np.random.default_rng(0))
    grads = [np.empty_like(a) for a in w]
    x = np.zeros((n, t, f), np.float32)
    with pytest.raises(_core.KernelError, match="invalid argument"):
        cpu.recurrent_bwd("lstm", x, w[0], w[1], np.full(fw, fill, np.float32), np.zeros((n, h), np.float32),
                          *grads, None, np.empty(bw, np.float32), False)


# Wide layers: an LSTM of 256 units has a W_h^T of 256 x 1024, transposed on two threads; 200
# units are not a whole number of the threads' 16-column blocks. Batches of 1 to 3 row chunks.
@pytest.mark.parametrize("seq", [False, True], ids=["last", "seq"])
@pytest.mark.parametrize("h", [256, 200])
@pytest.mark.parametrize("cell", GATES)
def test_wide_layers_same_bits_for_any_thread_count(cell, h, seq, dtype, rng):
    t, f = 3, 5
    w = _weights(cell, f, h, dtype, rng)
    for n in (1, 3, 17, 32, 33):
        x = rng.standard_normal((n, t, f)).astype(dtype)
        dy = rng.standard_normal((n, t, h) if seq else (n, h)).astype(dtype)
        fw, bw = cpu.recurrent_workspace(cell, n, t, f, h)
        runs = []
        for threads in (1, 2, 3):     # conftest restores the thread count
            fnn.set_num_threads(threads)
            runs.append(_call(cpu, cell, x, w, dy, seq, np.empty(fw, dtype), np.empty(bw, dtype)))
        for other in runs[1:]:
            for a, b in zip(runs[0], other):
                np.testing.assert_array_equal(a, b, err_msg=f"{cell} n={n}")


@pytest.mark.parametrize("cell", GATES)
def test_wide_layer_matches_numpy_reference(cell, rng):
    n, t, f, h = 33, 3, 5, 256
    w = _weights(cell, f, h, np.float64, rng)
    x = rng.standard_normal((n, t, f))
    dy = rng.standard_normal((n, t, h))
    fw, bw = cpu.recurrent_workspace(cell, n, t, f, h)
    rfw, rbw = numpy_ref.recurrent_workspace(cell, n, t, f, h)
    fnn.set_num_threads(2)
    got = _call(cpu, cell, x, w, dy, True, np.empty(fw), np.empty(bw))
    want = _call(numpy_ref, cell, x, w, dy, True, np.empty(rfw), np.empty(rbw))
    for name, a, b in zip(["y", "dx", "dW_x", "dW_h", "db_x", "db_h"], got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * max(1.0, float(np.abs(b).max())), err_msg=name)
