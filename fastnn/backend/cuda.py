"""CUDA backend: CuPy arrays, the kernels of ``cuda_kernels.cu`` (loaded with ``cupy.RawModule``)
and cuBLAS through CuPy's low-level bindings.

The same op set and signatures as ``fastnn.backend.cpu``; layers never know which one they
call. CuPy is imported on the first use of this module's ops (``backend.get("cuda")`` checks it
is there and a device answers), never at ``import fastnn``.

Speed at small batches is decided by launches, not arithmetic, so:
- every op writes into buffers the caller planned (layers, the model's flat parameters);
- the geometry of convolutions and pools goes to the kernels as a small device array cached
  per shape, so no op copies from the host inside a training step;
- the losses return a 0-d device array: nothing here waits for the GPU (the model reads the
  loss back once per epoch, or when a progress bar or callback asks for it).
"""
from __future__ import annotations

import os

import numpy as np

from .numpy_ref import _mix64, batchnorm_bwd_apply, batchnorm_fwd_apply, batchnorm_sums  # noqa: F401

name = "cuda"
_THREADS = 256
_MAX_BLOCKS = 4096                # kernels are grid-stride loops: any launch size is correct
_NULL = np.uint64(0)              # a null pointer argument (pointers are 64-bit kernel parameters)
_state: dict = {"cp": None, "module": None, "fns": {}, "geo": {}, "scratch": {}}


def _cupy():
    cp = _state["cp"]
    if cp is None:
        cp = _state["cp"] = require()
    return cp


def require():
    """CuPy with a usable device, or a ValueError that says what is missing."""
    try:
        import cupy
    except ImportError as err:
        raise ValueError("device 'cuda': CuPy is not installed; install fastnn[cuda12] or fastnn[cuda13] "
                         "(the CuPy wheel for your CUDA version)") from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # no driver, driver too old, broken install
        raise ValueError(f"device 'cuda': CuPy is installed but no CUDA device is usable ({err})") from err
    if count < 1:
        raise ValueError("device 'cuda': no CUDA device found")
    return cupy


def kernel_source() -> str:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_kernels.cu")) as f:
        return f.read()


def _fn(kernel: str, dtype):
    """The compiled kernel ``<kernel>_f32`` / ``_f64``."""
    key = (kernel, np.dtype(dtype).char)
    fn = _state["fns"].get(key)
    if fn is None:
        if _state["module"] is None:
            # --fmad=false: a*b+c is rounded twice, as in the C kernels (compiled without contraction).
            _state["module"] = _cupy().RawModule(code=kernel_source(), options=("--std=c++14", "--fmad=false"))
        suffix = "f32" if np.dtype(dtype) == np.float32 else "f64"
        fn = _state["fns"][key] = _state["module"].get_function(f"{kernel}_{suffix}")
    return fn


def _launch(kernel: str, dtype, n: int, *args):
    if n <= 0:
        return
    blocks = min((n + _THREADS - 1) // _THREADS, _MAX_BLOCKS)
    _fn(kernel, dtype)((blocks,), (_THREADS,), args)


def _i(v):
    return np.int64(v)


def _t(a, v):
    """v as a kernel scalar of a's element type."""
    return a.dtype.type(v)


def _p(a):
    return _NULL if a is None else a


# ---- arrays ---------------------------------------------------------------------------------

def empty(shape, dtype=np.float32):
    return _cupy().empty(shape, dtype=dtype)


def zeros(shape, dtype=np.float32):
    return _cupy().zeros(shape, dtype=dtype)


def asarray(x, dtype=None):
    return _cupy().asarray(x, dtype=dtype)


def to_numpy(x):
    return _cupy().asnumpy(x)


def contiguous(x):
    return _cupy().ascontiguousarray(x)


def may_share_memory(a, b):
    return _cupy().may_share_memory(a, b)


def _device_ints(values) -> object:
    """A cached device int64 array of a geometry tuple (copied to the GPU once per shape)."""
    key = tuple(int(v) for v in values)
    arr = _state["geo"].get(key)
    if arr is None:
        arr = _state["geo"][key] = _cupy().asarray(np.array(key, dtype=np.int64))
    return arr


def _scratch(key, shape, dtype):
    """A device buffer reused across calls of one op (the per-row loss terms)."""
    k = (key, tuple(shape), np.dtype(dtype).char)
    buf = _state["scratch"].get(k)
    if buf is None:
        buf = _state["scratch"][k] = _cupy().empty(shape, dtype=dtype)
    return buf


# ---- GEMM (cuBLAS, row-major through the transposed column-major product) -------------------

def _ld(a):
    """Leading dimension of a 2-D array with contiguous rows."""
    return max(a.strides[0] // a.itemsize, a.shape[1], 1)


def _gemm(a, b, c, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """c = alpha op(a) op(b) + beta c, all row-major: cuBLAS computes c^T = op(b)^T op(a)^T."""
    cp = _cupy()
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return c
    if k == 0:
        c *= beta
        return c
    from cupy.cuda import cublas
    one = np.array([alpha, beta], dtype=c.dtype)
    fn = cublas.sgemm if c.dtype == np.float32 else cublas.dgemm
    fn(cp.cuda.device.get_cublas_handle(), int(trans_b), int(trans_a), n, m, k,
       one.ctypes.data, b.data.ptr, _ld(b), a.data.ptr, _ld(a), one.ctypes.data + one.itemsize, c.data.ptr, _ld(c))
    return c


def _col_sum(x, out):
    """out[j] = sum over the rows of the 2-D x, any strides (a bias gradient; of gt.T for a
    convolution's (f, n*oh*ow) gradient)."""
    so, si = x.strides[1] // x.itemsize, x.strides[0] // x.itemsize
    _launch("axis_sum", x.dtype, x.shape[1], _i(x.shape[1]), _i(x.shape[0]), _i(so), _i(si), x, out)


def matmul(a, b, out, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, bf16=False):
    if bf16:
        a, b = round_bf16(a, _scratch("bf16_a", a.shape, a.dtype)), round_bf16(b, _scratch("bf16_b", b.shape, b.dtype))
    return _gemm(a, b, out, trans_a, trans_b, alpha, beta)


# ---- bfloat16 ("mixed_bfloat16" layers): float32 GEMMs on operands rounded to bf16 ---------------

def round_bf16(x, out):
    """out = x rounded to bf16 (to nearest even), as float32 values; out may be x."""
    _launch("round_bf16", x.dtype, x.size, _i(x.size), x, out)
    return out


def bf16_weight(w, prev=None):
    """w rounded to bf16 values (refilled into prev when given): what the GEMMs of a
    "mixed_bfloat16" layer read as its weight."""
    return round_bf16(w, prev if prev is not None else _cupy().empty(w.shape, dtype=w.dtype))


def linear_fwd(x, w, b, out, relu=False, wq=None):
    """out = x @ w + b, then ReLU; bias and ReLU in one kernel after the GEMM. wq (bf16_weight(w)):
    x rounded to bf16 too, the product of the rounded operands."""
    if wq is not None:
        x, w = round_bf16(x, _scratch("bf16_x", x.shape, x.dtype)), wq
    _gemm(x, w, out)
    if b is not None or relu:
        _launch("bias_act", out.dtype, out.size, _i(out.shape[0]), _i(out.shape[1]), _p(b), np.int32(int(relu)),
                _t(out, 0), out)
    return out


def linear_bwd(x, w, dy, dw, db, dx=None, wq=None):
    if db is not None:
        _col_sum(dy, db)
    if wq is not None:
        x, w = round_bf16(x, _scratch("bf16_x", x.shape, x.dtype)), wq
        dy = round_bf16(dy, _scratch("bf16_dy", dy.shape, dy.dtype))
    _gemm(x, dy, dw, trans_a=True)
    if dx is not None:
        _gemm(dy, w, dx, trans_b=True)
    return dx


def act_fwd(code, x, out, alpha=0.0):
    _launch("act_fwd", x.dtype, x.size, _i(x.size), np.int32(code), _t(x, alpha), x, out)
    return out


def act_bwd(code, y, dy, out, alpha=0.0):
    _launch("act_bwd", y.dtype, y.size, _i(y.size), np.int32(code), _t(y, alpha), y, dy, out)
    return out


def softmax_fwd(x, out):
    _launch("softmax_fwd", x.dtype, x.shape[0], _i(x.shape[0]), _i(x.shape[1]), x, out)
    return out


def softmax_bwd(y, dy, out):
    _launch("softmax_bwd", y.dtype, y.shape[0], _i(y.shape[0]), _i(y.shape[1]), y, dy, out)
    return out


def _mean(terms):
    """The mean of the per-row loss terms as a 0-d device array (one reduction kernel, no host
    synchronisation)."""
    return terms.mean()


def _cols(z, w):
    return max(1, z.size // z.shape[0]) if w is not None and z.ndim and z.shape[0] else 1


def softmax_xent(z, labels=None, onehot=None, grad=None, prob=None, scale=1.0, w=None):
    m, k = z.shape
    if m == 0:
        return 0.0
    terms = _scratch("xent", (m,), np.float64)
    _launch("softmax_xent", z.dtype, m, _i(m), _i(k), _t(z, scale), z, _p(labels), _p(onehot), _p(w), _p(grad),
            _p(prob), terms)
    return _mean(terms)


def sigmoid_bce(z, t, grad=None, prob=None, scale=1.0, w=None):
    if z.size == 0:
        return 0.0
    terms = _scratch("bce", (z.size,), np.float64)
    _launch("sigmoid_bce", z.dtype, z.size, _i(z.size), _i(_cols(z, w)), _t(z, scale), z, t, _p(w), _p(grad),
            _p(prob), terms)
    return _mean(terms)


def mse(y, t, grad=None, scale=1.0, w=None):
    if y.size == 0:
        return 0.0
    terms = _scratch("mse", (y.size,), np.float64)
    _launch("mse", y.dtype, y.size, _i(y.size), _i(_cols(y, w)), _t(y, scale), y, t, _p(w), _p(grad), terms)
    return _mean(terms)


def dropout_fwd(x, rate, seed, offset, out, mask):
    """The CPU's counter-based mask bit for bit (keys and threshold computed as in dropout.c)."""
    key = _mix64(int(seed))
    thr = int(rate * 16777216.0)
    _launch("dropout_fwd", x.dtype, x.size, _i(x.size), np.uint32(key & 0xFFFFFFFF), np.uint32(key >> 32),
            np.uint64(offset), np.uint32(thr), _t(x, 1.0 / (1.0 - rate)), x, out, mask)
    return out


def mul(a, b, out):
    _launch("mul", a.dtype, a.size, _i(a.size), a, b, out)
    return out


def sgd_step(p, g, buf, lr, momentum, weight_decay, nesterov, first):
    _launch("sgd_step", p.dtype, p.size, _i(p.size), np.int32(bool(nesterov)), np.int32(bool(first)), _t(p, lr),
            _t(p, momentum), _t(p, weight_decay), g, p, _NULL if momentum == 0 or buf is None else buf)


def adam_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay, decoupled=False):
    # Bias corrections in double from the parameters rounded to the element type, as adam_step in C.
    tt = p.dtype.type
    b1, b2 = float(tt(beta1)), float(tt(beta2))
    bc1, bc2 = 1.0 - b1 ** int(t), 1.0 - b2 ** int(t)
    _launch("adam_step", p.dtype, p.size, _i(p.size), np.int32(bool(decoupled)), tt(float(tt(lr)) / bc1),
            tt(1.0 / np.sqrt(bc2)), tt(beta1), tt(beta2), tt(eps), tt(weight_decay),
            tt(1 - tt(lr) * tt(weight_decay)), g, p, m, v)


def rmsprop_step(p, g, sq, grad_avg, buf, lr, rho, momentum, eps, weight_decay):
    tt = p.dtype.type
    _launch("rmsprop_step", p.dtype, p.size, _i(p.size), tt(lr), tt(rho), tt(momentum), tt(eps), tt(weight_decay),
            g, p, sq, _p(grad_avg), _NULL if momentum == 0 or buf is None else buf)


def penalty(w, grad, l1, l2):
    """grad += l1 sign(w) + 2 l2 w; the penalty as a 0-d device array (per-element terms summed
    by one reduction, no host synchronisation)."""
    if w.size == 0:
        return 0.0
    terms = _scratch("penalty", (w.size,), np.float64)
    _launch("penalty", w.dtype, w.size, _i(w.size), _t(w, l1), _t(w, l2), w, grad, terms)
    return terms.sum()


# ---- convolution and pooling (NCHW); stride = (sh, sw), padding = (top, bottom, left, right) ----

def _conv_geometry(x_shape, w_shape, stride, padding):
    n, c, h, w = (int(d) for d in x_shape)
    f, _, kh, kw = (int(d) for d in w_shape)
    (sh, sw), (pt, pb, pl, pr) = stride, padding
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    return (n, c, h, w, kh, kw, sh, sw, pt, pl, oh, ow), f


def conv2d_workspace(x_shape, w_shape, stride, padding, backward=False):
    """Columns (c*kh*kw, n*oh*ow) and the GEMM's (f, n*oh*ow) result; backward also the
    input-gradient columns."""
    g, f = _conv_geometry(x_shape, w_shape, stride, padding)
    p, ckk = g[0] * g[10] * g[11], g[1] * g[4] * g[5]
    return p * (ckk + f + (ckk if backward else 0))


def _conv_buffers(ws, g, f, backward):
    p, ckk = g[0] * g[10] * g[11], g[1] * g[4] * g[5]
    cols = ws[:ckk * p].reshape(ckk, p)
    yt = ws[ckk * p:(ckk + f) * p].reshape(f, p)
    dcols = ws[(ckk + f) * p:(2 * ckk + f) * p].reshape(ckk, p) if backward else None
    return cols, yt, dcols


def conv2d_fwd(x, w, b, out, stride, padding, relu=False, ws=None, bf16=False):
    """bf16: the columns rounded in place (x rounded; w is bf16_weight's), then the float32 GEMM."""
    g, f = _conv_geometry(x.shape, w.shape, stride, padding)
    if g[0] == 0:
        return out
    if ws is None:
        ws = empty((conv2d_workspace(x.shape, w.shape, stride, padding),), x.dtype)
    cols, yt, _ = _conv_buffers(ws, g, f, False)
    geo = _device_ints(g)
    _launch("im2col", x.dtype, cols.size, geo, x, cols)
    if bf16:
        round_bf16(cols, cols)
    _gemm(w.reshape(f, -1), cols, yt)
    hw = g[10] * g[11]
    _launch("conv_out", x.dtype, out.size, _i(g[0]), _i(f), _i(hw), yt, _p(b), np.int32(int(relu)), out)
    return out


def conv2d_bwd(x, w, dy, dw, db, dx, stride, padding, y=None, relu=False, ws=None, bf16=False):
    """bf16: db from the float32 (masked) dy, then it and the columns rounded in place for the GEMMs."""
    g, f = _conv_geometry(x.shape, w.shape, stride, padding)
    if g[0] == 0:
        dw[...] = 0
        if db is not None:
            db[...] = 0
        return dx
    if ws is None:
        ws = empty((conv2d_workspace(x.shape, w.shape, stride, padding, backward=True),), x.dtype)
    cols, gt, dcols = _conv_buffers(ws, g, f, True)
    geo = _device_ints(g)
    hw = g[10] * g[11]
    _launch("conv_grad_in", x.dtype, gt.size, _i(g[0]), _i(f), _i(hw), dy, _p(y if relu else None), gt)
    _launch("im2col", x.dtype, cols.size, geo, x, cols)
    if db is not None:
        _col_sum(gt.T, db)
    if bf16:
        round_bf16(cols, cols)
        round_bf16(gt, gt)
    _gemm(gt, cols, dw.reshape(f, -1), trans_b=True)
    if dx is not None:
        _gemm(w.reshape(f, -1), gt, dcols, trans_a=True)
        _launch("col2im", x.dtype, dx.size, geo, dcols, dx)
    return dx


def _pool_geometry(x_shape, pool, stride):
    n, c, h, w = (int(d) for d in x_shape)
    (kh, kw), (sh, sw) = pool, stride
    return (n * c, h, w, kh, kw, sh, sw, (h - kh) // sh + 1, (w - kw) // sw + 1)


def maxpool2d_fwd(x, pool, stride, out, idx=None):
    _launch("maxpool_fwd", x.dtype, out.size, _device_ints(_pool_geometry(x.shape, pool, stride)), x, out, _p(idx))
    return out


def maxpool2d_bwd(dy, idx, pool, stride, dx):
    _launch("maxpool_bwd", dx.dtype, dx.size, _device_ints(_pool_geometry(dx.shape, pool, stride)), dy, idx, dx)
    return dx


def avgpool2d_fwd(x, pool, stride, out):
    _launch("avgpool_fwd", x.dtype, out.size, _device_ints(_pool_geometry(x.shape, pool, stride)), x, out)
    return out


def avgpool2d_bwd(dy, pool, stride, dx):
    _launch("avgpool_bwd", dx.dtype, dx.size, _device_ints(_pool_geometry(dx.shape, pool, stride)), dy, dx)
    return dx


# ---- recurrent layers -------------------------------------------------------------------------
# Forward workspace: ax (n*t, G*H) the input projection of every step (rows in x's (n, t)
# order); gates (t, n, K*H) what backward needs (K = 4 for LSTM and GRU, 1 for SimpleRNN);
# hs (t, n, H) the states, time-major so that h_{t-1} of every step is one contiguous block;
# cs (t, n, H) the LSTM cells; hb (n, G*H) the recurrent product of one step.
# Backward workspace: dax (n*t, G*H), dah (t, n, G*H), and dh, dh_prev, dc (n, H).
# bf16 ("mixed_bfloat16", float32): the GEMMs read operands rounded into scratch buffers (x, W_x,
# each step's h_{t-1}, W_h, and the gate gradients dax / dah, whose unrounded values give the
# bias gradients), as numpy_ref does; the gate kernels read the unrounded states.


def _bf(v, key, bf16):
    """v rounded to bf16 into the scratch buffer key when bf16, else v itself."""
    return round_bf16(v, _scratch(key, v.shape, v.dtype)) if bf16 else v


def _bf16_check(bf16, dtype):
    if bf16 and dtype != np.float32:
        raise ValueError(f"recurrent: bf16 (mixed_bfloat16) takes float32 arrays, got {np.dtype(dtype).name}")
_G = {"rnn": 1, "lstm": 4, "gru": 3}
_K = {"rnn": 1, "lstm": 4, "gru": 4}
_CELL = {"rnn": 0, "lstm": 1, "gru": 2}


def recurrent_workspace(cell, n, t, f, h):
    g, kk = _G[cell] * h, _K[cell] * h
    fwd = n * t * (g + kk + h + (h if cell == "lstm" else 0)) + n * g
    bwd = 2 * n * t * g + 3 * n * h
    return fwd, bwd


def _fwd_parts(cell, ws, n, t, h):
    g, kk = _G[cell] * h, _K[cell] * h
    sizes = [("ax", (n * t, g)), ("gates", (t, n, kk)), ("hs", (t, n, h))]
    if cell == "lstm":
        sizes.append(("cs", (t, n, h)))
    sizes.append(("hb", (n, g)))
    parts, at = {"cs": None}, 0
    for key, shape in sizes:
        size = int(np.prod(shape))
        parts[key] = ws[at:at + size].reshape(shape)
        at += size
    return parts


def recurrent_fwd(cell, x, wx, wh, bx, bh, y, ws, return_sequences, bf16=False):
    _bf16_check(bf16, wh.dtype)
    n, t, f = x.shape
    ax = _fwd_parts(cell, ws, n, t, wh.shape[0])["ax"]
    linear_fwd(x.reshape(n * t, f), wx, bx, ax, wq=_bf(wx, "rnn_wx", True) if bf16 else None)
    return _recurrent_steps(cell, n, t, wh, bh, y, ws, return_sequences, bf16)


def recurrent_table_fwd(cell, idx, table, wh, bh, y, ws, return_sequences):
    n, t = idx.shape
    embedding_fwd(idx, table, _fwd_parts(cell, ws, n, t, wh.shape[0])["ax"])
    return _recurrent_steps(cell, n, t, wh, bh, y, ws, return_sequences)


def _recurrent_steps(cell, n, t, wh, bh, y, ws, return_sequences, bf16=False):
    """The time loop of the forward, on the input projections already in the workspace."""
    h = wh.shape[0]
    s = _fwd_parts(cell, ws, n, t, h)
    ax, gates, hs, cs, hb = s["ax"], s["gates"], s["hs"], s["cs"], s["hb"]
    g = ax.shape[1]
    whq = _bf(wh, "rnn_wh", bf16)
    # Two launches a step: the recurrent GEMM (none at t = 0, where h = 0) and the gate kernel,
    # which adds b_h itself.
    for step in range(t):
        if step > 0:
            _gemm(_bf(hs[step - 1], "rnn_h", bf16), whq, hb)
        _launch("rnn_step_fwd", wh.dtype, n * h, np.int32(_CELL[cell]), _i(n), _i(h), ax[step:], _i(t * g),
                _p(hb if step > 0 else None), bh, _p(hs[step - 1] if step > 0 else None),
                _p(cs[step - 1] if cell == "lstm" and step > 0 else None), gates[step], _i(gates.shape[2]), hs[step],
                _i(h), _p(cs[step] if cell == "lstm" else None), _i(h))
    y[...] = hs.transpose(1, 0, 2) if return_sequences else hs[t - 1]
    return y


def recurrent_bwd(cell, x, wx, wh, ws, dy, dwx, dwh, dbx, dbh, dx, bws, return_sequences, bf16=False):
    _bf16_check(bf16, wh.dtype)
    n, t, f = x.shape
    dax = _bf(_recurrent_bptt(cell, n, t, wh, ws, dy, dwh, dbx, dbh, bws, return_sequences, bf16), "rnn_dax", bf16)
    _gemm(_bf(x.reshape(n * t, f), "rnn_x", bf16), dax, dwx, trans_a=True)
    if dx is not None:
        _gemm(dax, _bf(wx, "rnn_wx", bf16), dx.reshape(n * t, f), trans_b=True)
    return dx


def recurrent_table_bwd(cell, idx, wh, ws, dy, dwh, dbx, dbh, dtable, bws, return_sequences):
    n, t = idx.shape
    dax = _recurrent_bptt(cell, n, t, wh, ws, dy, dwh, dbx, dbh, bws, return_sequences)
    return embedding_bwd(idx, dax, dtable)


def _recurrent_bptt(cell, n, t, wh, ws, dy, dwh, dbx, dbh, bws, return_sequences, bf16=False):
    """Backpropagation through time: dwh, dbx, dbh, and the input projections' gradient dax
    (n*t, G*H, unrounded), returned for the input-side products."""
    h = wh.shape[0]
    whq = _bf(wh, "rnn_wh", bf16)
    dtype = wh.dtype
    s = _fwd_parts(cell, ws, n, t, h)
    gates, hs, cs = s["gates"], s["hs"], s["cs"]
    g = _G[cell] * h
    dax = bws[:n * t * g].reshape(n * t, g)
    dah = bws[n * t * g:2 * n * t * g].reshape(t, n, g)
    rest = bws[2 * n * t * g:2 * n * t * g + 3 * n * h].reshape(3, n, h)
    dh, dh_prev, dc = rest[0], rest[1], rest[2]
    dh[...] = 0
    dc[...] = 0
    # Two launches a step: the gate kernel (which adds the output's gradient at this step and
    # writes the direct part of dL/dh_{t-1}) and dL/dh_{t-1} += dah W_h^T; dh and dh_prev swap.
    for step in reversed(range(t)):
        dy_t, lddy = (dy[:, step], t * h) if return_sequences else (dy if step == t - 1 else None, h)
        _launch("rnn_step_bwd", dtype, n * h, np.int32(_CELL[cell]), _i(n), _i(h), gates[step],
                _i(gates.shape[2]), _p(hs[step - 1] if step > 0 else None), _i(h),
                _p(cs[step] if cell == "lstm" else None), _p(cs[step - 1] if cell == "lstm" and step > 0 else None),
                _i(h), dh, _p(dy_t), _i(lddy), dc, dax[step:], _i(t * g), dah[step], dh_prev)
        if step > 0:
            _gemm(_bf(dah[step], "rnn_dah_t", bf16), whq, dh_prev, trans_b=True, beta=1.0)
            dh, dh_prev = dh_prev, dh
    _col_sum(dax, dbx)
    if t > 1:
        _gemm(_bf(hs[:t - 1].reshape((t - 1) * n, h), "rnn_hs", bf16),
              _bf(dah[1:].reshape((t - 1) * n, g), "rnn_dah", bf16), dwh, trans_a=True)
    else:
        dwh[...] = 0
    _col_sum(dah.reshape(n * t, g), dbh)
    return dax


# ---- batch normalization: x, y, dy, dx as (outer, channels, inner) views ------------------------

def batchnorm_fwd_train(x, gamma, beta, y, save_mean, save_invstd, moving_mean, moving_var, momentum, eps,
                        relu=False):
    outer, ch, inner = (int(d) for d in x.shape)
    mean = save_mean if save_mean is not None else empty((ch,), x.dtype)
    invstd = save_invstd if save_invstd is not None else empty((ch,), x.dtype)
    _launch("bn_stats", x.dtype, ch, _i(outer), _i(ch), _i(inner), _t(x, momentum), _t(x, eps), x, mean, invstd,
            _p(moving_mean), _p(moving_var))
    _launch("bn_apply", x.dtype, x.size, _i(x.size), _i(ch), _i(inner), np.int32(relu), _t(x, eps), x, _p(gamma),
            _p(beta), mean, _NULL, invstd, y)
    return y


def batchnorm_fwd_infer(x, gamma, beta, mean, var, y, eps):
    _launch("bn_apply", x.dtype, x.size, _i(x.size), _i(x.shape[1]), _i(x.shape[2]), np.int32(0), _t(x, eps), x,
            _p(gamma), _p(beta), mean, var, _NULL, y)
    return y


def batchnorm_bwd(x, gamma, mean, invstd, dy, dx, dgamma, dbeta, y=None, relu=False):
    outer, ch, inner = (int(d) for d in x.shape)
    dg = dgamma if dgamma is not None else _scratch("bn_dgamma", (ch,), x.dtype)
    db = dbeta if dbeta is not None else _scratch("bn_dbeta", (ch,), x.dtype)
    mask = y if relu else _NULL         # the fused ReLU's output masks dy
    _launch("bn_grad_sums", x.dtype, ch, _i(outer), _i(ch), _i(inner), x, mean, invstd, dy, mask, dg, db)
    if dx is not None:
        _launch("bn_bwd_dx", x.dtype, x.size, _i(x.size), _i(ch), _i(inner), x, _p(gamma), mean, invstd, dy, mask, dg,
                db, dx)
    return dx

# The split training kernels of data-parallel training (batchnorm_sums, batchnorm_fwd_apply,
# batchnorm_bwd_apply) are the reference's array code, imported above, on CuPy arrays: a few small
# reductions a step, beside the host all-reduce between the phases.

# ---- embedding ---------------------------------------------------------------------------------
# Forward: one thread per output element. Backward without atomics: keys idx[i] * n + i (unique,
# so any sort gives the same order) are sorted on the device, a binary search gives each row's
# range of the sorted keys, and one thread per element of dW sums its row's terms in ascending
# i: the order of the CPU kernel, so the same bits.

def embedding_fwd(idx, w, out):
    v, d = w.shape
    _launch("embedding_fwd", w.dtype, idx.size * d, _i(idx.size), _i(v), _i(d), idx, w, out)
    return out


def embedding_bwd(idx, dy, dw):
    v, d = dw.shape
    n = idx.size
    keys = _scratch("embedding_keys", (n,), np.int64)
    _launch("embedding_keys", np.float32, n, _i(n), idx, keys)
    keys = _cupy().sort(keys)
    starts = _scratch("embedding_starts", (v + 1,), np.int64)
    _launch("embedding_starts", np.float32, v + 1, _i(n), _i(v), keys, starts)
    _launch("embedding_bwd", dw.dtype, v * d, _i(n), _i(v), _i(d), keys, starts, dy, dw)
    return dw


# ---- data augmentation: the decisions of csrc/ref/augment.c bit for bit ----------------------

def _keys(seed):
    key = _mix64(int(seed))
    return np.uint32(key & 0xFFFFFFFF), np.uint32(key >> 32)


def random_flip(x, flags, seed, offset, out):
    n, c, h, w = x.shape
    _launch("random_flip", x.dtype, x.size, _i(n), _i(c), _i(h), _i(w), np.int32(flags), *_keys(seed),
            np.uint64(offset), x, out)
    return out


def random_translate(x, max_h, max_w, seed, offset, adjoint, fill, out):
    n, c, h, w = x.shape
    _launch("random_translate", x.dtype, x.size, _i(n), _i(c), _i(h), _i(w), _i(max_h), _i(max_w), *_keys(seed),
            np.uint64(offset), np.int32(bool(adjoint)), _t(x, 0.0 if adjoint else fill), x, out)
    return out


def gaussian_noise(x, stddev, seed, offset, out):
    _launch("gaussian_noise", x.dtype, x.size, _i(x.size), np.float64(stddev), *_keys(seed), np.uint64(offset),
            x, out)
    return out
