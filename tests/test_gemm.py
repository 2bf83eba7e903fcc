"""The C GEMM (``fastnn._core.gemm``, ``fnn.ops.matmul``) against a float64 NumPy reference, for
every kernel variant this CPU supports, every transpose combination, odd sizes, strided operands,
the alpha/beta/bias/ReLU epilogue, and bit-identical results for any thread count."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ARCHS, arch_available
from helpers import gemm_tol

import fastnn as fnn
from fastnn import _core

SIZES = (1, 2, 7, 15, 17, 31, 33, 63, 65, 129)
SHAPES = [(s, s, s) for s in SIZES] + [
    (1, 65, 33), (65, 1, 33), (33, 65, 1), (1, 1, 129), (129, 1, 1), (1, 129, 1), (2, 63, 17),
    (15, 31, 129), (63, 2, 65), (129, 17, 7), (17, 129, 31), (31, 15, 63), (7, 33, 300), (33, 7, 513),
    # one or two rows (the GEMV kernels' whole strips and their remainders)
    (1, 200, 97), (2, 100, 129), (1, 96, 40), (2, 64, 17), (1, 300, 3),
]
TRANS = [(False, False), (True, False), (False, True), (True, True)]
TRANS_IDS = ["NN", "TN", "NT", "TT"]
# (alpha, beta, bias: None | "col" | "row", relu)
EPILOGUES = [(1.0, 0.0, None, False), (-0.5, 0.75, "col", False), (2.0, 0.0, "row", True),
             (1.0, 1.0, None, True), (0.25, -1.5, "row", False), (1.0, 0.0, "col", True)]
PAD = 5          # extra columns beyond each operand's width: leading dimension > width
SENTINEL = 7.25


class Case:
    """Operands of one GEMM, stored as column slices of wider arrays, and its reference."""

    def __init__(self, rng, dtype, m, n, k, trans_a, trans_b, alpha, beta, bias, relu, c_fill=None):
        self.dtype, self.m, self.n, self.k = dtype, m, n, k
        self.trans_a, self.trans_b, self.alpha, self.beta, self.relu = trans_a, trans_b, alpha, beta, relu
        a_shape = (k, m) if trans_a else (m, k)
        b_shape = (n, k) if trans_b else (k, n)
        self.a = self._strided(rng, a_shape)
        self.b = self._strided(rng, b_shape)
        self.c_big = np.full((m, n + PAD), SENTINEL, dtype=dtype)
        self.c = self.c_big[:, :n]
        if c_fill is None:
            self.c[...] = rng.standard_normal((m, n))
        else:
            self.c[...] = c_fill
        self.c0 = self.c.copy()
        self.bias_row = bias == "row"
        self.bias = None if bias is None else rng.standard_normal(m if self.bias_row else n).astype(dtype)

    def _strided(self, rng, shape):
        big = np.full((shape[0], shape[1] + PAD), np.nan, dtype=self.dtype)   # padding must not be read
        view = big[:, : shape[1]]
        view[...] = rng.standard_normal(shape)
        assert view.strides[0] > view.shape[1] * view.itemsize or 0 in shape
        return view

    def run(self, n_threads=1):
        _core.gemm(self.a, self.b, self.c, self.trans_a, self.trans_b, self.alpha, self.beta, self.bias,
                   self.bias_row, self.relu, n_threads)
        return self.c

    def reset(self):
        self.c[...] = self.c0

    def check(self, what=""):
        a = self.a.astype(np.float64)
        b = self.b.astype(np.float64)
        opa, opb = (a.T if self.trans_a else a), (b.T if self.trans_b else b)
        c0 = self.c0.astype(np.float64)
        ref = self.alpha * (opa @ opb)
        mag = abs(self.alpha) * (np.abs(opa) @ np.abs(opb))
        if self.beta != 0:
            ref = ref + self.beta * c0
            mag = mag + abs(self.beta) * np.abs(c0)
        if self.bias is not None:
            bias = self.bias.astype(np.float64)
            bias = bias[:, None] if self.bias_row else bias[None, :]
            ref = ref + bias
            mag = mag + np.abs(bias)
        if self.relu:
            ref = np.maximum(ref, 0)
        tol = gemm_tol(self.dtype, self.k) * mag + float(np.finfo(self.dtype).tiny)
        err = np.abs(self.c.astype(np.float64) - ref)
        where = f"{what} m={self.m} n={self.n} k={self.k} trans=({self.trans_a}, {self.trans_b}) " \
                f"alpha={self.alpha} beta={self.beta} bias_row={self.bias_row} relu={self.relu}"
        assert np.isfinite(self.c).all(), f"non-finite output: {where}"
        assert (err <= tol).all(), f"max error {err.max():.3g} (allowed {tol[err > tol].min():.3g}): {where}"
        assert (self.c_big[:, self.n:] == SENTINEL).all(), f"wrote past the row width: {where}"


@pytest.mark.parametrize("trans_a, trans_b", TRANS, ids=TRANS_IDS)
def test_gemm_shapes(arch, dtype, trans_a, trans_b, rng):
    for i, (m, n, k) in enumerate(SHAPES):
        # beta = 0 overwrites out without reading it: NaN in out must not propagate
        case = Case(rng, dtype, m, n, k, trans_a, trans_b, 1.0, 0.0, None, False, c_fill=np.nan)
        case.run()
        case.check(arch)
        alpha, beta, bias, relu = EPILOGUES[i % len(EPILOGUES)]
        case = Case(rng, dtype, m, n, k, trans_a, trans_b, alpha, beta, bias, relu,
                    c_fill=np.nan if beta == 0 else None)
        case.run()
        case.check(arch)


@pytest.mark.parametrize("alpha, beta, bias, relu", EPILOGUES)
def test_gemm_epilogue_across_k_blocks(arch, dtype, alpha, beta, bias, relu, rng):
    """beta once on the first K block, bias and ReLU once on the last (k spans several blocks)."""
    for (m, n, k), (ta, tb) in zip([(17, 33, 600), (65, 7, 257), (6, 16, 1030)], TRANS[:3]):
        case = Case(rng, dtype, m, n, k, ta, tb, alpha, beta, bias, relu)
        case.run()
        case.check(arch)


def test_gemm_large_1023(arch, dtype, rng):
    for m, n, k, ta, tb, epi in [(33, 1023, 300, False, True, EPILOGUES[1]),
                                 (1023, 17, 129, True, False, EPILOGUES[2]),
                                 (7, 9, 1023, False, False, EPILOGUES[3])]:
        case = Case(rng, dtype, m, n, k, ta, tb, *epi)
        case.run(n_threads=2)
        case.check(arch)


@pytest.mark.parametrize("m, n", [(1, 1), (7, 17), (33, 2)])
def test_gemm_k_zero(arch, dtype, m, n, rng):
    """k = 0: out = relu?(beta * out + bias), with NaN in out ignored when beta = 0."""
    for trans_a, trans_b in TRANS:
        for alpha, beta, bias, relu in EPILOGUES:
            case = Case(rng, dtype, m, n, 0, trans_a, trans_b, alpha, beta, bias, relu,
                        c_fill=np.nan if beta == 0 else None)
            case.run()
            case.check(arch)
            expected = beta * case.c0.astype(np.float64) if beta != 0 else np.zeros((m, n))
            mag = np.abs(expected)
            if bias is not None:
                b = case.bias[None, :] if bias == "col" else case.bias[:, None]
                expected, mag = expected + b, mag + np.abs(b)
            if relu:
                expected = np.maximum(expected, 0)
            eps = float(np.finfo(dtype).eps)
            assert (np.abs(case.c - expected) <= 2 * eps * mag).all()


def test_gemm_alpha_zero(arch, dtype, rng):
    case = Case(rng, dtype, 17, 9, 33, False, False, 0.0, 0.5, "col", False)
    case.run()
    case.check(arch)
    np.testing.assert_allclose(case.c, 0.5 * case.c0 + case.bias, rtol=2 * float(np.finfo(dtype).eps))


def test_gemm_empty_output(arch, dtype):
    for m, n in [(0, 3), (3, 0), (0, 0)]:
        out = np.empty((m, n), dtype)
        _core.gemm(np.ones((m, 4), dtype), np.ones((4, n), dtype), out)


@pytest.mark.parametrize("m, n, k", [(97, 131, 300), (37, 67, 1023), (1023, 33, 65), (65, 1023, 40), (37, 41, 1000),
                                     (1, 1000, 300), (2, 777, 129)])
def test_gemm_bit_identical_across_threads(arch, dtype, m, n, k, rng):
    for (ta, tb), epi in zip(TRANS, EPILOGUES[1:]):
        case = Case(rng, dtype, m, n, k, ta, tb, *epi)
        first = case.run(n_threads=1).copy()
        case.check(arch)
        for n_threads in (2, 3, 4):
            case.reset()
            np.testing.assert_array_equal(case.run(n_threads), first,
                                          err_msg=f"{arch}: n_threads={n_threads} trans=({ta}, {tb})")


def test_gemm_rejects_bad_shapes():
    a, b = np.ones((3, 4)), np.ones((5, 2))
    with pytest.raises(ValueError):
        _core.gemm(a, b, np.empty((3, 2)))
    with pytest.raises(ValueError):
        _core.gemm(a, np.ones((4, 2)), np.empty((2, 3)))
    with pytest.raises(ValueError):
        _core.gemm(a, np.ones((4, 2)), np.empty((3, 2)), False, False, 1.0, 0.0, np.ones(3), False)
    with pytest.raises(ValueError):       # rows of out not contiguous
        _core.gemm(a, np.ones((4, 2)), np.empty((3, 4))[:, ::2])


# ---- kernel variants -------------------------------------------------------------------------

def test_arch_dispatch():
    best, current = _core.arch_best(), _core.arch_get()
    assert best in ARCHS and current in ARCHS
    assert tuple(_core.ARCH_NAMES) == ARCHS
    try:
        _core.arch_set("generic")                 # the portable variant is always there
        assert _core.arch_get() == "generic"
        for name in ARCHS:
            if arch_available(name):
                _core.arch_set(name)
                assert _core.arch_get() == name
            else:
                with pytest.raises(ValueError):
                    _core.arch_set(name)
                assert _core.arch_get() != name
        with pytest.raises(ValueError):
            _core.arch_set("sse9")
    finally:
        _core.arch_set(current)


def test_arch_environment_override():
    """FASTNN_ARCH picks the variant at import; an unknown name is an error, not a silent fallback."""
    code = "import fastnn; from fastnn import _core; print(_core.arch_get())"
    root = os.path.dirname(os.path.dirname(os.path.abspath(fnn.__file__)))
    env = dict(os.environ, FASTNN_ARCH="generic")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["generic"]
    env["FASTNN_ARCH"] = "no-such-arch"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=root)
    assert out.returncode != 0 and "ValueError" in out.stderr and "no-such-arch" in out.stderr


# ---- fnn.ops.matmul --------------------------------------------------------------------------

@pytest.mark.parametrize("trans_a, trans_b", TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (7, 17, 33), (129, 1, 65), (1, 63, 15), (33, 31, 1)])
def test_ops_matmul(dtype, trans_a, trans_b, m, n, k, rng):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = (a64.T if trans_a else a64) @ (b64.T if trans_b else b64)
    mag = (np.abs(a64.T if trans_a else a64) @ np.abs(b64.T if trans_b else b64))
    tol = gemm_tol(dtype, k) * mag + 1e-30
    y = fnn.ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    assert y.shape == (m, n) and y.dtype == dtype
    assert (np.abs(y - ref) <= tol).all()
    # out= a column slice of a wider array (leading dimension > width)
    big = np.full((m, n + 3), SENTINEL, dtype)
    out = big[:, :n]
    assert fnn.ops.matmul(a, b, out=out, trans_a=trans_a, trans_b=trans_b) is out
    np.testing.assert_array_equal(out, y)
    assert (big[:, n:] == SENTINEL).all()
    # non-contiguous operands are accepted (copied)
    a_nc = np.asfortranarray(a)
    b_big = np.zeros((b.shape[0], 2 * b.shape[1]), dtype)
    b_big[:, ::2] = b
    np.testing.assert_array_equal(
        fnn.ops.matmul(a_nc, b_big[:, ::2], trans_a=trans_a, trans_b=trans_b), y)


def test_ops_matmul_column_slices(dtype, rng):
    big_a = rng.standard_normal((17, 40)).astype(dtype)
    big_b = rng.standard_normal((33, 50)).astype(dtype)
    a, b = big_a[:, :33], big_b[:, :9]
    ref = a.astype(np.float64) @ b.astype(np.float64)
    y = fnn.ops.matmul(a, b)
    np.testing.assert_allclose(y, ref, rtol=gemm_tol(dtype, 33), atol=gemm_tol(dtype, 33) * 10)
    # a transposed view is op(a) without a copy in the caller
    np.testing.assert_allclose(fnn.ops.matmul(b, a, trans_a=True, trans_b=True), ref.T,
                               rtol=gemm_tol(dtype, 33), atol=gemm_tol(dtype, 33) * 10)


def test_ops_matmul_width_one_out_with_column_step(dtype, rng):
    """A width-1 ``out`` has contiguous rows whatever its column stride (ops.matmul's own check
    says so); the result must land in it."""
    a = rng.standard_normal((5, 3)).astype(dtype)
    b = rng.standard_normal((3, 1)).astype(dtype)
    holder = np.zeros((5, 8), dtype)
    out = holder[:, ::2][:, :1]
    assert out.strides[1] != out.itemsize
    assert fnn.ops.matmul(a, b, out=out) is out
    np.testing.assert_allclose(holder[:, 0], (a.astype(np.float64) @ b.astype(np.float64))[:, 0],
                               rtol=gemm_tol(dtype, 3), atol=gemm_tol(dtype, 3) * 10)
    np.testing.assert_array_equal(holder[:, 1:], 0)


def test_ops_matmul_errors():
    a32, a64 = np.ones((3, 4), np.float32), np.ones((4, 2), np.float64)
    with pytest.raises(TypeError):
        fnn.ops.matmul(a32, a64)
    with pytest.raises(ValueError):
        fnn.ops.matmul(np.ones((3, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError):
        fnn.ops.matmul(np.ones(3), np.ones((3, 4)))
    with pytest.raises(ValueError):
        fnn.ops.matmul(np.ones((3, 4)), np.ones((4, 2)), out=np.empty((2, 3)))
    x = np.ones((4, 4))
    with pytest.raises(ValueError):
        fnn.ops.matmul(x, np.ones((4, 4)), out=x)       # out overlaps an operand


def test_c_gemm_harness(tmp_path):
    """csrc/gemm/test/test_gemm.c in its quick mode: every kernel variant of the C GEMM and the
    convolution's gathered-rows product against a double reference, called from C (argument
    errors, padded leading dimensions, NaN in C with beta = 0, 1-4 threads, concurrent callers);
    then test_amx.c: the AMX bf16 kernel with its tile instructions emulated (any CPU), through
    the bf16 driver, on edge shapes against a double reference of the rounded operands."""
    source = Path(__file__).resolve().parents[1] / "csrc" / "gemm" / "test"
    make, cc = shutil.which("make"), shutil.which(os.environ.get("CC", "cc"))
    if not source.is_dir() or make is None or cc is None:
        pytest.skip("needs the source tree, make and a C compiler")
    run = subprocess.run([make, "-C", str(source), "test", "ARGS=quick", f"BUILD={tmp_path}"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert run.stdout.count(" 0 failures") == 3, run.stdout[-4000:]
    assert "amx (emulated) ok" in run.stdout, run.stdout[-4000:]
