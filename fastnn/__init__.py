"""fastnn: small, fast neural networks — C kernels through Cython under a Keras-style API."""
import os as _os
import sys as _sys
from importlib.machinery import EXTENSION_SUFFIXES as _EXT


def _compiled(folder: str) -> bool:
    return any(_os.path.isfile(_os.path.join(folder, "_core" + sfx)) for sfx in _EXT)


def _installed_elsewhere(here: str):
    """The folder of another fastnn package on sys.path that has its compiled extension."""
    for entry in _sys.path:
        folder = _os.path.join(_os.path.abspath(entry or _os.curdir), "fastnn")
        if _os.path.realpath(folder) != _os.path.realpath(here) and _compiled(folder) \
                and _os.path.isfile(_os.path.join(folder, "__init__.py")):
            return folder
    return None


# Python puts the current folder first on sys.path for `python -m ...` and `python -c`, so at the
# root of a source checkout this uncompiled `fastnn/` shadows the installed package. Then load the
# installed one in its place: its folder becomes this package's path (so every submodule, the
# extension and `python -m fastnn`'s __main__ come from it) and its __init__ runs here.
_here = _os.path.dirname(_os.path.abspath(__file__))
if not _compiled(_here):
    _installed = _installed_elsewhere(_here)
    if _installed is None:
        raise ImportError(
            f"fastnn: {_here} is the source tree, which has no compiled extension, and no installed "
            f"fastnn was found on sys.path. Install it first with `python -m pip install .` from "
            f"{_os.path.dirname(_here)} (then `import fastnn` works from any folder, this one included), "
            f"or build in place with `python setup.py build_ext --inplace`.")
    __path__[:] = [_installed]  # noqa: F821 (set by the import system for a package)
    __file__ = _os.path.join(_installed, "__init__.py")
    with open(__file__, encoding="utf-8") as _f:
        exec(compile(_f.read(), __file__, "exec"))
else:
    # Idle OpenMP workers spin before they sleep; libgomp's default (300,000 pauses, ~5 ms here)
    # would steal a core from numpy or PyTorch after every fastnn call on a 2-core machine. About
    # 0.3 ms keeps back-to-back kernels of one training step fast. Must be set before libgomp loads
    # (with the extension below); an explicit user setting wins.
    if "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ:
        _os.environ["GOMP_SPINCOUNT"] = "20000"
    from . import callbacks, initializers, layers, losses, ops, optimizers, regularizers
    from ._config import get_default_dtype, get_num_threads, seed, set_default_dtype, set_num_threads
    from ._info import cuda_available, show_config
    from .io import ModelFileError, load_model
    from .models import Sequential

    __version__ = "0.1.0"

    __all__ = [
        "Sequential", "load_model", "ModelFileError", "layers", "losses", "optimizers", "callbacks", "ops",
        "regularizers",
        "initializers", "seed", "set_num_threads", "get_num_threads", "set_default_dtype", "get_default_dtype",
        "cuda_available", "show_config", "__version__",
    ]
