"""Pure-NumPy reference of the backend op set: the readable specification and the test oracle.

Same names and signatures as ``fastnn.backend.cpu``; nothing here is fast.
"""
from __future__ import annotations

import numpy as np

name = "numpy_ref"
empty = np.empty
zeros = np.zeros
asarray = np.asarray


def to_numpy(x):
    return x


def matmul(a, b, out, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    prod = (a.T if trans_a else a) @ (b.T if trans_b else b)
    out[...] = alpha * prod + (beta * out if beta != 0 else 0)
    return out


def linear_fwd(x, w, b, out, relu=False):
    out[...] = x @ w + (0 if b is None else b)
    if relu:
        np.maximum(out, 0, out=out)
    return out


def linear_bwd(x, w, dy, dw, db, dx=None):
    dw[...] = x.T @ dy
    if db is not None:
        db[...] = dy.sum(axis=0)
    if dx is not None:
        dx[...] = dy @ w.T
    return dx


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def act_fwd(code, x, out, alpha=0.0):
    fns = {
        0: lambda v: v,
        1: lambda v: np.maximum(v, 0),
        2: _sigmoid,
        3: np.tanh,
        4: lambda v: np.where(v > 0, v, alpha * v),
    }
    out[...] = fns[code](x)
    return out


def act_bwd(code, y, dy, out, alpha=0.0):
    fns = {
        0: lambda: dy,
        1: lambda: np.where(y > 0, dy, 0),
        2: lambda: dy * y * (1 - y),
        3: lambda: dy * (1 - y * y),
        4: lambda: np.where(y > 0, dy, alpha * dy),
    }
    out[...] = fns[code]()
    return out


def softmax_fwd(x, out):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    out[...] = e / e.sum(axis=1, keepdims=True)
    return out


def softmax_bwd(y, dy, out):
    out[...] = y * (dy - (dy * y).sum(axis=1, keepdims=True))
    return out


def softmax_xent(z, labels=None, onehot=None, grad=None, prob=None, scale=1.0):
    m, k = z.shape
    t = onehot if onehot is not None else np.eye(k, dtype=z.dtype)[labels]
    mx = z.max(axis=1, keepdims=True)
    lse = mx + np.log(np.exp(z - mx).sum(axis=1, keepdims=True))
    p = np.exp(z - lse)
    if grad is not None:
        grad[...] = (p - t) * scale
    if prob is not None:
        prob[...] = p
    return float(((t.sum(axis=1, keepdims=True) * lse) - (t * z).sum(axis=1, keepdims=True)).mean()) if m else 0.0


def sigmoid_bce(z, t, grad=None, prob=None, scale=1.0):
    loss = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    p = _sigmoid(z)
    if grad is not None:
        grad[...] = (p - t) * scale
    if prob is not None:
        prob[...] = p
    return float(loss.mean()) if z.size else 0.0


def mse(y, t, grad=None, scale=1.0):
    d = y - t
    if grad is not None:
        grad[...] = 2 * d * scale
    return float((d.astype(np.float64) ** 2).mean()) if y.size else 0.0


def _mix64(z: int) -> int:
    m = (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def _mix32(x):
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def dropout_mask(n, rate, seed, offset, dtype):
    """Mask of fnn_dropout_fwd: element i is kept when the top 24 bits of
    mix32(mix32(lo32(c) ^ k0) ^ hi32(c) ^ k1), c = offset + i, reach rate * 2^24."""
    key = _mix64(int(seed))
    k0, k1 = np.uint32(key & 0xFFFFFFFF), np.uint32(key >> 32)
    c = (np.arange(n, dtype=np.uint64) + np.uint64(offset)) if n else np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _mix32((c & np.uint64(0xFFFFFFFF)).astype(np.uint32) ^ k0)
        h = _mix32(h ^ (c >> np.uint64(32)).astype(np.uint32) ^ k1)
    keep = (h >> np.uint32(8)) >= np.uint32(int(rate * 16777216.0))
    return np.where(keep, dtype.type(1.0 / (1.0 - rate)), dtype.type(0))


def dropout_fwd(x, rate, seed, offset, out, mask):
    mask[...] = dropout_mask(x.size, rate, seed, offset, x.dtype).reshape(x.shape)
    out[...] = x * mask
    return out


def mul(a, b, out):
    out[...] = a * b
    return out


def sgd_step(p, g, buf, lr, momentum, weight_decay, nesterov, first):
    d = g + weight_decay * p
    if momentum != 0:
        buf[...] = d if first else momentum * buf + d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


def adam_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
    d = g + weight_decay * p
    m[...] = beta1 * m + (1 - beta1) * d
    v[...] = beta2 * v + (1 - beta2) * d * d
    bc1, bc2 = 1 - beta1 ** t, 1 - beta2 ** t
    p -= (lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + eps)
