"""fastnn: small, fast neural networks — C kernels through Cython under a Keras-style API."""
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
