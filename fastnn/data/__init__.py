"""Small real data sets shipped with fastnn (no download): the demo and examples use them.

* ``load_breast_cancer()``: the Wisconsin Diagnostic Breast Cancer data (569 tumours, 30 cell-nucleus
  measurements each; label 1 = malignant, 0 = benign), UCI / W. H. Wolberg et al., as distributed
  with scikit-learn (BSD-3-Clause).
* ``load_digits()``: 1797 handwritten digits as 8x8 images with pixel values 0..16 (UCI optical
  recognition of handwritten digits), as distributed with scikit-learn (BSD-3-Clause).
"""
from __future__ import annotations

import gzip
import os

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))


def _read(name: str):
    with gzip.open(os.path.join(_HERE, name), "rt") as f:
        header = f.readline().strip().split(",")
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return header, table


def load_breast_cancer():
    """Return ``(x, y, feature_names)``: x float64 (569, 30), y int64 (569,), 1 = malignant."""
    header, table = _read("breast_cancer.csv.gz")
    return table[:, :-1], table[:, -1].astype(np.int64), header[:-1]


def load_digits():
    """Return ``(x, y)``: x float64 (1797, 8, 8) with values 0..16, y int64 (1797,) digits 0..9."""
    _, table = _read("digits.csv.gz")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def train_test_split(x, y, test_fraction: float = 0.25, seed: int = 0):
    """Stratified shuffled split: every class keeps its share in both parts."""
    rng = np.random.default_rng(seed)
    test = []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        test.extend(idx[: int(round(len(idx) * test_fraction))])
    mask = np.zeros(len(y), dtype=bool)
    mask[test] = True
    train_idx, test_idx = np.flatnonzero(~mask), np.flatnonzero(mask)
    rng.shuffle(train_idx)
    return x[train_idx], x[test_idx], y[train_idx], y[test_idx]


def standardize(train, *others):
    """Scale features to zero mean and unit variance using the training statistics only."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return tuple((a - mean) / std for a in (train, *others))
