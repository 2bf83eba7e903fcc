"""`python -m fastnn ...` and `import fastnn` from the root of the source checkout, where the
uncompiled source package comes first on sys.path: the installed package is used in its place,
and without one the ImportError says what to do."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import fastnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "fastnn")
INSTALLED = os.path.dirname(os.path.abspath(fastnn.__file__))
in_checkout = pytest.mark.skipif(
    not os.path.isfile(os.path.join(SOURCE, "__init__.py")) or fastnn._compiled(SOURCE)
    or os.path.realpath(SOURCE) == os.path.realpath(INSTALLED),
    reason="needs an uncompiled source checkout beside an installed fastnn")


def _run(args, cwd, **kw):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120, **kw)


@in_checkout
def test_python_m_fastnn_from_checkout_root():
    res = _run(["-m", "fastnn", "config"], ROOT)
    assert res.returncode == 0, res.stderr
    assert "kernel_variant" in res.stdout


@in_checkout
def test_import_from_checkout_root_uses_the_installed_package():
    code = ("import fastnn, fastnn._core, fastnn.models, fastnn.__main__ as m; "
            "print(fastnn.__file__); print(fastnn._core.__file__); print(m.__file__); "
            "print(fastnn.Sequential is fastnn.models.Sequential, fastnn.__version__)")
    res = _run(["-c", code], ROOT)
    assert res.returncode == 0, res.stderr
    init, core, main, same = res.stdout.split("\n")[:4]
    for path in (init, core, main):
        assert os.path.realpath(os.path.dirname(path)) == os.path.realpath(INSTALLED), res.stdout
    assert same == f"True {fastnn.__version__}"


@in_checkout
def test_selftest_from_checkout_root():
    res = _run(["-m", "fastnn", "selftest", "--family", "eltwise", "--family", "dropout"], ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASSED" in res.stdout


def test_checkout_without_an_installed_package_says_what_to_do(tmp_path):
    """A source tree alone (no site-packages: python -S) raises an ImportError with the fix."""
    shutil.copytree(INSTALLED, tmp_path / "fastnn",
                    ignore=lambda d, names: [n for n in names if n.startswith("_core") and not n.endswith(".pyx")
                                             and not n.endswith(".pxd")])
    res = _run(["-S", "-c", "import fastnn"], tmp_path, env={"PATH": os.environ.get("PATH", "")})
    assert res.returncode != 0
    assert "ImportError" in res.stderr and "python -m pip install ." in res.stderr, res.stderr
