"""PyTorch parity: layers, activations, losses (with gradients), optimizer steps and a whole small
model trained with ``train_on_batch`` against the same model in torch."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn as fnn
from fastnn import backend, losses
from fastnn.layers import Dense, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from fastnn.optimizers import SGD, Adam

torch = pytest.importorskip("torch")
F = torch.nn.functional

BE = backend.get("cpu")
TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if np.dtype(dtype) == np.float32 else dict(rtol=1e-11, atol=1e-13)


def _t(a, grad=False):
    t = torch.from_numpy(np.array(a, copy=True))
    return t.requires_grad_(grad) if grad else t


# ---- layers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("n, n_in, n_out", [(1, 1, 1), (7, 17, 33), (33, 65, 10)])
def test_dense_vs_linear(n, n_in, n_out, use_bias, dtype, rng):
    layer = Dense(n_out, use_bias=use_bias)
    layer.build((n_in,), dtype=dtype)
    w = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    layer.set_weights([w, b] if use_bias else [w])
    lin = torch.nn.Linear(n_in, n_out, bias=use_bias, dtype=TORCH_DTYPE[np.dtype(dtype)])
    with torch.no_grad():
        lin.weight.copy_(_t(w.T))
        if use_bias:
            lin.bias.copy_(_t(b))
    x = rng.standard_normal((n, n_in)).astype(dtype)
    r = rng.standard_normal((n, n_out)).astype(dtype)

    y = layer.forward(x, training=True)
    dx = layer.backward(r)
    xt = _t(x, grad=True)
    yt = lin(xt)
    (yt * _t(r)).sum().backward()

    # Sums of up to max(n, n_in, n_out) products of unit-size values: both libraries round, in
    # different orders, so the absolute tolerance grows with the length of the sums.
    tol = _tol(dtype)
    tol["atol"] *= max(n, n_in, n_out)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.grads[0], lin.weight.grad.numpy().T, **tol)
    if use_bias:
        np.testing.assert_allclose(layer.grads[1], lin.bias.grad.numpy(), **tol)


ACTIVATIONS = {
    "relu": (ReLU, F.relu),
    "sigmoid": (Sigmoid, torch.sigmoid),
    "tanh": (Tanh, torch.tanh),
    "softmax": (Softmax, lambda v: F.softmax(v, dim=1)),
    "leaky_relu": (lambda: LeakyReLU(alpha=0.2), lambda v: F.leaky_relu(v, negative_slope=0.2)),
    "leaky_relu_default": (LeakyReLU, lambda v: F.leaky_relu(v, negative_slope=0.01)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_layers_vs_torch(name, dtype, rng):
    make, fn = ACTIVATIONS[name]
    x = (rng.standard_normal((9, 17)) * 3).astype(dtype)
    r = rng.standard_normal((9, 17)).astype(dtype)
    layer = make()
    layer.build((17,), dtype=dtype)
    y = layer.forward(x, training=True)
    dx = layer.backward(r)
    xt = _t(x, grad=True)
    yt = fn(xt)
    (yt * _t(r)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), **_tol(dtype))
    np.testing.assert_allclose(dx, xt.grad.numpy(), **_tol(dtype))


@pytest.mark.parametrize("activation, fn", [
    ("relu", F.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
    ("softmax", lambda v: F.softmax(v, dim=1)), ("leaky_relu", lambda v: F.leaky_relu(v, 0.01)),
])
def test_dense_activation_vs_torch(activation, fn, dtype, rng):
    layer = Dense(6, activation=activation)
    layer.build((5,), dtype=dtype)
    w, b = rng.standard_normal((5, 6)).astype(dtype), rng.standard_normal(6).astype(dtype)
    layer.set_weights([w, b])
    x = rng.standard_normal((8, 5)).astype(dtype)
    r = rng.standard_normal((8, 6)).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(r)
    xt, wt, bt = _t(x, True), _t(w, True), _t(b, True)
    yt = fn(xt @ wt + bt)
    (yt * _t(r)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), **_tol(dtype))
    np.testing.assert_allclose(dx, xt.grad.numpy(), **_tol(dtype))
    np.testing.assert_allclose(layer.grads[0], wt.grad.numpy(), **_tol(dtype))
    np.testing.assert_allclose(layer.grads[1], bt.grad.numpy(), **_tol(dtype))


# ---- losses -----------------------------------------------------------------------------------

def _fastnn_loss(loss, out, y_raw, logits):
    y = loss.check_targets(y_raw, out.shape[1:], out.dtype, "y")
    grad = np.empty_like(out)
    value = loss.compute(BE, out, y, grad, logits=logits)
    return value, grad


def _torch_loss(fn, out, target):
    ot = _t(out, grad=True)
    value = fn(ot, target)
    value.backward()
    return value.item(), ot.grad.numpy()


def _compare(fastnn_result, torch_result, dtype):
    (v, g), (vt, gt) = fastnn_result, torch_result
    np.testing.assert_allclose(v, vt, **_tol(dtype))
    np.testing.assert_allclose(g, gt, **_tol(dtype))


@pytest.mark.parametrize("n, k", [(1, 2), (16, 10), (33, 7)])
def test_sparse_crossentropy_vs_torch(n, k, dtype, rng):
    z = (rng.standard_normal((n, k)) * 3).astype(dtype)
    labels = rng.integers(0, k, n)
    _compare(_fastnn_loss(losses.SparseCategoricalCrossentropy(), z, labels, logits=True),
             _torch_loss(F.cross_entropy, z, _t(labels)), dtype)
    _compare(_fastnn_loss(losses.SparseCategoricalCrossentropy(from_logits=True), z, labels, logits=False),
             _torch_loss(F.cross_entropy, z, _t(labels)), dtype)
    # probabilities: NLL of log p
    p = (0.02 + 0.96 * F.softmax(_t(z).double(), dim=1).numpy()).astype(dtype)
    _compare(_fastnn_loss(losses.SparseCategoricalCrossentropy(), p, labels, logits=False),
             _torch_loss(lambda o, t: F.nll_loss(torch.log(o), t), p, _t(labels)), dtype)


@pytest.mark.parametrize("n, k", [(1, 2), (16, 10)])
def test_crossentropy_probability_targets_vs_torch(n, k, dtype, rng):
    z = (rng.standard_normal((n, k)) * 3).astype(dtype)
    for targets in (np.eye(k)[rng.integers(0, k, n)], rng.dirichlet(np.ones(k), size=n)):
        targets = targets.astype(dtype)
        _compare(_fastnn_loss(losses.CategoricalCrossentropy(), z, targets, logits=True),
                 _torch_loss(F.cross_entropy, z, _t(targets)), dtype)
        p = (0.02 + 0.96 * F.softmax(_t(z).double(), dim=1).numpy()).astype(dtype)
        _compare(_fastnn_loss(losses.CategoricalCrossentropy(), p, targets, logits=False),
                 _torch_loss(lambda o, t: -(t * torch.log(o)).sum(1).mean(), p, _t(targets)), dtype)


@pytest.mark.parametrize("shape", [(1, 1), (16, 1), (8, 5)])
def test_binary_crossentropy_vs_torch(shape, dtype, rng):
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    t = rng.uniform(0, 1, shape).astype(dtype)
    t[: shape[0] // 2] = np.round(t[: shape[0] // 2])
    _compare(_fastnn_loss(losses.BinaryCrossentropy(), z, t, logits=True),
             _torch_loss(F.binary_cross_entropy_with_logits, z, _t(t)), dtype)
    p = (0.02 + 0.96 * torch.sigmoid(_t(z).double()).numpy()).astype(dtype)
    _compare(_fastnn_loss(losses.BinaryCrossentropy(), p, t, logits=False),
             _torch_loss(F.binary_cross_entropy, p, _t(t)), dtype)


def test_binary_crossentropy_extreme_logits_vs_torch(dtype):
    z = np.array([[1e4], [-1e4], [50.0], [-50.0], [0.0]], dtype=dtype)
    t = np.array([[0.0], [1.0], [1.0], [0.0], [1.0]], dtype=dtype)
    _compare(_fastnn_loss(losses.BinaryCrossentropy(from_logits=True), z, t, logits=False),
             _torch_loss(F.binary_cross_entropy_with_logits, z, _t(t)), dtype)


@pytest.mark.parametrize("shape", [(5,), (16, 1), (8, 3)])
def test_mse_vs_torch(shape, dtype, rng):
    out = rng.standard_normal(shape).astype(dtype)
    t = rng.standard_normal(shape).astype(dtype)
    _compare(_fastnn_loss(losses.MeanSquaredError(), out, t, logits=False),
             _torch_loss(F.mse_loss, out, _t(t)), dtype)


# ---- optimizers ---------------------------------------------------------------------------------

def _run_optimizer_pair(fastnn_opt, make_torch_opt, dtype, rng, steps):
    params = [rng.standard_normal(s).astype(dtype) for s in [(7, 5), (5,), (1,)]]
    tparams = [torch.nn.Parameter(_t(p)) for p in params]
    topt = make_torch_opt(tparams)
    for _ in range(steps):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        fastnn_opt.apply_gradients(zip(grads, params))
        for tp, g in zip(tparams, grads):
            tp.grad = _t(g)
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p, tp.detach().numpy(),
                                       rtol=2e-5 if np.dtype(dtype) == np.float32 else 1e-12,
                                       atol=2e-6 if np.dtype(dtype) == np.float32 else 1e-13)


@pytest.mark.parametrize("steps", [1, 6])
@pytest.mark.parametrize("momentum, nesterov, weight_decay", [
    (0.0, False, 0.0), (0.0, False, 0.1), (0.9, False, 0.0), (0.9, False, 0.01), (0.8, True, 0.0),
    (0.9, True, 0.05)])
def test_sgd_vs_torch(momentum, nesterov, weight_decay, steps, dtype, rng):
    _run_optimizer_pair(
        SGD(learning_rate=0.05, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=momentum, nesterov=nesterov,
                                   weight_decay=weight_decay),
        dtype, rng, steps)


@pytest.mark.parametrize("steps", [1, 6])
@pytest.mark.parametrize("betas, eps, weight_decay", [
    ((0.9, 0.999), 1e-7, 0.0), ((0.9, 0.999), 1e-7, 0.1), ((0.8, 0.99), 1e-3, 0.0), ((0.5, 0.9), 1e-8, 0.01)])
def test_adam_vs_torch(betas, eps, weight_decay, steps, dtype, rng):
    _run_optimizer_pair(
        Adam(learning_rate=0.01, beta_1=betas[0], beta_2=betas[1], epsilon=eps, weight_decay=weight_decay),
        lambda ps: torch.optim.Adam(ps, lr=0.01, betas=betas, eps=eps, weight_decay=weight_decay),
        dtype, rng, steps)


def test_adam_default_epsilon_vs_torch(rng):
    """fastnn's default epsilon is Keras' 1e-7 (torch's is 1e-8): pass it to torch explicitly."""
    assert Adam().epsilon == 1e-7
    _run_optimizer_pair(Adam(), lambda ps: torch.optim.Adam(ps, lr=1e-3, eps=1e-7), np.dtype(np.float64),
                        rng, 4)


# ---- a whole model ----------------------------------------------------------------------------

@pytest.mark.parametrize("softmax_layer", [False, True], ids=["dense_softmax", "softmax_layer"])
@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
def test_model_training_vs_torch(softmax_layer, optimizer, rng):
    n, d, h, k, lr = 32, 10, 16, 4, 0.1
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    layers = [Dense(h), ReLU()]
    layers += [Dense(k), Softmax()] if softmax_layer else [Dense(k, activation="softmax")]
    model = fnn.Sequential(layers, input_shape=(d,), dtype="float32")
    weights = [rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in model.get_weights()]
    model.set_weights(weights)
    if optimizer == "adam":
        model.compile(optimizer=Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy")
    else:
        model.compile(optimizer=SGD(learning_rate=lr, momentum=0.9), loss="sparse_categorical_crossentropy")

    net = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, k))
    with torch.no_grad():
        net[0].weight.copy_(_t(weights[0].T))
        net[0].bias.copy_(_t(weights[1]))
        net[2].weight.copy_(_t(weights[2].T))
        net[2].bias.copy_(_t(weights[3]))
    if optimizer == "adam":
        topt = torch.optim.Adam(net.parameters(), lr=0.01, eps=1e-7)
    else:
        topt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    xt, yt = _t(x), _t(y)

    for step in range(5):
        loss = model.train_on_batch(x, y)
        topt.zero_grad()
        tloss = F.cross_entropy(net(xt), yt)
        tloss.backward()
        topt.step()
        assert loss == pytest.approx(tloss.item(), rel=1e-5), f"loss at step {step}"
        got = model.get_weights()
        want = [net[0].weight.detach().numpy().T, net[0].bias.detach().numpy(),
                net[2].weight.detach().numpy().T, net[2].bias.detach().numpy()]
        for i, (a, b) in enumerate(zip(got, want)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5,
                                       err_msg=f"weight {i} after step {step + 1}")
    np.testing.assert_allclose(model.predict(x), F.softmax(net(xt), dim=1).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
