"""fastnn.sklearn: scikit-learn's estimator checks, model selection, pipelines and pickling."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastnn as fnn

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastnn.data import load_breast_cancer, load_digits  # noqa: E402
from fastnn.sklearn import NeuralNetClassifier, NeuralNetRegressor  # noqa: E402

# Small epochs keep the checks quick; they still reach the accuracy/score the checks ask for.
ESTIMATORS = [NeuralNetClassifier(epochs=50, random_state=0), NeuralNetRegressor(epochs=50, random_state=0)]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _blobs(rng, n=120, labels=("a", "b", "c")):
    centers = 6.0 * np.eye(len(labels), 4)         # well apart: any seed separates them
    k = rng.integers(0, len(labels), n)
    return centers[k] + rng.normal(size=(n, 4)), np.asarray(labels, dtype=object)[k]


@pytest.mark.parametrize("labels", [("cat", "dog", "emu"), (3, -1, 10), (True, False)], ids=["str", "int", "bool"])
def test_label_types_and_attributes(labels, rng):
    x, y = _blobs(rng, labels=labels)
    y = np.asarray(y.tolist())          # the labels' own dtype (str, int, bool)
    clf = NeuralNetClassifier(hidden_layer_sizes=(16,), epochs=60, random_state=1).fit(x, y)
    assert clf.classes_.tolist() == sorted(set(labels)) and clf.classes_.dtype == y.dtype
    assert clf.n_features_in_ == 4
    proba = clf.predict_proba(x)
    assert proba.shape == (len(x), len(labels)) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    pred = clf.predict(x)
    assert pred.dtype == y.dtype and np.mean(pred == y) > 0.9
    assert clf.model_.layers[-1].activation == "softmax" and clf.model_.output_shape == (len(labels),)


def test_random_state_reproducible_and_no_warm_start(rng):
    x, y = _blobs(rng)
    a = NeuralNetClassifier(hidden_layer_sizes=(8,), epochs=5, random_state=7).fit(x, y)
    b = NeuralNetClassifier(hidden_layer_sizes=(8,), epochs=5, random_state=7)
    b.fit(x, y)
    first = b.model_
    b.fit(x, y)                          # refit: a fresh model, same result
    assert b.model_ is not first
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))


def test_partial_fit(rng):
    x, y = _blobs(rng)
    clf = NeuralNetClassifier(hidden_layer_sizes=(16,), random_state=0)
    for _ in range(40):
        clf.partial_fit(x[:60], y[:60], classes=["a", "b", "c"])
        clf.partial_fit(x[60:], y[60:])
    assert clf.score(x, y) > 0.9
    with pytest.raises(ValueError, match="labels"):
        clf.partial_fit(x, np.where(y == "a", "zzz", y))
    reg = NeuralNetRegressor(hidden_layer_sizes=(16,), random_state=0)
    for _ in range(3):
        reg.partial_fit(x, x[:, 0])
    assert reg.predict(x).shape == (len(x),)


def test_model_function_any_architecture(rng):
    """A model function: a small CNN on (N, 1, 8, 8) digits; the estimator compiles it."""
    x, y = load_digits()
    x = (x[:400] / 16.0).reshape(-1, 1, 8, 8)
    y = y[:400]
    calls = []

    def cnn(n_features, n_outputs):
        calls.append((n_features, n_outputs))
        return fnn.Sequential([fnn.layers.Conv2D(8, 3, padding="same", activation="relu"), fnn.layers.MaxPool2D(2),
                               fnn.layers.Flatten(), fnn.layers.Dense(n_outputs, activation="softmax")])

    clf = NeuralNetClassifier(model=cnn, epochs=15, learning_rate=0.01, random_state=0).fit(x, y)
    assert calls == [(1, 10)] and clf.score(x, y) > 0.9


def test_regressor_multioutput(rng):
    x = rng.normal(size=(200, 3))
    y = np.stack([x @ [1.0, -2.0, 0.5], x[:, 0] * 2.0], axis=1)
    reg = NeuralNetRegressor(hidden_layer_sizes=(32,), epochs=100, random_state=0).fit(x, y)
    pred = reg.predict(x)
    assert pred.shape == (200, 2) and pred.dtype == np.float64 and reg.score(x, y) > 0.9


def test_pickle_stores_model_bytes(rng):
    x, y = _blobs(rng)
    clf = NeuralNetClassifier(hidden_layer_sizes=(8,), epochs=5, random_state=0).fit(x, y)
    state = clf.__getstate__()
    assert isinstance(state["model_"], bytes) and state["model_"][:2] == b"PK"    # the model file (zip)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(x), clf.predict_proba(x))
    back.partial_fit(x, y)          # optimizer state came back too
    unfitted = pickle.loads(pickle.dumps(NeuralNetClassifier()))
    with pytest.raises(NotFittedError):
        unfitted.predict(x)


def test_bad_parameters(rng):
    x, y = _blobs(rng)
    with pytest.raises(ValueError, match="optimizer"):
        NeuralNetClassifier(optimizer="nope", epochs=1).fit(x, y)
    with pytest.raises(TypeError, match="model"):
        NeuralNetClassifier(model=lambda f, k: "not a model", epochs=1).fit(x, y)
    with pytest.raises(ValueError, match="one class"):
        NeuralNetClassifier(epochs=1).fit(x, np.zeros(len(x)))


def test_grid_search_two_parameters(rng):
    x, y = _blobs(rng)
    grid = GridSearchCV(NeuralNetClassifier(epochs=20, random_state=0),
                        {"hidden_layer_sizes": [(8,), (16, 8)], "learning_rate": [0.001, 0.01]}, cv=3)
    grid.fit(x, y)
    assert set(grid.best_params_) == {"hidden_layer_sizes", "learning_rate"}
    assert len(grid.cv_results_["params"]) == 4 and grid.best_score_ > 0.8
    assert clone(grid.best_estimator_).get_params() == grid.best_estimator_.get_params()


def test_pipeline_breast_cancer_cross_val():
    x, y, _ = load_breast_cancer()
    pipe = make_pipeline(StandardScaler(), NeuralNetClassifier(hidden_layer_sizes=(32,), epochs=30, random_state=0))
    scores = cross_val_score(pipe, x, y, cv=5)
    assert scores.mean() >= 0.95, scores
