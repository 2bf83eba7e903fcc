"""Layers (``fnn.layers``). A new layer family gets its own module here and an entry in
``REGISTRY`` (the closed list of classes model files may name)."""
from .activation import Activation, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .reshape import Flatten

REGISTRY = {cls.__name__: cls for cls in (Dense, ReLU, Sigmoid, Tanh, Softmax, LeakyReLU, Dropout, Flatten)}

__all__ = ["Layer", "Activation", "Dense", "ReLU", "Sigmoid", "Tanh", "Softmax", "LeakyReLU", "Dropout",
           "Flatten", "REGISTRY"]
