"""scikit-learn estimators around a fastnn ``Sequential`` (needs ``pip install "fastnn[sklearn]"``).

``NeuralNetClassifier`` and ``NeuralNetRegressor`` follow scikit-learn's conventions: parameters are
stored as given in ``__init__`` and validated in ``fit``; ``fit`` builds a fresh model every time
(no warm start) and returns ``self``; fitted attributes end in ``_``. They work with ``clone``,
``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and pickle (the model is stored as fastnn's
data-only model-file bytes, so unpickling runs no code from the model).

Examples
--------
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from fastnn.data import load_breast_cancer
>>> from fastnn.sklearn import NeuralNetClassifier
>>> x, y, _ = load_breast_cancer()
>>> clf = make_pipeline(StandardScaler(), NeuralNetClassifier(hidden_layer_sizes=(32,), epochs=20, random_state=0))
>>> clf.fit(x, y).score(x, y) > 0.95
True
"""
from __future__ import annotations

import numbers
import os
import tempfile

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as err:      # pragma: no cover - exercised only without scikit-learn
    raise ImportError("fastnn.sklearn needs scikit-learn: pip install \"fastnn[sklearn]\" "
                      "(or pip install scikit-learn)") from err

try:                             # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:              # pragma: no cover - older scikit-learn
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

from . import io as _io
from . import layers as _layers
from ._config import seed as _seed
from .models import Sequential

__all__ = ["NeuralNetClassifier", "NeuralNetRegressor"]


def _model_bytes(model) -> bytes:
    """fastnn's model-file bytes of ``model`` (architecture, weights, optimizer state)."""
    fd, path = tempfile.mkstemp(suffix=".npz", prefix="fastnn-sk-")
    os.close(fd)
    try:
        model.save(path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def _model_from_bytes(data: bytes):
    fd, path = tempfile.mkstemp(suffix=".npz", prefix="fastnn-sk-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return _io.load_model(path)
    finally:
        os.unlink(path)


class _NeuralNet(BaseEstimator):
    """Shared parameters, model building, training and pickling of the two estimators."""

    _loss = ""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", model=None, optimizer="adam",
                 learning_rate=0.001, epochs=200, batch_size=32, validation_split=0.0,
                 verbose=0, random_state=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.model = model
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_split = validation_split
        self.verbose = verbose
        self.random_state = random_state

    # ---- building ----------------------------------------------------------------------
    def _seed(self) -> None:
        rs = self.random_state
        if rs is None:
            return
        if isinstance(rs, numbers.Integral) and not isinstance(rs, bool):
            _seed(int(rs))
        elif isinstance(rs, np.random.RandomState):
            _seed(int(rs.randint(np.iinfo(np.int32).max)))
        else:
            raise ValueError(f"{type(self).__name__}(random_state=...): expected None, an int or a "
                             f"numpy RandomState, got {rs!r}")

    def _optimizer(self):
        from . import optimizers
        opt = self.optimizer
        if isinstance(opt, str):
            cls = {"sgd": optimizers.SGD, "adam": optimizers.Adam, "rmsprop": optimizers.RMSprop,
                   "adamw": optimizers.AdamW}.get(opt.lower())
            if cls is None:
                raise ValueError(f"{type(self).__name__}(optimizer=...): expected 'sgd', 'adam', 'rmsprop' or "
                                 f"'adamw', got {opt!r}")
            return cls(learning_rate=self.learning_rate)
        raise TypeError(f"{type(self).__name__}(optimizer=...): expected an optimizer name (the learning rate is "
                        f"learning_rate=...), got {type(opt).__name__}")

    def _build_model(self, input_shape, n_outputs: int, output_activation):
        n_features = int(input_shape[0])
        if self.model is None:
            sizes = self.hidden_layer_sizes
            sizes = (sizes,) if isinstance(sizes, numbers.Integral) else tuple(sizes)
            net = Sequential([_layers.Dense(int(h), activation=self.activation) for h in sizes]
                             + [_layers.Dense(n_outputs, activation=output_activation)])
        else:
            if not callable(self.model):
                raise TypeError(f"{type(self).__name__}(model=...): expected None or a function "
                                f"(n_features, n_outputs) -> Sequential, got {type(self.model).__name__}")
            net = self.model(n_features, n_outputs)
            if not isinstance(net, Sequential):
                raise TypeError(f"{type(self).__name__}(model=...): the function returned "
                                f"{type(net).__name__}, expected an uncompiled fastnn Sequential")
        if not net.built:
            net.build(tuple(input_shape))
        net.compile(optimizer=self._optimizer(), loss=self._loss, metrics=())
        return net

    def _check_x(self, x, reset: bool):
        # an MLP takes (N, features); a model function may take any shape (images, sequences)
        return _validate_data(self, x, reset=reset, allow_nd=self.model is not None, dtype="numeric")

    def _train(self, x, y, epochs: int) -> None:
        self.model_.fit(x, y, batch_size=int(self.batch_size), epochs=int(epochs),
                        validation_split=float(self.validation_split), verbose=int(self.verbose))
        self.history_ = self.model_.history.history if self.model_.history is not None else {}

    def _predict_raw(self, x):
        check_is_fitted(self, "model_")
        x = self._check_x(x, reset=False)
        return self.model_.predict(x)

    # ---- pickling: the model as fastnn's data-only model bytes ----------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        if "model_" in state:
            state["model_"] = _model_bytes(state["model_"])
        return state

    def __setstate__(self, state):
        state = dict(state)
        if isinstance(state.get("model_"), (bytes, bytearray)):
            state["model_"] = _model_from_bytes(bytes(state["model_"]))
        self.__dict__.update(state)


class NeuralNetClassifier(ClassifierMixin, _NeuralNet):
    """A fastnn network as a scikit-learn classifier (softmax output, sparse categorical cross-entropy).

    Labels of any type (ints, strings, bools, ...) are encoded to ``0..K-1``; ``classes_`` holds
    them sorted. Binary problems get two softmax outputs. ``random_state`` is passed to
    ``fnn.seed`` at the start of ``fit``.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
        Widths of the hidden Dense layers of the default MLP (ignored when ``model`` is given).
    activation : str, default "relu"
        Activation of the hidden layers of the default MLP.
    model : callable, optional
        ``model(n_features, n_outputs) -> Sequential`` (uncompiled, ending in a softmax over
        ``n_outputs`` = number of classes): any architecture; the estimator compiles it.
    optimizer : {"adam", "sgd", "rmsprop", "adamw"}, default "adam"
    learning_rate : float, default 0.001
    epochs : int, default 200
    batch_size : int, default 32
    validation_split : float, default 0.0
    verbose : int, default 0
    random_state : int, numpy RandomState or None

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    model_ : fastnn.Sequential
    history_ : dict
        The training history of the last ``fit``/``partial_fit`` call.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.sklearn import NeuralNetClassifier
    >>> x = np.random.default_rng(0).normal(size=(60, 4)); y = np.where(x[:, 0] > 0, "pos", "neg")
    >>> clf = NeuralNetClassifier(hidden_layer_sizes=(16,), epochs=30, random_state=0).fit(x, y)
    >>> clf.classes_.tolist()
    ['neg', 'pos']
    """

    _loss = "sparse_categorical_crossentropy"

    def _encode(self, y, reset: bool, classes=None):
        check_classification_targets(y)
        if reset:
            self._label_encoder = LabelEncoder().fit(y if classes is None else classes)
            self.classes_ = self._label_encoder.classes_
            if len(self.classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; got only one "
                                 f"class: {self.classes_.tolist()}")
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if unseen.size:
            raise ValueError(f"{type(self).__name__}: y holds labels {unseen.tolist()} not in classes_ "
                             f"{self.classes_.tolist()}")
        return self._label_encoder.transform(y).astype(np.int64)

    def fit(self, X, y):
        """Build a fresh model for ``X`` (N, features) and labels ``y`` (N,) and train it."""
        X, y = _validate_data(self, X, y, allow_nd=self.model is not None, dtype="numeric")
        codes = self._encode(y, reset=True)
        self._seed()
        self.model_ = self._build_model(X.shape[1:], len(self.classes_), "softmax")
        self._train(X, codes, self.epochs)
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``; the first call builds the model and needs ``classes``
        (all labels that will occur) unless ``y`` holds them all."""
        first = not hasattr(self, "model_")
        X, y = _validate_data(self, X, y, reset=first, allow_nd=self.model is not None, dtype="numeric")
        if first:
            codes = self._encode(y, reset=True, classes=classes)
            self._seed()
            self.model_ = self._build_model(X.shape[1:], len(self.classes_), "softmax")
        else:
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(f"{type(self).__name__}.partial_fit: classes={classes!r} differ from the first "
                                 f"call's {self.classes_.tolist()}")
            codes = self._encode(y, reset=False)
        self._train(X, codes, 1)
        return self

    def predict_proba(self, X):
        """Class probabilities ``(N, n_classes)`` (float64), columns in ``classes_`` order."""
        return np.asarray(self._predict_raw(X), dtype=np.float64)

    def predict(self, X):
        """The most probable label of each sample (the type of the labels given to ``fit``)."""
        proba = self._predict_raw(X)
        return self.classes_[np.argmax(proba, axis=1)]


class NeuralNetRegressor(RegressorMixin, _NeuralNet):
    """A fastnn network as a scikit-learn regressor (linear output, mean squared error).

    ``y`` is ``(N,)`` or ``(N, n_targets)``; ``predict`` returns the same rank (float64).
    Parameters as :class:`NeuralNetClassifier`; ``model(n_features, n_targets)`` returns an
    uncompiled Sequential with ``n_targets`` linear outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.sklearn import NeuralNetRegressor
    >>> x = np.random.default_rng(0).normal(size=(100, 3)); y = x @ [1.0, -2.0, 0.5]
    >>> reg = NeuralNetRegressor(hidden_layer_sizes=(32,), epochs=100, random_state=0).fit(x, y)
    >>> reg.score(x, y) > 0.9
    True
    """

    _loss = "mse"

    def _targets(self, y):
        y = np.asarray(y, dtype=np.float64)
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def fit(self, X, y):
        """Build a fresh model for ``X`` (N, features) and targets ``y`` and train it."""
        X, y = _validate_data(self, X, y, allow_nd=self.model is not None, dtype="numeric", multi_output=True,
                              y_numeric=True)
        self._y_1d = np.ndim(y) == 1
        targets = self._targets(y)
        self._seed()
        self.model_ = self._build_model(X.shape[1:], targets.shape[1], None)
        self._train(X, targets, self.epochs)
        return self

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``; the first call builds the model."""
        first = not hasattr(self, "model_")
        X, y = _validate_data(self, X, y, reset=first, allow_nd=self.model is not None, dtype="numeric",
                              multi_output=True, y_numeric=True)
        targets = self._targets(y)
        if first:
            self._y_1d = np.ndim(y) == 1
            self._seed()
            self.model_ = self._build_model(X.shape[1:], targets.shape[1], None)
        elif targets.shape[1] != self.model_.output_shape[0]:
            raise ValueError(f"{type(self).__name__}.partial_fit: y has {targets.shape[1]} targets, the model "
                             f"{self.model_.output_shape[0]}")
        self._train(X, targets, 1)
        return self

    def predict(self, X):
        """Predictions ``(N,)`` (or ``(N, n_targets)`` when fitted on 2-D ``y``), float64."""
        out = np.asarray(self._predict_raw(X), dtype=np.float64)
        return out[:, 0] if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
