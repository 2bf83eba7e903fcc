"""fastnn: small, fast neural networks — C kernels through Cython under a Keras-style API."""
import os as _os

# Idle OpenMP workers spin before they sleep; libgomp's default (300,000 pauses, ~5 ms here)
# would steal a core from numpy or PyTorch after every fastnn call on a 2-core machine. About
# 0.3 ms keeps back-to-back kernels of one training step fast. Must be set before libgomp loads
# (with the extension below); an explicit user setting wins.
if "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "20000"
from . import callbacks, initializers, layers, losses, ops, optimizers
from ._config import get_default_dtype, get_num_threads, seed, set_default_dtype, set_num_threads
from ._info import cuda_available, show_config
from .io import ModelFileError, load_model
from .models import Sequential

__version__ = "0.1.0"

__all__ = [
    "Sequential", "load_model", "ModelFileError", "layers", "losses", "optimizers", "callbacks", "ops",
    "initializers", "seed", "set_num_threads", "get_num_threads", "set_default_dtype", "get_default_dtype",
    "cuda_available", "show_config", "__version__",
]
