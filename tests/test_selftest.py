"""`python -m fastnn selftest`: passes on this machine for every variant it runs, and fails (exit
status 1) when a kernel is wrong, depends on the thread count, or an exact output differs."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from fastnn import _config, _core, selftest
from fastnn.backend import cpu


def test_cli_passes_for_every_variant():
    res = subprocess.run([sys.executable, "-m", "fastnn", "selftest"], capture_output=True, text=True,
                         timeout=300, cwd=os.path.dirname(__file__))
    assert res.returncode == 0, res.stdout + res.stderr
    best = _core.ARCH_NAMES.index(_core.arch_best())
    rows = [line.split() for line in res.stdout.splitlines()]
    bf16 = _core.BF16_NAMES[:_core.BF16_NAMES.index(_core.bf16_best()) + 1]
    for variant in _core.ARCH_NAMES[:best + 1]:
        for family in selftest.FAMILIES:
            if family in selftest.BF16_FAMILIES:    # float32 only, once per bf16 GEMM variant
                for v in bf16:
                    assert any(r[:3] == [family, f"{variant}+{v}", "float32"] and r[-1] == "ok" for r in rows), v
                continue
            for dtype in ("float32", "float64"):
                assert any(r[:3] == [family, variant, dtype] and r[-1] == "ok" for r in rows), (family, variant)
    assert "PASSED" in res.stdout and "FAIL" not in res.stdout


def test_every_family_has_edge_sizes():
    rng = np.random.default_rng(0)
    for family, make in selftest.FAMILIES.items():
        cases = make(rng)
        assert len(cases) >= 10, family
    assert any(0 in s for s in selftest.GEMM_SHAPES) and (1, 1, 1) in selftest.GEMM_SHAPES
    assert 0 in selftest.ELTWISE_SIZES and max(selftest.ELTWISE_SIZES) > 32768   # a threaded size


def _failures(rows):
    return [f for r in rows for f in r.failures]


def test_wrong_kernel_fails(monkeypatch, capsys):
    real = cpu.softmax_fwd

    def off_by_a_bit(x, out):
        real(x, out)
        out[..., -1] += 1e-3
        return out
    monkeypatch.setattr(cpu, "softmax_fwd", off_by_a_bit)
    rows = selftest.run(["softmax/losses"], threads=1)
    bad = _failures(rows)
    assert bad and all("softmax " in f and "error" in f for f in bad), bad
    assert selftest.main(["softmax/losses"], threads=1) == 1
    assert "FAILED" in capsys.readouterr().out


def test_thread_dependent_result_fails(monkeypatch):
    real = cpu.mul

    def drifting(a, b, out):
        real(a, b, out)
        if _config.get_num_threads() > 1 and out.size:
            out[0] = np.nextafter(out[0], np.inf)
        return out
    monkeypatch.setattr(cpu, "mul", drifting)
    bad = _failures(selftest.run(["eltwise"], threads=2, dtypes=("float64",)))
    assert bad and all("differs between 1 and 2 threads" in f for f in bad), bad


def test_exact_output_is_compared_bit_for_bit(monkeypatch):
    real = cpu.dropout_fwd

    def one_flip(x, rate, seed, offset, out, mask):
        real(x, rate, seed, offset, out, mask)
        if mask.size and 0 < rate:
            mask[0] = mask.dtype.type(0) if mask[0] else mask.dtype.type(1 / (1 - rate))
        return out
    monkeypatch.setattr(cpu, "dropout_fwd", one_flip)
    bad = _failures(selftest.run(["dropout"], threads=1, dtypes=("float32",)))
    assert any("mask: not bit-identical" in f for f in bad), bad


def test_kernel_error_is_a_failure_not_a_crash(monkeypatch):
    def broken(*args, **kw):
        raise _core.KernelError("invalid argument")
    monkeypatch.setattr(cpu, "adam_step", broken)
    bad = _failures(selftest.run(["optimizer"], threads=1, dtypes=("float32",)))
    assert any("KernelError" in f for f in bad)


def test_restores_variant_and_threads():
    _config.set_num_threads(3)
    before = _core.arch_get()
    selftest.run(["pool"], threads=2)
    assert _core.arch_get() == before and _config.get_num_threads() == 3


def test_unknown_family():
    with pytest.raises(ValueError, match="unknown kernel families"):
        selftest.run(["nope"])
    res = subprocess.run([sys.executable, "-m", "fastnn", "selftest", "--family", "nope"], capture_output=True,
                         text=True, timeout=120, cwd=os.path.dirname(__file__))
    assert res.returncode == 2 and "unknown family" in res.stderr
