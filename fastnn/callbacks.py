"""Callbacks (``fnn.callbacks``): History (returned by fit) and EarlyStopping."""
from __future__ import annotations

import warnings

import numpy as np

from ._validate import fail, positive_int, real


class Callback:
    """Base class; ``fit`` calls these hooks. ``self.model`` is set before training starts."""

    model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...


class History(Callback):
    """Records the logs of every epoch: ``history`` maps "loss", metric names and their
    "val_" twins to lists with one value per epoch; ``epoch`` lists the epoch indices."""

    def __init__(self):
        self.history: dict = {}
        self.epoch: list = []

    def on_train_begin(self, logs=None):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str, default "val_loss"
    patience : int, default 0
        Epochs without improvement before stopping.
    restore_best_weights : bool, default False
        Restore the weights of the best epoch when training stops (or ends).
    min_delta : float, default 0
        Smallest change that counts as an improvement.
    mode : {"auto", "min", "max"}
        "auto" maximises metrics named like accuracy, minimises the rest.
    """

    def __init__(self, monitor="val_loss", patience=0, restore_best_weights=False, min_delta=0.0, mode="auto"):
        if not isinstance(monitor, str):
            fail("EarlyStopping(monitor=...)", "a str", repr(monitor), TypeError)
        self.monitor = monitor
        self.patience = positive_int(patience, "EarlyStopping(patience=...)", minimum=0)
        self.restore_best_weights = bool(restore_best_weights)
        self.min_delta = abs(real(min_delta, "EarlyStopping(min_delta=...)"))
        if mode not in ("auto", "min", "max"):
            fail("EarlyStopping(mode=...)", "'auto', 'min' or 'max'", repr(mode))
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        self.stopped_epoch = None
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.best = np.inf if self.mode == "min" else -np.inf
        self.best_weights = None
        self.stopped_epoch = None
        self.best_epoch = None

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"EarlyStopping: monitor {self.monitor!r} is not in the logs "
                          f"(available: {sorted(logs or {})})", stacklevel=2)
            return
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
