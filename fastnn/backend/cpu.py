"""CPU backend: NumPy arrays and the C kernels of ``fastnn._core``.

The ops trust their callers (layers, losses, optimizers) for dtypes and shapes; the Cython layer
re-checks the shapes so a wrong call raises instead of touching memory it should not.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from .._config import get_num_threads

name = "cpu"
empty = np.empty
zeros = np.zeros
asarray = np.asarray
contiguous = np.ascontiguousarray
may_share_memory = np.may_share_memory


def to_numpy(x):
    return x


def _by_dtype(fn):
    """A fused Cython kernel's float32 and float64 specialisations by dtype: called through its
    type dispatcher, each call costs about 0.5 us more, several times per small training step.
    Looked up with ``.get(dtype, fn)``: other dtypes reach the dispatcher and its errors."""
    sig = fn.__signatures__
    return {np.dtype(np.float32): sig["float"], np.dtype(np.float64): sig["double"]}


_GEMM, _BIAS_GRAD = _by_dtype(_core.gemm), _by_dtype(_core.bias_grad)
_ACT_FWD, _ACT_BWD = _by_dtype(_core.act_fwd), _by_dtype(_core.act_bwd)


def matmul(a, b, out, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, bf16=False):
    """out = alpha op(a) op(b) + beta out; bf16: inputs rounded to bfloat16, float32 accumulation."""
    (_core.gemm_bf16 if bf16 else _core.gemm)(a, b, out, trans_a, trans_b, alpha, beta, None, False, False,
                                              get_num_threads())
    return out


# ---- bfloat16 ("mixed_bfloat16" layers) -------------------------------------------------------

def bf16_weight(w, prev=None):
    """The bf16 form of a weight for the kernels of "mixed_bfloat16" layers, refilled in place when
    prev (an earlier result for this weight) is given: the bf16 bits (uint16) of a 2-D W (Dense:
    x @ W and dy @ W.T read it, the latter transposed while packed: measured 5-10 % slower than a
    transposed copy, which costs more than that to make every step), else W rounded to bf16 values
    in float32 (Conv2D: its kernels also read W transposed and flipped in float32; the bf16 GEMM
    rounds the already rounded values exactly)."""
    if w.ndim == 2:
        q = prev if prev is not None else np.empty(w.shape, dtype=np.uint16)
        _core.f32_to_bf16(w.reshape(-1), q.reshape(-1), get_num_threads())
        return q
    return round_bf16(w, prev if prev is not None else np.empty_like(w))


def round_bf16(x, out):
    """out = x rounded to bf16 (to nearest even), as float32 values; out may be x."""
    _core.round_bf16(x.reshape(-1), out.reshape(-1), get_num_threads())
    return out


def linear_fwd(x, w, b, out, relu=False, wq=None):
    """out = x @ w + b, ReLU fused into the GEMM epilogue when asked; wq (bf16_weight(w)): the bf16
    GEMM, x rounded while packed."""
    if wq is not None:
        _core.gemm_bf16(x, wq, out, False, False, 1.0, 0.0, b, False, relu, get_num_threads())
    else:
        _GEMM.get(out.dtype, _core.gemm)(x, w, out, False, False, 1.0, 0.0, b, False, relu, get_num_threads())
    return out


def linear_bwd(x, w, dy, dw, db, dx=None, wq=None):
    """dw = x.T @ dy, db = dy.sum(0), dx = dy @ w.T (skipped when dx is None); wq as linear_fwd's
    (both products in bf16; db from the float32 dy)."""
    nt = get_num_threads()
    if wq is not None:
        _core.gemm_bf16(x, dy, dw, True, False, 1.0, 0.0, None, False, False, nt)
    else:
        _GEMM.get(dw.dtype, _core.gemm)(x, dy, dw, True, False, 1.0, 0.0, None, False, False, nt)
    if db is not None:
        _BIAS_GRAD.get(db.dtype, _core.bias_grad)(dy, db, False, nt)
    if dx is not None:
        if wq is not None:
            _core.gemm_bf16(dy, wq, dx, False, True, 1.0, 0.0, None, False, False, nt)
        else:
            _GEMM.get(dx.dtype, _core.gemm)(dy, w, dx, False, True, 1.0, 0.0, None, False, False, nt)
    return dx


def act_fwd(code, x, out, alpha=0.0):
    _ACT_FWD.get(out.dtype, _core.act_fwd)(code, x.reshape(-1), out.reshape(-1), alpha, get_num_threads())
    return out


def act_bwd(code, y, dy, out, alpha=0.0):
    _ACT_BWD.get(out.dtype, _core.act_bwd)(code, y.reshape(-1), dy.reshape(-1), out.reshape(-1), alpha,
                                           get_num_threads())
    return out


def softmax_fwd(x, out):
    _core.softmax_fwd(x, out, get_num_threads())
    return out


def softmax_bwd(y, dy, out):
    _core.softmax_bwd(y, dy, out, get_num_threads())
    return out


def _cols(z, w):
    """Elements per sample of a (N, ...) loss input, for per-sample weights w."""
    return max(1, z.size // z.shape[0]) if w is not None and z.ndim and z.shape[0] else 1


def softmax_xent(z, labels=None, onehot=None, grad=None, prob=None, scale=1.0, w=None):
    """Mean over rows of w * cross-entropy (w: per-row weights or None)."""
    return _core.softmax_xent(z, labels, onehot, grad, prob, scale, get_num_threads(), w)


def sigmoid_bce(z, t, grad=None, prob=None, scale=1.0, w=None):
    """Mean of w * binary cross-entropy over all elements (w: one weight per sample, z.shape[0])."""
    return _core.sigmoid_bce(z.reshape(-1), t.reshape(-1), None if grad is None else grad.reshape(-1),
                             None if prob is None else prob.reshape(-1), scale, get_num_threads(), w, _cols(z, w))


def mse(y, t, grad=None, scale=1.0, w=None):
    return _core.mse(y.reshape(-1), t.reshape(-1), None if grad is None else grad.reshape(-1), scale,
                     get_num_threads(), w, _cols(y, w))


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


def adam_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled=False):
    _core.adam_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay, get_num_threads(), decoupled)


def rmsprop_step(p, g, sq, grad_avg, buf, lr, rho, momentum, eps, weight_decay):
    """grad_avg: None unless centered; buf: None unless momentum > 0."""
    _core.rmsprop_step(p, g, sq, grad_avg, buf, lr, rho, momentum, eps, weight_decay, get_num_threads())


def penalty(w, grad, l1, l2):
    """grad += l1 sign(w) + 2 l2 w (in place); returns the penalty l1 sum|w| + l2 sum w^2."""
    return _core.penalty(w.reshape(-1), grad.reshape(-1), l1, l2, get_num_threads())


# ---- convolution and pooling (NCHW); stride = (sh, sw), padding = (top, bottom, left, right) ----

def conv2d_workspace(x_shape, w_shape, stride, padding, backward=False):
    """Elements of the scratch buffer conv2d_fwd (or conv2d_bwd) wants at the current thread count."""
    return _core.conv2d_workspace(backward, tuple(x_shape), tuple(w_shape), stride, padding, get_num_threads())


def conv2d_fwd(x, w, b, out, stride, padding, relu=False, ws=None, bf16=False):
    """out = conv2d(x, w) + b (cross-correlation), ReLU fused into the GEMM epilogue when asked;
    bf16: x and w rounded to bf16 (while the bf16 GEMM packs them), float32 sums."""
    _core.conv2d_fwd(x, w, b, out, stride, padding, relu, ws, get_num_threads(), bf16)
    return out


def conv2d_bwd(x, w, dy, dw, db, dx, stride, padding, y=None, relu=False, ws=None, bf16=False):
    """dw, db (may be None) and dx (skipped when None) from dy = dL/d(conv output); with relu, dy is
    the gradient of the ReLU output y (the forward's out) and is masked by y > 0 first. bf16: the
    products of dw and dx on x, w and the (masked) dy rounded to bf16; db the float32 sum of dy."""
    _core.conv2d_bwd(x, w, y, dy, dw, db, dx, stride, padding, relu, ws, get_num_threads(), bf16)
    return dx


def maxpool2d_fwd(x, pool, stride, out, idx=None):
    """out = window maxima; idx (int32, may be None) = argmax offsets in each (H, W) plane."""
    _core.maxpool2d_fwd(x, out, idx, pool, stride, get_num_threads())
    return out


def maxpool2d_bwd(dy, idx, pool, stride, dx):
    _core.maxpool2d_bwd(dy, idx, dx, pool, stride, get_num_threads())
    return dx


def avgpool2d_fwd(x, pool, stride, out):
    _core.avgpool2d_fwd(x, out, pool, stride, get_num_threads())
    return out


def avgpool2d_bwd(dy, pool, stride, dx):
    _core.avgpool2d_bwd(dy, dx, pool, stride, get_num_threads())
    return dx


# ---- recurrent layers ------------------------------------------------------------------------
_CELLS = {"rnn": 0, "lstm": 1, "gru": 2}


def _rows(a, where=None):
    """a as a 2-D (N, rest) array; an output (where names it) must be a view, since a copy
    would lose what the kernel writes into it."""
    if where is not None and not a.flags.c_contiguous:
        raise ValueError(f"{where}: expected a C-contiguous array")
    return a.reshape(a.shape[0], math.prod(a.shape[1:]))


def recurrent_workspace(cell, n, t, f, h):
    """(forward, backward) workspace sizes in elements of one recurrent layer call on (n, t, f)
    inputs with h units; cell is "rnn", "lstm" or "gru"."""
    return _core.recurrent_workspace(_CELLS[cell], n, t, f, h)


def recurrent_fwd(cell, x, wx, wh, bx, bh, y, ws, return_sequences, bf16=False):
    """y = the layer output, (n, t, h) or (n, h); ws (recurrent_workspace()[0] elements) keeps
    what recurrent_bwd needs. The whole time loop is one C call. bf16 ("mixed_bfloat16", float32):
    x W_x and each step's h_{t-1} W_h on inputs rounded to bfloat16, float32 sums."""
    _core.recurrent_fwd(_CELLS[cell], x, wx, wh, bx, bh, _rows(y, f"{cell} output"), ws, return_sequences,
                        get_num_threads(), bf16)
    return y


def recurrent_bwd(cell, x, wx, wh, ws, dy, dwx, dwh, dbx, dbh, dx, bws, return_sequences, bf16=False):
    """Overwrite dwx, dwh, dbx, dbh (and dx unless None) with the gradients of sum(dy * y) for
    the forward call that filled ws; bws is scratch (recurrent_workspace()[1] elements). bf16 as
    the forward's: every product on bf16-rounded inputs (the gate gradients rounded after the gate
    kernel), the bias gradients float32 sums of the unrounded gate gradients."""
    _core.recurrent_bwd(_CELLS[cell], x, wx, wh, ws, _rows(dy), dwx, dwh, dbx, dbh, dx, bws,
                        return_sequences, get_num_threads(), bf16)
    return dx


def recurrent_table_fwd(cell, idx, table, wh, bh, y, ws, return_sequences):
    """recurrent_fwd for inputs embedded by an Embedding E: the input projections x_t W_x + b_x
    are the rows of table = E W_x + b_x (v, kH) at the int64 indices idx (n, t); ws has
    recurrent_workspace(cell, n, t, 0, h)[0] elements."""
    _core.recurrent_table_fwd(_CELLS[cell], idx, table, wh, bh, _rows(y, f"{cell} output"), ws, return_sequences,
                              get_num_threads())
    return y


def recurrent_table_bwd(cell, idx, wh, ws, dy, dwh, dbx, dbh, dtable, bws, return_sequences):
    """The gradients of recurrent_table_fwd: dwh, dbx, dbh and dtable (v, kH), the table's gradient
    (each row the sum of its indices' input-side gate gradients, added in index order)."""
    _core.recurrent_table_bwd(_CELLS[cell], idx, wh, ws, _rows(dy), dwh, dbx, dbh, dtable, bws, return_sequences,
                              get_num_threads())
    return dtable


# ---- batch normalization: x, y, dy, dx as (outer, channels, inner) views (see fastnn.h) ----------

def batchnorm_fwd_train(x, gamma, beta, y, save_mean, save_invstd, moving_mean, moving_var, momentum, eps,
                        relu=False):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta with the batch's per-channel mean and biased
    variance; save_mean/save_invstd get mean and 1/sqrt(var + eps); moving_* = momentum * moving_*
    + (1 - momentum) * batch. gamma/beta may be None (1 and 0). relu: y = max(y, 0) (fused)."""
    _core.batchnorm_fwd_train(x, gamma, beta, y, save_mean, save_invstd, moving_mean, moving_var, momentum, eps,
                              relu, get_num_threads())
    return y


def batchnorm_fwd_infer(x, gamma, beta, mean, var, y, eps):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta with the given (moving) statistics."""
    _core.batchnorm_fwd_infer(x, gamma, beta, mean, var, y, eps, get_num_threads())
    return y


def batchnorm_bwd(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, y=None, relu=False):
    """dgamma = sum dy * xhat, dbeta = sum dy (each may be None), dx (skipped when None) of the
    training forward that saved mean and invstd; with relu, dy is the gradient of the fused ReLU's
    output y (the forward's) and is masked by y > 0 first."""
    _core.batchnorm_bwd(x, gamma, mean, invstd, y, dy, dx, dgamma, dbeta, relu, get_num_threads())
    return dx

def batchnorm_sums(x, shift, sums, dy=None, y=None, relu=False):
    """Per-channel float64 sums (2, ch) over this part of a batch (outer may be 0) for the split
    training kernels: forward (dy None) [sum (x - shift), sum (x - shift)^2], backward [sum dy,
    sum dy (x - shift)] with dy masked by y > 0 under relu."""
    _core.batchnorm_sums(x, shift, y, dy, sums, relu, get_num_threads())
    return sums


def batchnorm_fwd_apply(x, gamma, beta, shift, sums, count, y, save_mean, save_invstd, moving_mean, moving_var,
                        momentum, eps, relu=False):
    """batchnorm_fwd_train with the statistics of sums (batchnorm_sums added over every part of
    the batch, count values per channel in all)."""
    _core.batchnorm_fwd_apply(x, gamma, beta, shift, sums, count, y, save_mean, save_invstd, moving_mean, moving_var,
                              momentum, eps, relu, get_num_threads())
    return y


def batchnorm_bwd_apply(x, gamma, mean, invstd, dy, sums, count, dx, y=None, relu=False):
    """dx of batchnorm_bwd from the backward sums added over every part of the batch."""
    _core.batchnorm_bwd_apply(x, gamma, mean, invstd, y, dy, sums, count, dx, relu, get_num_threads())
    return dx

# ---- embedding ---------------------------------------------------------------------------------

def embedding_fwd(idx, w, out):
    """out (idx.shape + (d,)) = w[idx]: rows of the (v, d) table w gathered by the int64 indices."""
    _core.embedding_fwd(idx.reshape(-1), w, _rows(out.reshape(idx.size, w.shape[1]), "embedding output"),
                        get_num_threads())
    return out


def take_rows(x, idx, out):
    """out = x[idx] for a C-contiguous float32/float64 batch x (N, ...) and int64 indices: the
    embedding gather over samples as rows (threaded, a plain copy, so the same bits for any
    thread count); fit's shuffled batches."""
    _core.embedding_fwd(idx, _rows(x), _rows(out, "batch"), get_num_threads())
    return out


def embedding_bwd(idx, dy, dw):
    """dw = the gradient of sum(dy * w[idx]) with respect to w: zeros, plus dy's rows added at
    their indices in index order (bit-identical for any thread count)."""
    _core.embedding_bwd(idx.reshape(-1), dy.reshape(idx.size, dw.shape[1]), dw, get_num_threads())
    return dw


# ---- data augmentation (x, out: (N, C, H, W) for flips and shifts, any shape for noise) -------

def random_flip(x, flags, seed, offset, out):
    _core.random_flip(x, out, flags, seed, offset, get_num_threads())
    return out


def random_translate(x, max_h, max_w, seed, offset, adjoint, fill, out):
    _core.random_translate(x, out, max_h, max_w, seed, offset, adjoint, fill, get_num_threads())
    return out


def gaussian_noise(x, stddev, seed, offset, out):
    _core.gaussian_noise(x.reshape(-1), out.reshape(-1), stddev, seed, offset, get_num_threads())
    return out
