"""``python -m fastnn demo``: train on real data shipped with the package and report test
accuracy and throughput."""
from __future__ import annotations

import time

import numpy as np

from . import Sequential, _info, layers, optimizers, seed
from .data import load_breast_cancer, load_digits, standardize, train_test_split


def _train_and_report(title: str, header: str, model, data, batch_size: int, epochs: int, verbose: int) -> float:
    """Fit on the training part (10 % held out for validation), then print and return the test accuracy
    with the training and inference throughput."""
    x_tr, x_te, y_tr, y_te = data
    print(header)
    t0 = time.perf_counter()
    model.fit(x_tr, y_tr, batch_size=batch_size, epochs=epochs, validation_split=0.1, verbose=verbose)
    fit_seconds = time.perf_counter() - t0
    acc = model.evaluate(x_te, y_te)["accuracy"]
    t0 = time.perf_counter()
    model.predict(x_te)
    infer = time.perf_counter() - t0
    print(f"==> {title}: test accuracy {acc:.4f} on {len(y_te)} held-out samples; training "
          f"{epochs * len(x_tr) / fit_seconds:,.0f} samples/s, inference "
          f"{len(x_te) / max(infer, 1e-9):,.0f} samples/s\n")
    return acc


def breast_cancer(verbose: int = 1) -> float:
    """MLP on the 30 Wisconsin measurements: sigmoid + binary cross-entropy, SGD with momentum."""
    x, y, _ = load_breast_cancer()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, 0.25, seed=1)
    x_tr, x_te = standardize(x_tr, x_te)
    model = Sequential([
        layers.Dense(32, activation="relu"),
        layers.Dropout(0.1),
        layers.Dense(1, activation="sigmoid"),
    ], input_shape=(30,), name="breast_cancer_mlp")
    model.compile(optimizer=optimizers.SGD(learning_rate=0.01, momentum=0.9), loss="binary_crossentropy")
    return _train_and_report("breast cancer",
                             "Breast-cancer diagnosis (Wisconsin, 30 measurements -> malignant?)",
                             model, (x_tr, x_te, y_tr, y_te),
                             batch_size=16, epochs=30, verbose=verbose)


def digits(verbose: int = 1) -> float:
    """MLP with softmax on the 8x8 handwritten digits."""
    x, y = load_digits()
    x = x.reshape(len(x), -1) / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, 0.25, seed=2)
    model = Sequential([
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(10, activation="softmax"),
    ], input_shape=(64,), name="digits_mlp")
    model.compile(optimizer=optimizers.SGD(learning_rate=0.05, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    return _train_and_report("digits",
                             "Handwritten digits (8x8 images, MLP with softmax)",
                             model, (x_tr, x_te, y_tr, y_te),
                             batch_size=32, epochs=30, verbose=verbose)


def digits_cnn(verbose: int = 1) -> float:
    """A small CNN on the 8x8 handwritten digits as (N, 1, 8, 8) images."""
    x, y = load_digits()
    x = (x / 16.0).reshape(len(x), 1, 8, 8)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, 0.25, seed=2)
    model = Sequential([
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPool2D(2),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], input_shape=(1, 8, 8), name="digits_cnn")
    model.compile(optimizer=optimizers.SGD(learning_rate=0.02, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    return _train_and_report("digits cnn",
                             "Handwritten digits (8x8 images, CNN: Conv2D-MaxPool2D-Conv2D-Dense)",
                             model, (x_tr, x_te, y_tr, y_te),
                             batch_size=32, epochs=20, verbose=verbose)


def digits_lstm(verbose: int = 1) -> float:
    """LSTM reading the 8x8 handwritten digits row by row: 8 steps of 8 pixels."""
    x, y = load_digits()
    x = x.reshape(len(x), 8, 8) / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, 0.25, seed=2)
    model = Sequential([
        layers.LSTM(64),
        layers.Dense(10, activation="softmax"),
    ], input_shape=(8, 8), name="digits_lstm")
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy")
    return _train_and_report("digits lstm",
                             "Handwritten digits read row by row (8 steps of 8 pixels, LSTM)",
                             model, (x_tr, x_te, y_tr, y_te),
                             batch_size=32, epochs=20, verbose=verbose)


# name -> function(verbose) returning the test accuracy; a new demo adds one line here.
DEMOS = {
    "breast_cancer": breast_cancer,
    "digits": digits,
    "digits_cnn": digits_cnn,
    "digits_lstm": digits_lstm,
}


# ---- integer sequences: Embedding + LSTM ---------------------------------------------------------

CODES_VOCAB, CODES_STEPS = 200, 30
MARKER_A, MARKER_B = 1, 2        # code 0 is padding; 3..199 are other "diagnosis codes"


def make_code_sequences(n: int, seed_: int = 0):
    """n synthetic patient histories, deterministic for a seed: ``(x, y)`` with x ``(n, 30)`` int64
    codes (histories of 10 to 30 visits, padded with 0 in front as Keras' ``pad_sequences``),
    each holding marker codes 1 and 2 once among random other codes; y = 1 when code 1 came
    first. The label depends on the order of two events far apart, which a bag of codes cannot
    see and an LSTM over embedded codes learns."""
    rng = np.random.default_rng([seed_, 11])
    x = np.zeros((n, CODES_STEPS), dtype=np.int64)
    y = rng.integers(0, 2, n)
    for i in range(n):
        length = int(rng.integers(10, CODES_STEPS + 1))
        seq = rng.integers(3, CODES_VOCAB, length)
        a, b = rng.choice(length, 2, replace=False)
        first, second = (min(a, b), max(a, b))
        seq[first], seq[second] = (MARKER_A, MARKER_B) if y[i] else (MARKER_B, MARKER_A)
        x[i, CODES_STEPS - length:] = seq
    return x, y


def codes_lstm(verbose: int = 1) -> float:
    """Embedding + LSTM on integer code sequences: which of two marker codes came first."""
    x, y = make_code_sequences(4000)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, 0.25, seed=3)
    model = Sequential([
        layers.Embedding(CODES_VOCAB, 16),
        layers.LSTM(32),
        layers.Dense(2, activation="softmax"),
    ], input_shape=(CODES_STEPS,), name="codes_lstm")
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy")
    return _train_and_report("codes lstm",
                             "Which marker code came first (integer sequences of 30 codes, Embedding + LSTM)",
                             model, (x_tr, x_te, y_tr, y_te),
                             batch_size=64, epochs=6, verbose=verbose)


DEMOS["codes_lstm"] = codes_lstm


def main(verbose: int = 1, only=None) -> dict:
    seed(0)
    cfg = _info.config()
    print(f"fastnn {cfg['version']}: kernels {cfg['kernel_variant']}, OpenMP {cfg['openmp']}, "
          f"{cfg['threads']} threads\n")
    results = {name: fn(verbose) for name, fn in DEMOS.items() if only is None or name in only}
    print("Summary: " + ", ".join(f"{k} test accuracy {v:.4f}" for k, v in results.items()))
    return results


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()


def digits_bn(verbose: int = 1) -> float:
    """A CNN with batch normalization on the 8x8 digits: Conv2D -> BatchNormalization -> ReLU
    blocks and global average pooling instead of Flatten + a large Dense layer."""
    x, y = load_digits()
    x = (x / 16.0).reshape(len(x), 1, 8, 8)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, 0.25, seed=2)
    model = Sequential([
        layers.Conv2D(16, 3, padding="same", use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
        layers.Conv2D(32, 3, padding="same", use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
        layers.MaxPool2D(2),
        layers.Conv2D(64, 3, padding="same", use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
        layers.GlobalAveragePooling2D(),
        layers.Dense(10, activation="softmax"),
    ], input_shape=(1, 8, 8), name="digits_bn")
    # the rate falls by 0.8 every epoch (38 batches)
    rate = optimizers.schedules.ExponentialDecay(0.01, 38, 0.8)
    model.compile(optimizer=optimizers.Adam(learning_rate=rate), loss="sparse_categorical_crossentropy")
    return _train_and_report("digits bn",
                             "Handwritten digits (8x8 images, CNN: Conv2D-BatchNormalization-ReLU blocks, "
                             "GlobalAveragePooling2D)",
                             model, (x_tr, x_te, y_tr, y_te),
                             batch_size=32, epochs=15, verbose=verbose)


DEMOS["digits_bn"] = digits_bn
