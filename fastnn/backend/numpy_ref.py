"""Pure-NumPy reference of the backend op set: the readable specification and the test oracle.

Same names and signatures as ``fastnn.backend.cpu``; nothing here is fast.
"""
from __future__ import annotations

import numpy as np

name = "numpy_ref"
empty = np.empty
zeros = np.zeros
asarray = np.asarray
contiguous = np.ascontiguousarray
may_share_memory = np.may_share_memory


def to_numpy(x):
    return x


def round_bf16(x, out):
    """out = x rounded to bfloat16 (to nearest even; NaN stays NaN, overflow gives infinity), as
    float32 values: the input rounding of "mixed_bfloat16"."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    nan = np.isnan(x)
    r[nan] = (u[nan] | np.uint32(0x400000)) & np.uint32(0xFFFF0000)
    out[...] = r.view(np.float32).reshape(np.shape(x))
    return out


def bf16_weight(w, prev=None):
    return round_bf16(w, prev if prev is not None else np.empty_like(w))


def matmul(a, b, out, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, bf16=False):
    if bf16:
        a, b = round_bf16(a, np.empty_like(a)), round_bf16(b, np.empty_like(b))
    prod = (a.T if trans_a else a) @ (b.T if trans_b else b)
    out[...] = alpha * prod + (beta * out if beta != 0 else 0)
    return out


def linear_fwd(x, w, b, out, relu=False, wq=None):
    if wq is not None:
        x, w = round_bf16(x, np.empty_like(x)), wq
    out[...] = x @ w + (0 if b is None else b)
    if relu:
        np.maximum(out, 0, out=out)
    return out


def linear_bwd(x, w, dy, dw, db, dx=None, wq=None):
    if db is not None:
        db[...] = dy.sum(axis=0)
    if wq is not None:
        x, w, dy = round_bf16(x, np.empty_like(x)), wq, round_bf16(dy, np.empty_like(dy))
    dw[...] = x.T @ dy
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


def _per_element(w, z):
    """Per-sample weights w broadcast over the trailing axes of z (1 when w is None)."""
    return 1 if w is None else w.reshape((-1,) + (1,) * (z.ndim - 1))


def softmax_xent(z, labels=None, onehot=None, grad=None, prob=None, scale=1.0, w=None):
    m, k = z.shape
    t = onehot if onehot is not None else np.eye(k, dtype=z.dtype)[labels]
    mx = z.max(axis=1, keepdims=True)
    lse = mx + np.log(np.exp(z - mx).sum(axis=1, keepdims=True))
    p = np.exp(z - lse)
    wk = _per_element(w, z)
    if grad is not None:
        grad[...] = (p - t) * scale * wk
    if prob is not None:
        prob[...] = p
    rows = (t.sum(axis=1, keepdims=True) * lse) - (t * z).sum(axis=1, keepdims=True)
    return float((rows * wk).mean()) if m else 0.0


def sigmoid_bce(z, t, grad=None, prob=None, scale=1.0, w=None):
    wk = _per_element(w, z)
    loss = (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))) * wk
    p = _sigmoid(z)
    if grad is not None:
        grad[...] = (p - t) * scale * wk
    if prob is not None:
        prob[...] = p
    return float(loss.mean()) if z.size else 0.0


def mse(y, t, grad=None, scale=1.0, w=None):
    d = y - t
    wk = _per_element(w, y)
    if grad is not None:
        grad[...] = 2 * d * scale * wk
    return float(((d.astype(np.float64) ** 2) * wk).mean()) if y.size else 0.0


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


def adam_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled=False):
    if decoupled:                     # AdamW: decay the parameter, keep it out of the moments
        p *= 1 - lr * weight_decay
        d = g
    else:
        d = g + weight_decay * p
    m[...] = beta1 * m + (1 - beta1) * d
    v[...] = beta2 * v + (1 - beta2) * d * d
    bc1, bc2 = 1 - beta1 ** t, 1 - beta2 ** t
    p -= (lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + eps)


def rmsprop_step(p, g, sq, grad_avg, buf, lr, rho, momentum, eps, weight_decay):
    d = g + weight_decay * p
    sq[...] = rho * sq + (1 - rho) * d * d
    if grad_avg is not None:
        grad_avg[...] = grad_avg + (1 - rho) * (d - grad_avg)
        den = np.sqrt(sq - grad_avg * grad_avg) + eps
    else:
        den = np.sqrt(sq) + eps
    if momentum != 0:
        buf[...] = momentum * buf + d / den
        p -= lr * buf
    else:
        p -= lr * d / den


def penalty(w, grad, l1, l2):
    grad += l1 * np.sign(w) + 2 * l2 * w
    return float(l1 * np.abs(w).astype(np.float64).sum() + l2 * (w.astype(np.float64) ** 2).sum())


# ---- convolution and pooling (NCHW); stride = (sh, sw), padding = (top, bottom, left, right) ----

def conv2d_workspace(x_shape, w_shape, stride, padding, backward=False):
    return 0


def _windows(x, kh, kw, sh, sw):
    """(N, C, OH, OW, kh, kw) view of the kh x kw windows of x at strides (sh, sw)."""
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    return win[:, :, ::sh, ::sw]


def conv2d_fwd(x, w, b, out, stride, padding, relu=False, ws=None, bf16=False):
    if bf16:
        x, w = round_bf16(x, np.empty_like(x)), round_bf16(w, np.empty_like(w))
    pt, pb, pl, pr = padding
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    win = _windows(xp, w.shape[2], w.shape[3], *stride)
    y = np.einsum("nchwpq,fcpq->nfhw", win, w) + (0 if b is None else b[:, None, None])
    out[...] = np.maximum(y, 0) if relu else y
    return out


def conv2d_bwd(x, w, dy, dw, db, dx, stride, padding, y=None, relu=False, ws=None, bf16=False):
    (sh, sw), (pt, pb, pl, pr) = stride, padding
    if relu:
        dy = np.where(y > 0, dy, 0)
    if db is not None:      # float32 sums of dy, also under bf16 (as linear_bwd)
        db[...] = dy.sum(axis=(0, 2, 3))
    if bf16:
        x, w, dy = (round_bf16(v, np.empty_like(v)) for v in (x, w, dy))
    kh, kw = w.shape[2], w.shape[3]
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    dw[...] = np.einsum("nfhw,nchwpq->fcpq", dy, _windows(xp, kh, kw, sh, sw))
    if dx is not None:
        oh, ow = dy.shape[2], dy.shape[3]
        dxp = np.zeros_like(xp)
        for p in range(kh):
            for q in range(kw):
                dxp[:, :, p:p + sh * oh:sh, q:q + sw * ow:sw] += np.einsum("nfhw,fc->nchw", dy, w[:, :, p, q])
        dx[...] = dxp[:, :, pt:pt + x.shape[2], pl:pl + x.shape[3]]
    return dx


def maxpool2d_fwd(x, pool, stride, out, idx=None):
    (kh, kw), (sh, sw) = pool, stride
    n, c, oh, ow = out.shape
    win = _windows(x, kh, kw, sh, sw).reshape(n, c, oh, ow, kh * kw)
    # PyTorch's rule: the first maximum, or the last NaN when the window has one.
    arg = np.argmax(win, axis=-1)
    nan = np.isnan(win)
    arg = np.where(nan.any(axis=-1), kh * kw - 1 - np.argmax(nan[..., ::-1], axis=-1), arg)
    out[...] = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    if idx is not None:
        rows = np.arange(oh)[:, None] * sh + arg // kw
        cols = np.arange(ow)[None, :] * sw + arg % kw
        idx[...] = rows * x.shape[3] + cols
    return out


def maxpool2d_bwd(dy, idx, pool, stride, dx):
    n, c, h, w = dx.shape
    flat = np.zeros((n * c, h * w), dtype=dx.dtype)
    planes = np.repeat(np.arange(n * c), dy.shape[2] * dy.shape[3])
    np.add.at(flat, (planes, idx.reshape(-1)), dy.reshape(-1))
    dx[...] = flat.reshape(dx.shape)
    return dx


def avgpool2d_fwd(x, pool, stride, out):
    out[...] = _windows(x, *pool, *stride).mean(axis=(4, 5))
    return out


def avgpool2d_bwd(dy, pool, stride, dx):
    (kh, kw), (sh, sw) = pool, stride
    oh, ow = dy.shape[2], dy.shape[3]
    dx[...] = 0
    for p in range(kh):
        for q in range(kw):
            dx[:, :, p:p + sh * oh:sh, q:q + sw * ow:sw] += dy / (kh * kw)
    return dx


# ---- recurrent layers ------------------------------------------------------------------------
# PyTorch's equations, batch first, zero initial state; gate blocks i, f, g, o (LSTM) and
# r, z, n (GRU). The workspace here is numpy_ref's own: per sample and step the gate
# activations (a GRU also keeps h W_hn + b_hn), h_t and, for an LSTM, c_t.
# bf16 ("mixed_bfloat16"): every product's inputs rounded to bf16 (x, W_x, h_{t-1}, W_h and the
# gate pre-activation gradients); gate math, states and bias gradients on the unrounded values.
# Any float dtype (the tests evaluate it in float64 on the rounded operands).
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _bf(v, bf16):
    """v rounded to bf16 values when bf16, else v itself."""
    return round_bf16(v, np.empty_like(v)) if bf16 else v


def _ref_states(cell, ws, n, t, h):
    kept = {"rnn": 1, "lstm": 4, "gru": 4}[cell] * h
    gates = ws[:n * t * kept].reshape(n, t, kept)
    hs = ws[n * t * kept:n * t * (kept + h)].reshape(n, t, h)
    cs = ws[n * t * (kept + h):n * t * (kept + 2 * h)].reshape(n, t, h) if cell == "lstm" else None
    return gates, hs, cs


def recurrent_workspace(cell, n, t, f, h):
    kept = {"rnn": 1, "lstm": 4, "gru": 4}[cell] * h
    return n * t * (kept + h + (h if cell == "lstm" else 0)), 0


def recurrent_fwd(cell, x, wx, wh, bx, bh, y, ws, return_sequences, bf16=False):
    xq, wxq = _bf(x, bf16), _bf(wx, bf16)
    return _recurrent_steps(cell, lambda s: xq[:, s] @ wxq + bx, x.shape[0], x.shape[1], wh, bh, y, ws,
                            return_sequences, bf16)


def recurrent_table_fwd(cell, idx, table, wh, bh, y, ws, return_sequences):
    return _recurrent_steps(cell, lambda s: table[idx[:, s]], idx.shape[0], idx.shape[1], wh, bh, y, ws,
                            return_sequences)


def _recurrent_steps(cell, proj, n, t, wh, bh, y, ws, return_sequences, bf16=False):
    """The forward; proj(s) is the input part of step s's gate pre-activations."""
    h = wh.shape[0]
    whq = _bf(wh, bf16)
    dtype = wh.dtype
    gates, hs, cs = _ref_states(cell, ws, n, t, h)
    h_prev = np.zeros((n, h), dtype=dtype)
    c_prev = np.zeros((n, h), dtype=dtype)
    for s in range(t):
        a = proj(s)                     # input part of the gate pre-activations
        b = _bf(h_prev, bf16) @ whq + bh    # recurrent part
        if cell == "rnn":
            h_new = np.tanh(a + b)
            gates[:, s] = h_new
        elif cell == "lstm":
            z = a + b
            i, f, g, o = (z[:, k * h:(k + 1) * h] for k in range(4))
            i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
            c_prev = f * c_prev + i * g
            h_new = o * np.tanh(c_prev)
            gates[:, s] = np.concatenate([i, f, g, o], axis=1)
            cs[:, s] = c_prev
        else:
            r = _sigmoid(a[:, :h] + b[:, :h])
            z = _sigmoid(a[:, h:2 * h] + b[:, h:2 * h])
            nn = np.tanh(a[:, 2 * h:] + r * b[:, 2 * h:])
            h_new = (1 - z) * nn + z * h_prev
            gates[:, s] = np.concatenate([r, z, nn, b[:, 2 * h:]], axis=1)
        hs[:, s] = h_new
        h_prev = h_new
    y[...] = hs if return_sequences else hs[:, -1]
    return y


def recurrent_bwd(cell, x, wx, wh, ws, dy, dwx, dwh, dbx, dbh, dx, bws, return_sequences, bf16=False):
    dax = _bf(_recurrent_bptt(cell, x.shape[0], x.shape[1], wh, ws, dy, dwh, dbx, dbh, return_sequences, bf16),
              bf16)
    xq, wxq = _bf(x, bf16), _bf(wx, bf16)
    dwx[...] = 0
    for s in range(x.shape[1]):
        dwx += xq[:, s].T @ dax[:, s]
        if dx is not None:
            dx[:, s] = dax[:, s] @ wxq.T
    return dx


def recurrent_table_bwd(cell, idx, wh, ws, dy, dwh, dbx, dbh, dtable, bws, return_sequences):
    dax = _recurrent_bptt(cell, idx.shape[0], idx.shape[1], wh, ws, dy, dwh, dbx, dbh, return_sequences)
    return embedding_bwd(idx, dax, dtable)


def _recurrent_bptt(cell, n, t, wh, ws, dy, dwh, dbx, dbh, return_sequences, bf16=False):
    """Backpropagation through time, one step at a time: dwh, dbx, dbh, and the gradient of the
    input part of the gate pre-activations (n, t, G*H), returned (unrounded)."""
    h = wh.shape[0]
    whq = _bf(wh, bf16)
    dtype = wh.dtype
    gates, hs, cs = _ref_states(cell, ws, n, t, h)
    for g in (dwh, dbx, dbh):
        g[...] = 0
    dax = np.zeros((n, t, wh.shape[1]), dtype=dtype)
    dh_next = np.zeros((n, h), dtype=dtype)     # dL/dh_t from the later steps
    dc_next = np.zeros((n, h), dtype=dtype)     # LSTM: dL/dc_t from the later steps
    for s in reversed(range(t)):
        dh = dh_next + (dy[:, s] if return_sequences else (dy if s == t - 1 else 0))
        h_prev = hs[:, s - 1] if s > 0 else np.zeros((n, h), dtype=dtype)
        direct = 0
        if cell == "rnn":
            da_x = da_h = dh * (1 - gates[:, s] ** 2)
        elif cell == "lstm":
            i, f, g, o = (gates[:, s, k * h:(k + 1) * h] for k in range(4))
            c_prev = cs[:, s - 1] if s > 0 else np.zeros((n, h), dtype=dtype)
            tc = np.tanh(cs[:, s])
            dc = dc_next + dh * o * (1 - tc ** 2)
            da_x = da_h = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g ** 2),
                                          dh * tc * o * (1 - o)], axis=1)
            dc_next = dc * f
        else:
            r, z, nn, bn = (gates[:, s, k * h:(k + 1) * h] for k in range(4))
            dn = dh * (1 - z) * (1 - nn ** 2)
            dr = dn * bn * r * (1 - r)
            dz = dh * (h_prev - nn) * z * (1 - z)
            da_x = np.concatenate([dr, dz, dn], axis=1)
            da_h = np.concatenate([dr, dz, dn * r], axis=1)
            direct = dh * z
        dax[:, s] = da_x
        dbx += da_x.sum(axis=0)
        dbh += da_h.sum(axis=0)
        da_h = _bf(da_h, bf16)
        dwh += _bf(h_prev, bf16).T @ da_h
        dh_next = da_h @ whq.T + direct
    return dax


# ---- batch normalization: x, y, dy, dx as (outer, channels, inner) views -----------------------

def _bn_ch(v, like):
    """A per-channel array broadcast over (outer, channels, inner); None -> like (a scalar)."""
    return like if v is None else v[None, :, None]


def batchnorm_fwd_train(x, gamma, beta, y, save_mean, save_invstd, moving_mean, moving_var, momentum, eps,
                        relu=False):
    mean = x.mean(axis=(0, 2))
    var = ((x - mean[None, :, None]) ** 2).mean(axis=(0, 2))
    invstd = 1 / np.sqrt(var + x.dtype.type(eps))
    y[...] = (x - mean[None, :, None]) * invstd[None, :, None] * _bn_ch(gamma, 1) + _bn_ch(beta, 0)
    if relu:
        y[...] = np.where(y < 0, 0, y)
    if save_mean is not None:
        save_mean[...] = mean
    if save_invstd is not None:
        save_invstd[...] = invstd
    m = x.dtype.type(momentum)
    if moving_mean is not None:
        moving_mean[...] = m * moving_mean + (1 - m) * mean
    if moving_var is not None:
        moving_var[...] = m * moving_var + (1 - m) * var
    return y


def batchnorm_fwd_infer(x, gamma, beta, mean, var, y, eps):
    s = (1 if gamma is None else gamma) / np.sqrt(var + x.dtype.type(eps))
    y[...] = (x - mean[None, :, None]) * s[None, :, None] + _bn_ch(beta, 0)
    return y


def batchnorm_bwd(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, y=None, relu=False):
    m = x.shape[0] * x.shape[2]
    if relu:
        dy = np.where(y > 0, dy, 0)
    xhat = (x - mean[None, :, None]) * invstd[None, :, None]
    sum_dy, sum_dy_xhat = dy.sum(axis=(0, 2)), (dy * xhat).sum(axis=(0, 2))
    if dgamma is not None:
        dgamma[...] = sum_dy_xhat
    if dbeta is not None:
        dbeta[...] = sum_dy
    if dx is not None:
        dx[...] = _bn_ch(gamma, 1) * invstd[None, :, None] * (
            dy - sum_dy[None, :, None] / m - xhat * sum_dy_xhat[None, :, None] / m)
    return dx

# The split training kernels of data-parallel training (fastnn.distributed), in array methods and
# ufuncs only, so the CUDA backend runs the same code on CuPy arrays (a few small reductions a
# step, for the host all-reduce between the phases).

def batchnorm_sums(x, shift, sums, dy=None, y=None, relu=False):
    d = x.astype(np.float64) - shift.astype(np.float64)[None, :, None]
    u = d if dy is None else dy.astype(np.float64)
    if dy is not None and relu:
        u = u * (y > 0)
    sums[0] = u.sum(axis=(0, 2))
    sums[1] = (u * d).sum(axis=(0, 2))
    return sums


def batchnorm_fwd_apply(x, gamma, beta, shift, sums, count, y, save_mean, save_invstd, moving_mean, moving_var,
                        momentum, eps, relu=False):
    dm = sums[0] / count
    var = sums[1] / count - dm * dm
    var = var * (var > 0)
    mean = (shift.astype(np.float64) + dm).astype(x.dtype)
    v = var.astype(x.dtype)
    invstd = 1 / np.sqrt(v + x.dtype.type(eps))
    a = invstd if gamma is None else gamma * invstd
    b = -mean * a if beta is None else beta - mean * a
    y[...] = x * a[None, :, None] + b[None, :, None]
    if relu:
        y[...] = y * (y > 0)
    if save_mean is not None:
        save_mean[...] = mean
    if save_invstd is not None:
        save_invstd[...] = invstd
    m = x.dtype.type(momentum)
    if moving_mean is not None:
        moving_mean[...] = m * moving_mean + (1 - m) * mean
    if moving_var is not None:
        moving_var[...] = m * moving_var + (1 - m) * v
    return y


def batchnorm_bwd_apply(x, gamma, mean, invstd, dy, sums, count, dx, y=None, relu=False):
    if relu:
        dy = dy * (y > 0)
    xhat = (x - mean[None, :, None]) * invstd[None, :, None]
    sum_dy, sum_dy_xhat = sums[0].astype(x.dtype), (sums[1] * invstd).astype(x.dtype)
    dx[...] = _bn_ch(gamma, 1) * invstd[None, :, None] * (
        dy - sum_dy[None, :, None] / count - xhat * sum_dy_xhat[None, :, None] / count)
    return dx

# ---- embedding ---------------------------------------------------------------------------------

def embedding_fwd(idx, w, out):
    out[...] = w[idx]
    return out


def embedding_bwd(idx, dy, dw):
    dw[...] = 0
    # np.add.at adds unbuffered, in index order: repeated indices sum as the C kernel does
    np.add.at(dw, idx.reshape(-1), dy.reshape(idx.size, dw.shape[1]))
    return dw


# ---- data augmentation: the counters and formulas of csrc/ref/augment.c ----------------------

FLIP_HORIZONTAL, FLIP_VERTICAL = 1, 2


def _random_bits(seed, counters):
    """The 32 counter-hash bits of each uint64 counter: mix32(mix32(lo32(c) ^ k0) ^ hi32(c) ^ k1),
    (k0, k1) the halves of mix64(seed) (the hash dropout_mask uses)."""
    key = _mix64(int(seed))
    k0, k1 = np.uint32(key & 0xFFFFFFFF), np.uint32(key >> 32)
    c = np.asarray(counters, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _mix32((c & np.uint64(0xFFFFFFFF)).astype(np.uint32) ^ k0)
        return _mix32(h ^ (c >> np.uint64(32)).astype(np.uint32) ^ k1)


def _counters(n, offset, stride=1, plus=0):
    """offset + stride * i + plus for i < n, modulo 2^64."""
    with np.errstate(over="ignore"):
        return np.arange(n, dtype=np.uint64) * np.uint64(stride) + np.uint64(offset) + np.uint64(plus)


def _flip_decisions(n, flags, seed, offset):
    """(flip width, flip height) booleans of each of n samples: bits 31 and 30 of sample s's
    hash at counter offset + s, each kept only when flags ask for that axis."""
    bits = _random_bits(seed, _counters(n, offset))
    fw = ((bits >> np.uint32(31)) & np.uint32(1)).astype(bool) & bool(flags & FLIP_HORIZONTAL)
    fh = ((bits >> np.uint32(30)) & np.uint32(1)).astype(bool) & bool(flags & FLIP_VERTICAL)
    return fw, fh


def random_flip(x, flags, seed, offset, out):
    fw, fh = _flip_decisions(x.shape[0], flags, seed, offset)
    for s in range(x.shape[0]):
        img = x[s]
        if fh[s]:
            img = img[:, ::-1, :]
        if fw[s]:
            img = img[:, :, ::-1]
        out[s] = img
    return out


def _translate_shifts(n, max_h, max_w, seed, offset):
    """(sy, sx) of each of n samples: floor(bits * (2m + 1) / 2^32) - m with the bits of counters
    offset + 2s (height) and offset + 2s + 1 (width)."""
    def shift(bits, m):
        return ((bits.astype(np.uint64) * np.uint64(2 * m + 1)) >> np.uint64(32)).astype(np.int64) - m
    sy = shift(_random_bits(seed, _counters(n, offset, 2)), max_h)
    sx = shift(_random_bits(seed, _counters(n, offset, 2, 1)), max_w)
    return sy, sx


def random_translate(x, max_h, max_w, seed, offset, adjoint, fill, out):
    """out[s, :, i, j] = x[s, :, i - sy, j - sx] (fill outside); adjoint: x[s, :, i + sy, j + sx]
    (0 outside)."""
    n, _, h, w = x.shape
    sy, sx = _translate_shifts(n, max_h, max_w, seed, offset)
    if adjoint:
        sy, sx, fill = -sy, -sx, 0.0
    out[...] = fill
    for s in range(n):
        dy, dx = int(sy[s]), int(sx[s])
        # destination rows/columns whose source lies inside the image
        i0, i1, j0, j1 = max(dy, 0), min(h + dy, h), max(dx, 0), min(w + dx, w)
        if i0 < i1 and j0 < j1:
            out[s, :, i0:i1, j0:j1] = x[s, :, i0 - dy:i1 - dy, j0 - dx:j1 - dx]
    return out


def _normal_noise(n, seed, offset):
    """Standard normal values (float64) of gaussian_noise: Box-Muller's cosine branch on
    u1 = ((a >> 8) + 1) / 2^24 and u2 = (b >> 8) / 2^24, a and b the bits of counters
    offset + 2i and offset + 2i + 1."""
    a = _random_bits(seed, _counters(n, offset, 2))
    b = _random_bits(seed, _counters(n, offset, 2, 1))
    u1 = ((a >> np.uint32(8)).astype(np.float64) + 1.0) * (1.0 / 16777216.0)
    u2 = (b >> np.uint32(8)).astype(np.float64) * (1.0 / 16777216.0)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * u2)


def gaussian_noise(x, stddev, seed, offset, out):
    noise = (stddev * _normal_noise(x.size, seed, offset)).astype(x.dtype).reshape(x.shape)
    out[...] = x + noise
    return out
