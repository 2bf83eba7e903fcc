"""scikit-learn workload sklearn-digits: ``fastnn.sklearn.NeuralNetClassifier`` against
``sklearn.neural_network.MLPClassifier`` with the same model and training on the shipped digits
(8x8 images flattened to 64 features / 16, a stratified 75/25 split): one hidden layer of 100 ReLU
units, softmax output, Adam (lr 0.001), batch 32, EPOCHS epochs with shuffling, no L2 penalty and
no early stopping in either. Reports the median fit time in ms (ratio > 1: fastnn faster) and both
test accuracies. MLPClassifier's BLAS is limited to the same thread count (threadpoolctl).

    python benchmarks/bench_sklearn.py --threads 1,2
    python benchmarks/run.py --workloads sklearn-digits --threads 2
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import fastnn as fnn  # noqa: E402
from fastnn.data import load_digits, train_test_split  # noqa: E402

EPOCHS, BATCH, HIDDEN, LR = 30, 32, (100,), 0.001


def _data():
    x, y = load_digits()
    x = x.reshape(len(x), -1) / 16.0
    return train_test_split(x, y, 0.25, seed=2)


def bench_sklearn_digits(report, threads, repeats, min_seconds):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from fastnn.sklearn import NeuralNetClassifier

    x_tr, x_te, y_tr, y_te = _data()
    ours = NeuralNetClassifier(hidden_layer_sizes=HIDDEN, activation="relu", optimizer="adam", learning_rate=LR,
                               epochs=EPOCHS, batch_size=BATCH, random_state=0)
    peer = MLPClassifier(hidden_layer_sizes=HIDDEN, activation="relu", solver="adam", learning_rate_init=LR,
                         max_iter=EPOCHS, batch_size=BATCH, alpha=0.0, shuffle=True, tol=0.0,
                         n_iter_no_change=EPOCHS + 1, early_stopping=False, random_state=0)
    common.set_threads(threads)
    with common.numpy_threads(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)     # max_iter reached: the point here
        times = common.interleaved({"fastnn": lambda: ours.fit(x_tr, y_tr), "sklearn": lambda: peer.fit(x_tr, y_tr)},
                                   repeats, min_seconds)
        acc_ours, acc_peer = ours.score(x_te, y_te), peer.score(x_te, y_te)
    report.add("sklearn-digits", threads, "ms/fit", 1e3 * common.median(times["fastnn"]), "sklearn",
               1e3 * common.median(times["sklearn"]), higher_is_better=False, epochs=EPOCHS, batch=BATCH,
               hidden=list(HIDDEN), accuracy_fastnn=acc_ours, accuracy_sklearn=acc_peer)
    print(f"{'':<14} test accuracy: fastnn {acc_ours:.4f}  sklearn MLPClassifier {acc_peer:.4f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.0, help="minimum seconds per timed block")
    parser.add_argument("--json", default=None, help="append result rows to this JSON-lines file")
    args = parser.parse_args(argv)
    report = common.Report(args.json)
    print(f"# {report.meta}")
    fnn.seed(0)
    for threads in map(int, args.threads.split(",")):
        bench_sklearn_digits(report, threads, args.repeats, args.seconds)
    return report


if __name__ == "__main__":
    main()
