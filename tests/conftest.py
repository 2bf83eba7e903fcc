"""Shared fixtures: per-test random generators, restoring fastnn's process-wide settings and the
GEMM kernel variant.

Every test gets its own ``np.random.default_rng`` seeded from a base seed (``FASTNN_TEST_SEED``
or fresh entropy, printed in the pytest header) and the test's id, so a failure can be replayed
with ``FASTNN_TEST_SEED=<seed> pytest <test id>``. Nothing seeds NumPy's global RNG.

The property-based tests (``test_fuzz_*.py``, hypothesis) draw from the same base seed (unless
``--hypothesis-seed`` is given), keep no example database, and print the reproduction blob of a
failure.
"""
from __future__ import annotations

import os
import secrets
import zlib

import numpy as np
import pytest
from hypothesis import settings

import fastnn as fnn
from fastnn import _config, _core

BASE_SEED = int(os.environ.get("FASTNN_TEST_SEED", secrets.randbits(32)))
ARCHS = ("generic", "avx2", "avx512")

# Examples are bounded per test (@settings(max_examples=...)); no deadline: the first call of a
# kernel may start the thread pool, and CI machines are slow.
settings.register_profile("ci", deadline=None, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Seed hypothesis from FASTNN_TEST_SEED (printed in the header) unless --hypothesis-seed is given."""
    if getattr(config.option, "hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(BASE_SEED)


def pytest_report_header(config):
    return (f"fastnn {fnn.__version__}: FASTNN_TEST_SEED={BASE_SEED} (hypothesis too), "
            f"kernels {_core.arch_get()} "
            f"(best {_core.arch_best()}), OpenMP {_core.openmp_enabled()}")


@pytest.fixture
def rng(request):
    """A generator private to this test (reproducible from the seed in the header)."""
    return np.random.default_rng([BASE_SEED, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture(autouse=True)
def _restore_fastnn_settings():
    """Undo changes to the thread count, default dtype and fastnn's seeded generator."""
    saved = dict(_config._state)
    try:
        yield
    finally:
        _config._state.update(saved)


@pytest.fixture
def float64_default():
    """Make float64 the default dtype for this test (restored by _restore_fastnn_settings)."""
    fnn.set_default_dtype("float64")
    yield
    fnn.set_default_dtype(np.float32)


def arch_available(name: str) -> bool:
    return ARCHS.index(name) <= ARCHS.index(_core.arch_best())


@pytest.fixture(params=ARCHS)
def arch(request):
    """Run the test once per GEMM kernel variant this CPU supports; restores the variant in use."""
    name = request.param
    if not arch_available(name):
        pytest.skip(f"this CPU lacks {name} (best: {_core.arch_best()})")
    original = _core.arch_get()
    try:
        _core.arch_set(name)
        assert _core.arch_get() == name
        yield name
    finally:
        _core.arch_set(original)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)
