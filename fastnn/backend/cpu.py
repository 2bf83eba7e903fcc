"""CPU backend: NumPy arrays and the C kernels of ``fastnn._core``.

The ops trust their callers (layers, losses, optimizers) for dtypes and shapes; the Cython layer
re-checks the shapes so a wrong call raises instead of touching memory it should not.
"""
from __future__ import annotations

import numpy as np

from .. import _core
from .._config import get_num_threads

name = "cpu"
empty = np.empty
zeros = np.zeros
asarray = np.asarray


def to_numpy(x):
    return x


def matmul(a, b, out, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    _core.gemm(a, b, out, trans_a, trans_b, alpha, beta, None, False, False, get_num_threads())
    return out


def linear_fwd(x, w, b, out, relu=False):
    """out = x @ w + b, ReLU fused into the GEMM epilogue when asked."""
    _core.gemm(x, w, out, False, False, 1.0, 0.0, b, False, relu, get_num_threads())
    return out


def linear_bwd(x, w, dy, dw, db, dx=None):
    """dw = x.T @ dy, db = dy.sum(0), dx = dy @ w.T (skipped when dx is None)."""
    nt = get_num_threads()
    _core.gemm(x, dy, dw, True, False, 1.0, 0.0, None, False, False, nt)
    if db is not None:
        _core.bias_grad(dy, db, False, nt)
    if dx is not None:
        _core.gemm(dy, w, dx, False, True, 1.0, 0.0, None, False, False, nt)
    return dx


def act_fwd(code, x, out, alpha=0.0):
    _core.act_fwd(code, x.reshape(-1), out.reshape(-1), alpha, get_num_threads())
    return out


def act_bwd(code, y, dy, out, alpha=0.0):
    _core.act_bwd(code, y.reshape(-1), dy.reshape(-1), out.reshape(-1), alpha, get_num_threads())
    return out


def softmax_fwd(x, out):
    _core.softmax_fwd(x, out, get_num_threads())
    return out


def softmax_bwd(y, dy, out):
    _core.softmax_bwd(y, dy, out, get_num_threads())
    return out


def softmax_xent(z, labels=None, onehot=None, grad=None, prob=None, scale=1.0):
    return _core.softmax_xent(z, labels, onehot, grad, prob, scale, get_num_threads())


def sigmoid_bce(z, t, grad=None, prob=None, scale=1.0):
    return _core.sigmoid_bce(z.reshape(-1), t.reshape(-1), None if grad is None else grad.reshape(-1),
                             None if prob is None else prob.reshape(-1), scale, get_num_threads())


def mse(y, t, grad=None, scale=1.0):
    return _core.mse(y.reshape(-1), t.reshape(-1), None if grad is None else grad.reshape(-1), scale,
                     get_num_threads())


def dropout_fwd(x, rate, seed, offset, out, mask):
    _core.dropout_fwd(x.reshape(-1), out.reshape(-1), mask.reshape(-1), rate, seed, offset,
                      get_num_threads())
    return out


def mul(a, b, out):
    _core.mul(a.reshape(-1), b.reshape(-1), out.reshape(-1), get_num_threads())
    return out


def sgd_step(p, g, buf, lr, momentum, weight_decay, nesterov, first):
    _core.sgd_step(p, g, p if buf is None else buf, lr, momentum, weight_decay, nesterov, first,
                   get_num_threads())


def adam_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
    _core.adam_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay, get_num_threads())
