"""Layers (``fnn.layers``). A new layer family gets its own module here and an entry in
``REGISTRY`` (the closed list of classes model files may name)."""
from .activation import Activation, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .pooling import AvgPool2D, MaxPool2D
from .recurrent import GRU, LSTM, SimpleRNN
from .reshape import Flatten

REGISTRY = {cls.__name__: cls for cls in (Dense, ReLU, Sigmoid, Tanh, Softmax, LeakyReLU, Dropout, Flatten)}
REGISTRY.update({cls.__name__: cls for cls in (Conv2D, MaxPool2D, AvgPool2D)})

__all__ = ["Layer", "Activation", "Dense", "ReLU", "Sigmoid", "Tanh", "Softmax", "LeakyReLU", "Dropout",
           "Flatten", "REGISTRY"]
__all__ += ["Conv2D", "MaxPool2D", "AvgPool2D"]
REGISTRY.update({cls.__name__: cls for cls in (SimpleRNN, LSTM, GRU)})
__all__ += ["SimpleRNN", "LSTM", "GRU"]
from .normalization import BatchNormalization  # noqa: E402
from .pooling import GlobalAveragePooling2D, GlobalMaxPooling2D  # noqa: E402

REGISTRY.update({cls.__name__: cls for cls in (BatchNormalization, GlobalAveragePooling2D, GlobalMaxPooling2D)})
__all__ += ["BatchNormalization", "GlobalAveragePooling2D", "GlobalMaxPooling2D"]

from .embedding import Embedding  # noqa: E402

REGISTRY[Embedding.__name__] = Embedding
__all__ += ["Embedding"]

from .augmentation import GaussianNoise, RandomFlip, RandomTranslation  # noqa: E402

REGISTRY.update({cls.__name__: cls for cls in (RandomFlip, RandomTranslation, GaussianNoise)})
__all__ += ["RandomFlip", "RandomTranslation", "GaussianNoise"]
