"""Callbacks (``fnn.callbacks``): the ``Callback`` base class, History (returned by fit),
EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler, CSVLogger and
TerminateOnNaN, with Keras' names, defaults and semantics."""
from __future__ import annotations

import csv
import math
import os
import string
import warnings

import numpy as np

from ._validate import fail, positive_int, real


class Callback:
    """Base class of fit's callbacks: override the hooks you need.

    ``fit`` sets ``self.model`` (the Sequential being trained) and ``self.params`` (``epochs``,
    ``steps`` per epoch, ``samples``, ``batch_size``, ``verbose``, ``do_validation`` and the
    ``metrics`` names the logs will hold) before ``on_train_begin``. Setting
    ``self.model.stop_training = True`` stops training after the current batch.

    Hooks (``logs`` is a dict, or None):

    - ``on_train_begin(logs)``, ``on_train_end(logs)``
    - ``on_epoch_begin(epoch, logs)``; ``on_epoch_end(epoch, logs)`` with the epoch's ``loss``,
      metrics and their ``val_`` twins (epochs count from 0)
    - ``on_train_batch_begin(batch, logs)``; ``on_train_batch_end(batch, logs)`` with the batch
      ``loss`` and ``size``; they default to ``on_batch_begin``/``on_batch_end`` (older names).

    Examples
    --------
    >>> import fastnn as fnn
    >>> class StopAt(fnn.callbacks.Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         if logs["loss"] < 0.1:
    ...             self.model.stop_training = True
    """

    model = None
    params: dict = {}

    #: whether the callback writes files: a data-parallel fit runs such callbacks on rank 0 only
    writes_files = False

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)


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

    def plot(self, path=None):
        """Draw each metric and its ``val_`` twin against the epochs (one panel per metric) with
        matplotlib; returns the Figure and, when ``path`` is given, saves it there as PNG.

        Needs matplotlib: ``pip install "fastnn[plot]"``.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as err:
            raise ImportError('History.plot needs matplotlib: pip install "fastnn[plot]" '
                              '(or pip install matplotlib)') from err
        names = [k for k in self.history if not k.startswith("val_")]
        names += [k[4:] for k in self.history if k.startswith("val_") and k[4:] not in self.history]
        if not names:
            raise ValueError("History.plot: no epochs recorded (fit has not run, or ran 0 epochs)")
        fig = Figure(figsize=(4.5 * len(names), 3.4), layout="constrained")
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        epochs = [e + 1 for e in self.epoch]
        for ax, name in zip(axes, names):
            for key, style in ((name, "-o"), (f"val_{name}", "--s")):
                if key in self.history:
                    ax.plot(epochs[:len(self.history[key])], self.history[key], style, markersize=3, label=key)
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend()
        if path is not None:
            fig.savefig(os.fspath(path), format="png", dpi=100)
        return fig


class _Monitor(Callback):
    """Shared by the callbacks that watch one log value: the mode, the improvement test and a
    warning (once per fit, as Keras) when the value is missing from the logs."""

    def _setup_monitor(self, monitor, mode, min_delta, where: str) -> None:
        if not isinstance(monitor, str):
            fail(f"{where}(monitor=...)", "a str", repr(monitor), TypeError)
        if mode not in ("auto", "min", "max"):
            fail(f"{where}(mode=...)", "'auto', 'min' or 'max'", repr(mode))
        self.monitor = monitor
        # "auto" (Keras): accuracy-like names are maximised, everything else minimised
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.min_delta = abs(real(min_delta, f"{where}(min_delta=...)"))
        self._reset_monitor()

    def _reset_monitor(self) -> None:
        self.best = np.inf if self.mode == "min" else -np.inf
        self._warned = False

    def _improved(self, value) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _value(self, logs, consequence: str):
        value = (logs or {}).get(self.monitor)
        if value is None and not self._warned:
            self._warned = True
            warnings.warn(f"{type(self).__name__}: monitor {self.monitor!r} is not in the logs "
                          f"(available: {sorted(logs or {})}); {consequence}", stacklevel=3)
        return value


class EarlyStopping(_Monitor):
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
        self._setup_monitor(monitor, mode, min_delta, "EarlyStopping")
        self.patience = positive_int(patience, "EarlyStopping(patience=...)", minimum=0)
        self.restore_best_weights = bool(restore_best_weights)
        self.stopped_epoch = None
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        self._reset_monitor()
        self.wait = 0
        self.best_weights = None
        self.stopped_epoch = None
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = self._value(logs, "early stopping is off")
        if value is None:
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


def _format_fields(pattern: str, where: str) -> list:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as err:
        raise ValueError(f"{where}: invalid format string {pattern!r} ({err})") from None


class ModelCheckpoint(_Monitor):
    """Save the model (weights, optimizer state, schedule step, RNG streams: a file that
    ``fnn.load_model`` resumes training from) at the end of every epoch.

    Parameters
    ----------
    filepath : str or path
        May hold ``{epoch}`` (1-based) and log keys with format specs, e.g.
        ``"ck-{epoch:02d}-{val_loss:.3f}.npz"``. Its folder must exist.
    monitor : str, default "val_loss"
    save_best_only : bool, default False
        Save only when ``monitor`` improves on the best value so far (an epoch without the
        value saves nothing and warns once).
    mode : {"auto", "min", "max"}

    Examples
    --------
    >>> import fastnn as fnn
    >>> ck = fnn.callbacks.ModelCheckpoint("best.npz", monitor="val_accuracy", save_best_only=True)
    """

    writes_files = True

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto"):
        try:
            self.filepath = os.fspath(filepath)
        except TypeError:
            fail("ModelCheckpoint(filepath=...)", "a str or path", type(filepath).__name__, TypeError)
        self._fields = _format_fields(self.filepath, "ModelCheckpoint(filepath=...)")
        self._setup_monitor(monitor, mode, 0.0, "ModelCheckpoint")
        if not isinstance(save_best_only, bool):
            fail("ModelCheckpoint(save_best_only=...)", "a bool", repr(save_best_only), TypeError)
        self.save_best_only = save_best_only
        self.saved: list = []     # paths written, in order

    def on_train_begin(self, logs=None):
        # Check the path against the keys this fit will log before any epoch runs: a typo must
        # not cost the training that precedes the first save.
        known = set(self.params.get("metrics", ())) | {"epoch"}
        unknown = [f for f in self._fields if f.split(".")[0].split("[")[0] not in known]
        if unknown:
            raise ValueError(f"ModelCheckpoint(filepath={self.filepath!r}): unknown key(s) {unknown}; this fit "
                             f"logs {sorted(known)}")
        sample = self._path(0, dict.fromkeys(known - {"epoch"}, 0.0))
        folder = os.path.dirname(os.path.abspath(sample))
        if not os.path.isdir(folder):
            raise ValueError(f"ModelCheckpoint(filepath={self.filepath!r}): folder {folder!r} does not exist")
        self._reset_monitor()

    def _path(self, epoch: int, logs: dict) -> str:
        try:
            return self.filepath.format(**{**logs, "epoch": epoch + 1})
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"ModelCheckpoint(filepath={self.filepath!r}): cannot format it with the logs "
                             f"{sorted(logs)} ({type(err).__name__}: {err})") from None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = self._value(logs, "no checkpoint is saved")
            if value is None or not self._improved(value):
                return
            self.best = value
        path = self._path(epoch, logs)
        self.model.save(path)
        self.saved.append(path)


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs, then wait ``cooldown`` epochs; never below ``min_lr`` (Keras' rule).
    The optimizer needs a float learning rate, not a schedule."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4, cooldown=0, min_lr=0.0,
                 mode="auto", verbose=0):
        self._setup_monitor(monitor, mode, min_delta, "ReduceLROnPlateau")
        self.factor = real(factor, "ReduceLROnPlateau(factor=...)", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        self.patience = positive_int(patience, "ReduceLROnPlateau(patience=...)", minimum=0)
        self.cooldown = positive_int(cooldown, "ReduceLROnPlateau(cooldown=...)", minimum=0)
        self.min_lr = real(min_lr, "ReduceLROnPlateau(min_lr=...)", lo=0.0)
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        _check_float_rate(self.model, "ReduceLROnPlateau")
        self._reset_monitor()
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs=None):
        value = self._value(logs, "the learning rate is left as it is")
        if value is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.model.optimizer
                old = opt.learning_rate
                if old > self.min_lr:
                    opt.learning_rate = max(old * self.factor, self.min_lr)
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {opt.learning_rate:g}.")
                self.cooldown_counter = self.cooldown
                self.wait = 0


def _check_float_rate(model, who: str) -> None:
    if model.optimizer.schedule is not None:
        raise ValueError(f"{who}: the optimizer's learning rate is a schedule "
                         f"({type(model.optimizer.schedule).__name__}); {who} sets a float rate")


class LearningRateScheduler(Callback):
    """Before each epoch, set the optimizer's learning rate to ``schedule(epoch, lr)`` (epoch
    from 0, lr the current rate). The optimizer needs a float learning rate."""

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            fail("LearningRateScheduler(schedule=...)", "a function (epoch, lr) -> lr", type(schedule).__name__,
                 TypeError)
        self.schedule = schedule
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        _check_float_rate(self.model, "LearningRateScheduler")

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        lr = self.schedule(epoch, opt.learning_rate)
        opt.learning_rate = real(lr, f"LearningRateScheduler: schedule({epoch}, ...)", lo=0.0, lo_open=True)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {opt.learning_rate:g}.")


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` (from 0), then the log keys in sorted order.

    With ``append=True`` an existing file gets more rows (and no second header)."""

    writes_files = True

    def __init__(self, filename, separator=",", append=False):
        try:
            self.filename = os.fspath(filename)
        except TypeError:
            fail("CSVLogger(filename=...)", "a str or path", type(filename).__name__, TypeError)
        if not isinstance(separator, str) or len(separator) != 1:
            fail("CSVLogger(separator=...)", "a one-character str", repr(separator))
        self.separator = separator
        self.append = bool(append)
        self._file = None
        self._keys = None

    def on_train_begin(self, logs=None):
        folder = os.path.dirname(os.path.abspath(self.filename))
        if not os.path.isdir(folder):
            raise ValueError(f"CSVLogger(filename={self.filename!r}): folder {folder!r} does not exist")
        self._header = not (self.append and os.path.isfile(self.filename) and os.path.getsize(self.filename) > 0)
        self._file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer = csv.writer(self._file, delimiter=self.separator)
            if self._header:
                self._writer.writerow(["epoch", *self._keys])
        self._writer.writerow([epoch, *(logs.get(k, "") for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self):
        if getattr(self, "_file", None) is not None:
            self._file.close()


class TerminateOnNaN(Callback):
    """Stop training after the first batch whose loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            print(f"Batch {batch}: invalid loss, terminating training")
            self.model.stop_training = True


__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler",
           "CSVLogger", "TerminateOnNaN"]
