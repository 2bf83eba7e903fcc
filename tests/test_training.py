"""The training loop: learning-rate schedules, RMSprop/AdamW, weighted losses, callbacks, plots and
exact resumption from checkpoints."""
from __future__ import annotations

import csv
import math
import os
import warnings

import numpy as np
import pytest

import fastnn as fnn
from fastnn import callbacks as cb
from fastnn.backend import cpu
from fastnn.backend import numpy_ref as ref
from fastnn.data import load_breast_cancer, standardize, train_test_split
from fastnn.layers import Dense, Dropout
from fastnn.optimizers import SGD, Adam, AdamW, RMSprop, schedules

# ---- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay(staircase):
    s = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=staircase)
    for step in (0, 1, 9, 10, 11, 25, 1000):
        p = math.floor(step / 10) if staircase else step / 10
        assert s(step) == pytest.approx(0.1 * 0.5 ** p, rel=1e-15)
    assert s(0) == 0.1 and s(10) == pytest.approx(0.05)


def _keras_cosine(step, initial, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    """Keras 3's CosineDecay.__call__, transcribed."""
    def decay(s, from_lr):
        frac = s / decay_steps
        return from_lr * ((1 - alpha) * 0.5 * (1.0 + math.cos(math.pi * frac)) + alpha)
    if warmup_target is None:
        return decay(min(step, decay_steps), initial)
    step = min(step, decay_steps + warmup_steps)
    if step < warmup_steps:
        return (warmup_target - initial) * (step / warmup_steps) + initial
    return decay(step - warmup_steps, warmup_target)


@pytest.mark.parametrize("kw", [{}, {"alpha": 0.1}, {"warmup_target": 0.5, "warmup_steps": 5},
                                {"alpha": 0.2, "warmup_target": 1.0, "warmup_steps": 1}])
def test_cosine_decay(kw):
    s = schedules.CosineDecay(0.1, 20, **kw)
    for step in (0, 1, 4, 5, 6, 19, 20, 21, 25, 26, 500):
        assert s(step) == pytest.approx(_keras_cosine(step, 0.1, 20, **kw), rel=1e-14, abs=1e-16)
    peak = kw.get("warmup_target", 0.1)
    assert s(10 ** 6) == pytest.approx(kw.get("alpha", 0.0) * peak, abs=1e-15)
    assert schedules.CosineDecay(0.0, 10, warmup_target=0.1, warmup_steps=10)(5) == pytest.approx(0.05)


def test_piecewise_constant_decay():
    s = schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [s(t) for t in (0, 10, 11, 20, 21, 10 ** 6)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]


@pytest.mark.parametrize("make", [
    lambda: schedules.ExponentialDecay(0.0, 10, 0.5), lambda: schedules.ExponentialDecay(0.1, 0, 0.5),
    lambda: schedules.ExponentialDecay(0.1, -3, 0.5), lambda: schedules.ExponentialDecay(0.1, 10, -0.5),
    lambda: schedules.ExponentialDecay(float("nan"), 10, 0.5), lambda: schedules.CosineDecay(-0.1, 10),
    lambda: schedules.CosineDecay(0.1, 0), lambda: schedules.CosineDecay(0.1, 10, alpha=1.5),
    lambda: schedules.CosineDecay(0.0, 10), lambda: schedules.CosineDecay(0.1, 10, warmup_target=0.0, warmup_steps=3),
    lambda: schedules.CosineDecay(0.1, 10, warmup_steps=-1),
    lambda: schedules.PiecewiseConstantDecay([5, 5], [1, 2, 3]),
    lambda: schedules.PiecewiseConstantDecay([5, 3], [1, 2, 3]), lambda: schedules.PiecewiseConstantDecay([5], [1]),
    lambda: schedules.PiecewiseConstantDecay([5], [1, 0]), lambda: schedules.PiecewiseConstantDecay(5, [1, 2]),
    lambda: schedules.CosineDecay(0.1, 2.5), lambda: schedules.ExponentialDecay(0.1, 10, 0.5, staircase=1),
])
def test_bad_schedules(make):
    with pytest.raises((ValueError, TypeError)):
        make()


def test_schedule_is_evaluated_at_iterations_and_reaches_the_kernel(rng):
    """The first step uses step 0; each step's rate is the schedule at the steps taken before it,
    and training with it equals training with those rates set by hand, bit for bit."""
    sched = schedules.PiecewiseConstantDecay([0, 2], [0.3, 0.1, 0.02])
    x, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    models = []
    for opt in (SGD(sched, momentum=0.5), SGD(0.3, momentum=0.5)):
        fnn.seed(5)
        m = fnn.Sequential([Dense(3, activation="softmax")], input_shape=(4,))
        m.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
        models.append(m)
    sched_opt, hand = models[0].optimizer, models[1].optimizer
    assert sched_opt.learning_rate == 0.3 and sched_opt.schedule is sched
    for step in range(5):
        hand.learning_rate = sched(step)
        assert sched_opt.learning_rate == sched(step) and sched_opt.iterations == step
        for m in models:
            m.train_on_batch(x, y)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert sched_opt.learning_rate == 0.02


# ---- RMSprop and AdamW against PyTorch ------------------------------------------------------------

def _torch_run(make_torch, p0, grads):
    torch = pytest.importorskip("torch")
    p = torch.tensor(p0.copy(), dtype=torch.float64, requires_grad=True)
    opt = make_torch(torch, [p])
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9}, {"centered": True}, {"centered": True, "momentum": 0.5},
                                {"weight_decay": 0.01, "rho": 0.8}])
def test_rmsprop_matches_torch(kw, rng):
    p0, grads = rng.standard_normal(257), [rng.standard_normal(257) for _ in range(8)]
    opt = RMSprop(learning_rate=0.01, epsilon=1e-7, **kw)
    p = p0.copy()
    for g in grads:
        opt.apply_gradients([(g, p)])
    want = _torch_run(lambda torch, ps: torch.optim.RMSprop(
        ps, lr=0.01, alpha=kw.get("rho", 0.9), eps=1e-7, momentum=kw.get("momentum", 0.0),
        centered=kw.get("centered", False), weight_decay=kw.get("weight_decay", 0.0)), p0, grads)
    np.testing.assert_allclose(p, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("wd", [0.004, 0.1, 0.0])
def test_adamw_matches_torch(wd, rng):
    p0, grads = rng.standard_normal(129), [rng.standard_normal(129) for _ in range(8)]
    opt = AdamW(learning_rate=0.01, weight_decay=wd, epsilon=1e-7)
    p = p0.copy()
    for g in grads:
        opt.apply_gradients([(g, p)])
    want = _torch_run(lambda torch, ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=wd, eps=1e-7), p0, grads)
    np.testing.assert_allclose(p, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: RMSprop(0.01, momentum=0.9, centered=True), lambda: AdamW(0.01, 0.1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_c_updates_match_the_reference_and_thread_counts(make, dtype, rng):
    p0 = rng.standard_normal(70_001).astype(dtype)
    grads = [rng.standard_normal(p0.size).astype(dtype) for _ in range(3)]
    out = {}
    for name, be, threads in (("ref", ref, 1), ("c1", cpu, 1), ("c2", cpu, 2)):
        fnn.set_num_threads(threads)
        opt, p = make(), p0.copy()
        for g in grads:
            opt.iterations += 1
            opt._step(be, p, g, "", opt.learning_rate)
        out[name] = p
    np.testing.assert_array_equal(out["c1"], out["c2"])
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["c1"], out["ref"], **tol)


def test_new_optimizers_by_name_and_defaults():
    assert isinstance(fnn.optimizers.get("rmsprop"), RMSprop) and isinstance(fnn.optimizers.get("adamw"), AdamW)
    r, a = RMSprop(), AdamW()
    assert (r.learning_rate, r.rho, r.momentum, r.epsilon, r.centered) == (0.001, 0.9, 0.0, 1e-7, False)
    assert (a.learning_rate, a.weight_decay, a.beta_1, a.beta_2, a.epsilon) == (0.001, 0.004, 0.9, 0.999, 1e-7)
    for bad in (lambda: RMSprop(rho=1.0), lambda: RMSprop(momentum=-1), lambda: RMSprop(centered="yes"),
                lambda: AdamW(weight_decay=-0.1), lambda: RMSprop(learning_rate=0), lambda: AdamW(clipnorm=0)):
        with pytest.raises((ValueError, TypeError)):
            bad()


# ---- weighted losses --------------------------------------------------------------------------------

def _per_sample_losses(name, out, y):
    """Hand-computed loss of each sample (float64)."""
    out = out.astype(np.float64)
    if name == "sparse_categorical_crossentropy":
        return -np.log(out[np.arange(len(y)), y])
    if name == "categorical_crossentropy":
        return -(y * np.log(out)).sum(axis=1)
    if name == "binary_crossentropy":
        return -(y * np.log(out) + (1 - y) * np.log1p(-out)).reshape(len(out), -1).mean(axis=1)
    return ((out - y) ** 2).reshape(len(out), -1).mean(axis=1)


@pytest.mark.parametrize("loss, last, k", [
    ("sparse_categorical_crossentropy", "softmax", 4), ("categorical_crossentropy", "softmax", 4),
    ("binary_crossentropy", "sigmoid", 1), ("binary_crossentropy", "sigmoid", 3), ("mse", None, 2)])
def test_weighted_loss_is_the_mean_of_weight_times_loss(loss, last, k, rng, float64_default):
    fnn.seed(3)
    model = fnn.Sequential([Dense(k, activation=last)], input_shape=(5,))
    model.compile(optimizer="sgd", loss=loss, metrics=())
    x = rng.standard_normal((23, 5))
    y = {"sparse_categorical_crossentropy": rng.integers(0, k, 23),
         "categorical_crossentropy": np.eye(k)[rng.integers(0, k, 23)],
         "binary_crossentropy": rng.integers(0, 2, (23, k)).astype(float),
         "mse": rng.standard_normal((23, k))}[loss]
    w = rng.uniform(0, 3, 23)
    want = float(np.mean(w * _per_sample_losses(loss, model.predict(x), y)))
    assert model.evaluate(x, y, sample_weight=w)["loss"] == pytest.approx(want, rel=1e-12)
    assert model.loss(y, model.predict(x), sample_weight=w) == pytest.approx(want, rel=1e-12)
    before = model.get_weights()
    assert model.train_on_batch(x, y, sample_weight=w) == pytest.approx(want, rel=1e-12)
    # zero weights train nothing; weights of 2 equal the samples repeated
    model.set_weights(before)
    model.train_on_batch(x, y, sample_weight=np.zeros(23))
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loss, y", [("sparse_categorical_crossentropy", None), ("categorical_crossentropy", None)])
def test_weight_gradient_equals_repeated_samples(loss, y, rng, float64_default):
    """Integer weights = the samples repeated: the same step (to float64 rounding)."""
    x = rng.standard_normal((6, 4))
    labels = rng.integers(0, 3, 6)
    y = labels if loss.startswith("sparse") else np.eye(3)[labels]
    w = np.array([1, 2, 0, 3, 1, 1])
    results = []
    for xs, ys, ws in ((x, y, w), (np.repeat(x, w, axis=0), np.repeat(y, w, axis=0), None)):
        fnn.seed(1)
        m = fnn.Sequential([Dense(3, activation="softmax")], input_shape=(4,))
        m.compile(optimizer=SGD(0.5), loss=loss)
        # the mean over 6 samples vs over w.sum() = 8: rescale the weights to compare
        m.train_on_batch(xs, ys, sample_weight=None if ws is None else ws * len(x) / w.sum())
        results.append(m.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_class_weight_maps_classes_and_multiplies_sample_weight(rng, float64_default):
    fnn.seed(2)
    model = fnn.Sequential([Dense(3, activation="softmax")], input_shape=(4,))
    model.compile(loss="sparse_categorical_crossentropy")
    y = rng.integers(0, 3, 10)
    sw = rng.uniform(0.5, 2, 10)
    got = model._sample_weights(y, sw, {0: 2.0, 2: 0.5}, "fit")
    np.testing.assert_allclose(got, sw * np.array([2.0, 1.0, 0.5])[y])
    model2 = fnn.Sequential([Dense(1, activation="sigmoid")], input_shape=(4,))
    model2.compile(loss="binary_crossentropy")
    yb = rng.integers(0, 2, 10)
    np.testing.assert_allclose(model2._sample_weights(yb.astype(float), None, {1: 4.0}, "fit"), np.where(yb, 4.0, 1.0))


@pytest.mark.parametrize("kwargs, match", [
    ({"sample_weight": np.ones(9)}, "shape"), ({"sample_weight": -np.ones(10)}, ">= 0"),
    ({"sample_weight": np.full(10, np.nan)}, ">= 0"), ({"sample_weight": np.full(10, np.inf)}, ">= 0"),
    ({"class_weight": {3: 1.0}}, "class indices"), ({"class_weight": {-1: 1.0}}, "class indices"),
    ({"class_weight": {0: -2.0}}, "number"), ({"class_weight": {0: float("nan")}}, "number"),
    ({"class_weight": [1.0, 2.0]}, "dict"), ({"class_weight": {"a": 1.0}}, "class indices"),
    ({"class_weight": {True: 1.0}}, "class indices"), ({"sample_weight": "heavy"}, "array"),
])
def test_bad_weights(kwargs, match, rng):
    model = fnn.Sequential([Dense(3, activation="softmax")], input_shape=(4,))
    model.compile(loss="sparse_categorical_crossentropy")
    x, y = rng.standard_normal((10, 4)), rng.integers(0, 3, 10)
    w0 = model.get_weights()
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(x, y, epochs=1, verbose=0, **kwargs)
    for a, b in zip(model.get_weights(), w0):
        np.testing.assert_array_equal(a, b)
    mse = fnn.Sequential([Dense(1)], input_shape=(4,))
    mse.compile(loss="mse")
    with pytest.raises(ValueError, match="classification loss"):
        mse.fit(x, y.astype(float), verbose=0, class_weight={0: 2.0})


def test_class_weight_raises_minority_recall():
    """Breast-cancer data with 7 of 8 cases of the smaller class dropped from training: weighting
    that class by the imbalance finds more of its test cases."""
    x, y, _ = load_breast_cancer()
    xtr, xte, ytr, yte = train_test_split(x, y, test_fraction=0.3, seed=0)
    xtr, xte = standardize(xtr, xte)
    minority = int(np.argmin(np.bincount(ytr)))
    keep = np.flatnonzero((ytr != minority) | (np.arange(len(ytr)) % 8 == 0))
    xtr, ytr = xtr[keep], ytr[keep]
    counts = np.bincount(ytr)
    recall = []
    for cw in (None, {minority: counts[1 - minority] / counts[minority]}):
        fnn.seed(0)
        model = fnn.Sequential([Dense(8, activation="relu"), Dense(1, activation="sigmoid")], input_shape=(30,))
        model.compile(optimizer=SGD(0.02), loss="binary_crossentropy")
        model.fit(xtr, ytr.astype(float), batch_size=32, epochs=15, verbose=0, class_weight=cw)
        pred = (model.predict(xte)[:, 0] > 0.5).astype(int)
        recall.append(np.mean(pred[yte == minority] == minority))
    assert recall[1] > recall[0] + 0.05, recall


# ---- callbacks ------------------------------------------------------------------------------------

def _model_and_data(rng, n=64, opt=None):
    fnn.seed(int(rng.integers(1 << 30)))
    model = fnn.Sequential([Dense(16, activation="relu"), Dense(3, activation="softmax")], input_shape=(6,))
    model.compile(optimizer=opt or SGD(0.05), loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((n, 6))
    return model, x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)


class Recorder(cb.Callback):
    def __init__(self):
        self.events, self.logs, self.lrs = [], [], []

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.lrs.append(self.model.optimizer.learning_rate)

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(("batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, logs["size"]))

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))

    def on_train_end(self, logs=None):
        self.events.append("train_end")


def test_callback_hooks_params_and_old_batch_names(rng):
    model, x, y = _model_and_data(rng, n=20)
    rec = Recorder()

    class Old(cb.Callback):   # a subclass written for the older hook names still gets them
        ends = 0

        def on_batch_end(self, batch, logs=None):
            Old.ends += 1
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_split=0.2, callbacks=[rec, Old()])
    assert rec.events[0] == "train_begin" and rec.events[-1] == "train_end"
    assert [e for e in rec.events if e[0] == "batch_end"] == [("batch_end", 0, 8), ("batch_end", 1, 8)] * 2
    assert Old.ends == 4
    assert rec.params["steps"] == 2 and rec.params["epochs"] == 2 and rec.params["do_validation"]
    assert set(rec.logs[0]) == set(rec.params["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_model_checkpoint_save_best_only_writes_exactly_the_improving_epochs(rng, tmp_path):
    model, x, y = _model_and_data(rng, opt=SGD(0.3, momentum=0.9))
    rec = Recorder()
    ck = cb.ModelCheckpoint(tmp_path / "ck-{epoch:02d}-{val_loss:.4f}.npz", save_best_only=True)
    model.fit(x, y, batch_size=8, epochs=12, verbose=0, validation_split=0.25, callbacks=[rec, ck])
    best, expected = np.inf, []
    for epoch, logs in enumerate(rec.logs):
        if logs["val_loss"] < best:
            best = logs["val_loss"]
            expected.append(str(tmp_path / f"ck-{epoch + 1:02d}-{logs['val_loss']:.4f}.npz"))
    assert ck.saved == expected and sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in expected)
    last = fnn.load_model(expected[-1])
    assert last.optimizer.iterations == 6 * (int(expected[-1].split("ck-")[1][:2]))


def test_model_checkpoint_every_epoch_and_mode_max(rng, tmp_path):
    model, x, y = _model_and_data(rng)
    ck = cb.ModelCheckpoint(str(tmp_path / "e{epoch}.npz"))
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[ck])
    assert sorted(os.listdir(tmp_path)) == ["e1.npz", "e2.npz", "e3.npz"]
    ck = cb.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="accuracy", save_best_only=True, mode="max")
    assert ck.mode == "max"
    ck.set_model(model)
    ck.set_params({"metrics": ["loss", "accuracy"]})
    ck.on_train_begin()
    for epoch, acc in enumerate([0.5, 0.4, 0.7, 0.7, 0.9]):
        ck.on_epoch_end(epoch, {"loss": 1.0, "accuracy": acc})
    assert [os.path.basename(p) for p in ck.saved] == ["best.npz"] * 3


@pytest.mark.parametrize("path, match", [("ck-{val_los:.3f}.npz", "unknown key"), ("ck-{epoch", "format"),
                                         ("missing/ck.npz", "does not exist"), ("ck-{val_loss}.npz", "unknown key")])
def test_model_checkpoint_bad_paths_fail_before_training(path, match, rng, tmp_path):
    model, x, y = _model_and_data(rng)
    w0 = model.get_weights()
    with pytest.raises(ValueError, match=match):
        # no validation: val_loss is not a key of this fit
        model.fit(x, y, epochs=2, verbose=0, callbacks=[cb.ModelCheckpoint(str(tmp_path / path),
                                                                           monitor="loss")])
    assert model.optimizer.iterations == 0
    for a, b in zip(model.get_weights(), w0):
        np.testing.assert_array_equal(a, b)


def test_missing_monitor_warns_once_and_training_goes_on(rng, tmp_path):
    model, x, y = _model_and_data(rng)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        hist = model.fit(x, y, epochs=4, verbose=0, callbacks=[
            cb.ModelCheckpoint(str(tmp_path / "b.npz"), save_best_only=True),      # val_loss: no validation
            cb.ReduceLROnPlateau(monitor="val_accuracy"), cb.EarlyStopping(monitor="nope")])
    assert len(hist.history["loss"]) == 4 and not os.listdir(tmp_path)
    msgs = [str(w.message) for w in seen]
    for name in ("ModelCheckpoint", "ReduceLROnPlateau", "EarlyStopping"):
        assert sum(m.startswith(name) for m in msgs) == 1, msgs


def test_reduce_lr_on_plateau_follows_keras_rule(rng):
    model, _, _ = _model_and_data(rng, opt=SGD(1.0))
    r = cb.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1, min_lr=0.2, min_delta=0.0)
    r.set_model(model)
    r.on_train_begin()
    lrs = []
    for epoch, v in enumerate([1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85]):
        r.on_epoch_end(epoch, {"val_loss": v})
        lrs.append(model.optimizer.learning_rate)
    # Keras: a reduction waits out the cooldown, which also counts as the first epoch of the next wait
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2]
    for bad in ({"factor": 1.0}, {"factor": 0.0}, {"patience": -1}, {"min_lr": -1.0}, {"mode": "up"}):
        with pytest.raises((ValueError, TypeError)):
            cb.ReduceLROnPlateau(**bad)


def test_learning_rate_scheduler_sets_each_epoch(rng):
    model, x, y = _model_and_data(rng, opt=SGD(0.1))
    rec = Recorder()
    model.fit(x, y, epochs=4, verbose=0, callbacks=[cb.LearningRateScheduler(lambda e, lr: lr * 0.5 if e else lr),
                                                   rec])
    assert rec.lrs == [0.1, 0.05, 0.025, 0.0125]
    with pytest.raises(ValueError):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[cb.LearningRateScheduler(lambda e, lr: -1.0)])
    sched_model, _, _ = _model_and_data(rng, opt=SGD(schedules.ExponentialDecay(0.1, 10, 0.5)))
    for c in (cb.LearningRateScheduler(lambda e, lr: lr), cb.ReduceLROnPlateau()):
        with pytest.raises(ValueError, match="schedule"):
            sched_model.fit(x, y, epochs=1, verbose=0, callbacks=[c])


def test_csv_logger_reads_back(rng, tmp_path):
    model, x, y = _model_and_data(rng)
    path = tmp_path / "log.csv"
    hist = model.fit(x, y, epochs=3, verbose=0, validation_split=0.25, callbacks=[cb.CSVLogger(path)])
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.25, callbacks=[cb.CSVLogger(path, append=True)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "0", "1"]
    assert [float(r[2]) for r in rows[1:4]] == hist.history["loss"]
    semi = tmp_path / "semi.csv"
    model.fit(x, y, epochs=1, verbose=0, callbacks=[cb.CSVLogger(semi, separator=";")])
    assert open(semi).readline().strip() == "epoch;accuracy;loss"
    with pytest.raises(ValueError, match="does not exist"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[cb.CSVLogger(tmp_path / "no" / "log.csv")])


def test_terminate_on_nan_stops_at_the_batch(rng, float64_default):
    fnn.seed(0)
    model = fnn.Sequential([Dense(4)], input_shape=(3,))
    model.compile(optimizer=SGD(1e30), loss="mse", metrics=())
    x, y = rng.standard_normal((64, 3)) * 1e10, rng.standard_normal((64, 4))
    with np.errstate(all="ignore"):
        hist = model.fit(x, y, batch_size=4, epochs=5, verbose=0, callbacks=[cb.TerminateOnNaN()])
    assert len(hist.history["loss"]) == 1 and model.optimizer.iterations < 16


# ---- plots -----------------------------------------------------------------------------------------

def test_history_plot_renders_a_png(rng, tmp_path):
    pytest.importorskip("matplotlib")
    model, x, y = _model_and_data(rng)
    hist = model.fit(x, y, epochs=3, verbose=0, validation_split=0.25)
    fig = hist.plot(tmp_path / "curves.png")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["loss", "val_loss"]
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), hist.history["val_loss"])
    data = (tmp_path / "curves.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="no epochs"):
        cb.History().plot()


def test_history_plot_without_matplotlib_says_how_to_install(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    h = cb.History()
    h.history = {"loss": [1.0]}
    with pytest.raises(ImportError, match=r"fastnn\[plot\]"):
        h.plot()


# ---- resuming ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_from_checkpoint_equals_continuous_training(dtype, rng, tmp_path):
    """fit(3 epochs) == fit(2) + ModelCheckpoint + load_model + fit(1), bit for bit: weights,
    optimizer state, schedule step, dropout masks and shuffle order all continue."""
    x = rng.standard_normal((50, 6))
    y = rng.integers(0, 3, 50)
    seed = int(rng.integers(1 << 30))

    def make():
        fnn.seed(seed)
        m = fnn.Sequential([Dense(16, activation="relu"), Dropout(0.3), Dense(3, activation="softmax")],
                           input_shape=(6,), dtype=dtype)
        sched = schedules.CosineDecay(0.01, 12, warmup_target=0.05, warmup_steps=4)
        m.compile(optimizer=Adam(sched), loss="sparse_categorical_crossentropy")
        return m
    full = make()
    full.fit(x, y, batch_size=16, epochs=3, verbose=0)
    part = make()
    part.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[cb.ModelCheckpoint(str(tmp_path / "e{epoch}.npz"))])
    resumed = fnn.load_model(tmp_path / "e2.npz")
    assert resumed.optimizer.iterations == 8 and resumed.optimizer.schedule.get_config() == \
        full.optimizer.schedule.get_config()
    hist = resumed.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for a, b in zip(resumed.get_weights(), full.get_weights()):
        np.testing.assert_array_equal(a, b)
    for k in full.optimizer.state:
        np.testing.assert_array_equal(resumed.optimizer.state[k], full.optimizer.state[k])
    assert resumed.optimizer.learning_rate == full.optimizer.learning_rate
    assert hist.history["loss"][0] == full.history.history["loss"][2]


def test_custom_schedule_cannot_be_saved_silently(rng, tmp_path):
    class Halving(schedules.LearningRateSchedule):
        def __call__(self, step):
            return 0.1 / (1 + step)

        def get_config(self):
            return {}
    model, x, y = _model_and_data(rng, opt=SGD(Halving()))
    model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="schedules"):
        model.save(tmp_path / "m.npz")


@pytest.mark.parametrize("make", [lambda: RMSprop(0.01, momentum=0.9, centered=True),
                                  lambda: AdamW(schedules.ExponentialDecay(0.01, 5, 0.9, staircase=True))])
def test_new_optimizers_round_trip_through_model_files(make, rng, tmp_path):
    model, x, y = _model_and_data(rng, opt=make())
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "m.npz")
    back = fnn.load_model(tmp_path / "m.npz")
    assert type(back.optimizer) is type(model.optimizer)
    assert back.optimizer.get_config() == model.optimizer.get_config()
    for k, v in model.optimizer.state.items():
        np.testing.assert_array_equal(back.optimizer.state[k], v)
    model.fit(x, y, epochs=1, verbose=0, shuffle=False)
    back.fit(x, y, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)
