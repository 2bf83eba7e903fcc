# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Cython bindings of the fastnn C kernels.

Every function checks the shapes of its memoryviews against each other before it releases the GIL
and calls C, so no call from Python can make the C code read or write out of bounds. The Python
layer above (``fastnn.backend.cpu``) checks user-facing things (dtypes, finiteness, labels) and
names the layer in its messages; the checks here are the last line of defence.
"""
from cython cimport floating
from libc.stdint cimport int64_t, uint64_t

from fastnn cimport _kernels as c

ACT_LINEAR, ACT_RELU, ACT_SIGMOID, ACT_TANH, ACT_LEAKY_RELU = 0, 1, 2, 3, 4


class KernelError(RuntimeError):
    """A C kernel returned an error status (a bug in the checks above it)."""


cdef int _check(int status) except -1:
    if status == c.FNN_OK:
        return 0
    msg = c.fnn_strerror(status).decode()
    if status == c.FNN_ERR_NOMEM:
        raise MemoryError(msg)
    if status == c.FNN_ERR_LABEL or status == c.FNN_ERR_INDEX:
        raise ValueError(msg)
    raise KernelError(msg)


cdef inline void _same(Py_ssize_t got, Py_ssize_t want, str what) except *:
    if got != want:
        raise ValueError(f"{what}: expected size {want}, got {got}")


cdef inline int64_t _ld(const floating[:, :] x, str what) except -1:
    """Leading dimension of a row-major view (rows may be further apart than the width)."""
    if x.shape[0] == 0 or x.shape[1] == 0:
        return max(x.shape[1], 1)
    # A single column is contiguous whatever its column stride says.
    if (x.shape[1] > 1 and x.strides[1] != sizeof(floating)) \
            or x.strides[0] < x.shape[1] * <Py_ssize_t>sizeof(floating) or x.strides[0] % sizeof(floating) != 0:
        raise ValueError(f"{what}: rows must be contiguous with a positive row stride")
    if <size_t>&x[0, 0] % sizeof(floating) != 0:
        raise ValueError(f"{what}: the array must be aligned to its element size")
    return x.strides[0] // sizeof(floating)


include "_plan.pxi"


# ---- dispatch and threads -------------------------------------------------------------------

ARCH_NAMES = ("generic", "avx2", "avx512")


def arch_best() -> str:
    return c.fnn_arch_name(c.fnn_arch_best()).decode()


def arch_get() -> str:
    return c.fnn_arch_name(c.fnn_arch_get()).decode()


def arch_set(str name) -> None:
    if name not in ARCH_NAMES:
        raise ValueError(f"arch: expected one of {ARCH_NAMES}, got {name!r}")
    if c.fnn_arch_set(ARCH_NAMES.index(name)) != c.FNN_OK:
        raise ValueError(f"arch: this CPU does not support {name!r} (best: {arch_best()!r})")


def openmp_enabled() -> bool:
    return bool(c.fnn_openmp_enabled())


def max_threads() -> int:
    return c.fnn_max_threads()


def threads_usable() -> bool:
    """False only in a forked child whose OpenMP pool could not be released (see threads.c)."""
    return bool(c.fnn_threads_usable())


# The thread pool must survive fork() before any kernel can open a parallel region.
_check(c.fnn_threads_init())


# ---- GEMM -----------------------------------------------------------------------------------

def gemm(const floating[:, :] a, const floating[:, :] b, floating[:, :] out, bint trans_a=False,
         bint trans_b=False, double alpha=1.0, double beta=0.0, const floating[::1] bias=None,
         bint bias_row=False, bint relu=False, int n_threads=1):
    """out = relu?(alpha * op(a) @ op(b) + beta * out + bias)."""
    cdef int64_t m = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t k = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t kb = b.shape[1] if trans_b else b.shape[0]
    cdef int64_t n = b.shape[0] if trans_b else b.shape[1]
    if kb != k:
        raise ValueError(f"matmul: inner dimensions differ ({k} vs {kb})")
    if out.shape[0] != m or out.shape[1] != n:
        raise ValueError(f"matmul: out has shape ({out.shape[0]}, {out.shape[1]}), expected ({m}, {n})")
    if bias is not None:
        _same(bias.shape[0], m if bias_row else n, "matmul bias")
    cdef int64_t lda = _ld(a, "matmul a"), ldb = _ld(b, "matmul b"), ldc = _ld(out, "matmul out")
    cdef int flags = (c.FNN_TRANS_A if trans_a else 0) | (c.FNN_TRANS_B if trans_b else 0) \
        | (c.FNN_BIAS_ROW if bias_row else 0) | (c.FNN_EPI_RELU if relu else 0)
    if m == 0 or n == 0:
        return
    cdef _op o
    o.kind, o.f64, o.flags, o.n_threads = _OP_GEMM, floating is double, flags, n_threads
    o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.alpha, o.beta = m, n, k, lda, ldb, ldc, alpha, beta
    o.a = &a[0, 0] if k > 0 else NULL
    o.b = &b[0, 0] if k > 0 else NULL
    o.c = &bias[0] if bias is not None and bias.shape[0] > 0 else NULL
    o.out = &out[0, 0]
    _exec(&o, (a, b, out, bias))


def bias_grad(const floating[:, ::1] dy, floating[::1] db, bint accumulate=False, int n_threads=1):
    """db (+)= dy.sum(axis=0), in a fixed order."""
    _same(db.shape[0], dy.shape[1], "bias_grad db")
    if db.shape[0] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.flags, o.n_threads = _OP_BIAS_GRAD, floating is double, accumulate, n_threads
    o.m, o.n, o.out = dy.shape[0], dy.shape[1], &db[0]
    o.a = &dy[0, 0] if dy.shape[0] > 0 else NULL
    _exec(&o, (dy, db))


# ---- elementwise ----------------------------------------------------------------------------

def act_fwd(int act, const floating[::1] x, floating[::1] y, double alpha=0.0, int n_threads=1):
    _same(y.shape[0], x.shape[0], "activation output")
    if act < 0 or act > 4:
        raise ValueError(f"activation: unknown code {act}")
    if x.shape[0] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.code, o.n, o.alpha, o.n_threads = _OP_ACT, floating is double, act, x.shape[0], alpha, n_threads
    o.a, o.out = &x[0], &y[0]
    _exec(&o, (x, y))


def act_bwd(int act, const floating[::1] y, const floating[::1] dy, floating[::1] dx, double alpha=0.0,
            int n_threads=1):
    _same(dy.shape[0], y.shape[0], "activation gradient")
    _same(dx.shape[0], y.shape[0], "activation input gradient")
    if act < 0 or act > 4:
        raise ValueError(f"activation: unknown code {act}")
    if y.shape[0] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.code, o.n, o.alpha, o.n_threads = _OP_ACT_BWD, floating is double, act, y.shape[0], alpha, n_threads
    o.a, o.b, o.out = &y[0], &dy[0], &dx[0]
    _exec(&o, (y, dy, dx))


def mul(const floating[::1] a, const floating[::1] b, floating[::1] out, int n_threads=1):
    _same(b.shape[0], a.shape[0], "mul b")
    _same(out.shape[0], a.shape[0], "mul out")
    if a.shape[0] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.n, o.n_threads = _OP_MUL, floating is double, a.shape[0], n_threads
    o.a, o.b, o.out = &a[0], &b[0], &out[0]
    _exec(&o, (a, b, out))


def dropout_fwd(const floating[::1] x, floating[::1] y, floating[::1] mask, double rate, uint64_t seed,
                uint64_t offset, int n_threads=1):
    _same(y.shape[0], x.shape[0], "dropout output")
    _same(mask.shape[0], x.shape[0], "dropout mask")
    if not (0.0 <= rate < 1.0):
        raise ValueError(f"dropout: rate must be in [0, 1), got {rate}")
    if x.shape[0] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.n, o.alpha, o.n_threads = _OP_DROPOUT, floating is double, x.shape[0], rate, n_threads
    o.seed, o.offset = seed, offset
    o.a, o.out, o.idx = &x[0], &y[0], &mask[0]
    _exec(&o, (x, y, mask))


# ---- softmax and losses ---------------------------------------------------------------------

def softmax_fwd(const floating[:, ::1] x, floating[:, ::1] y, int n_threads=1):
    _same(y.shape[0], x.shape[0], "softmax rows")
    _same(y.shape[1], x.shape[1], "softmax columns")
    if x.shape[0] == 0 or x.shape[1] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.m, o.n, o.n_threads = _OP_SOFTMAX, floating is double, x.shape[0], x.shape[1], n_threads
    o.a, o.out = &x[0, 0], &y[0, 0]
    _exec(&o, (x, y))


def softmax_bwd(const floating[:, ::1] y, const floating[:, ::1] dy, floating[:, ::1] dx, int n_threads=1):
    for v, w in ((dy, "softmax gradient"), (dx, "softmax input gradient")):
        _same(v.shape[0], y.shape[0], w)
        _same(v.shape[1], y.shape[1], w)
    if y.shape[0] == 0 or y.shape[1] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.m, o.n, o.n_threads = _OP_SOFTMAX_BWD, floating is double, y.shape[0], y.shape[1], n_threads
    o.a, o.b, o.out = &y[0, 0], &dy[0, 0], &dx[0, 0]
    _exec(&o, (y, dy, dx))


def softmax_xent(const floating[:, ::1] z, const int64_t[::1] labels=None, const floating[:, ::1] onehot=None,
                 floating[:, ::1] grad=None, floating[:, ::1] prob=None, double scale=1.0, int n_threads=1,
                 const floating[::1] w=None):
    """Mean over rows of w * softmax cross-entropy of logits z; fills grad = w (softmax - t) * scale
    and prob (w: per-row weights, None for 1)."""
    cdef int64_t m = z.shape[0], k = z.shape[1]
    if k < 1:
        raise ValueError("softmax cross-entropy: need at least one class")
    if (labels is None) == (onehot is None):
        raise ValueError("softmax cross-entropy: give exactly one of labels and onehot")
    if labels is not None:
        _same(labels.shape[0], m, "labels")
    else:
        _same(onehot.shape[0], m, "targets rows")
        _same(onehot.shape[1], k, "targets columns")
    for v, what in ((grad, "loss gradient"), (prob, "probabilities")):
        if v is not None:
            _same(v.shape[0], m, what)
            _same(v.shape[1], k, what)
    if w is not None:
        _same(w.shape[0], m, "loss weights")
    if m == 0:
        return 0.0
    cdef double loss = 0
    cdef _op o
    o.kind, o.f64, o.m, o.n, o.alpha, o.n_threads = _OP_XENT, floating is double, m, k, scale, n_threads
    o.a = &z[0, 0]
    o.b = &labels[0] if labels is not None else NULL
    o.d = &onehot[0, 0] if onehot is not None else NULL
    o.c = &w[0] if w is not None else NULL
    o.out = &grad[0, 0] if grad is not None else NULL
    o.idx = &prob[0, 0] if prob is not None else NULL
    o.ws = _result_slot(&loss)
    _exec(&o, (z, labels, onehot, grad, prob, w))
    return _result(loss)


cdef int64_t _weight_groups(int64_t n, int64_t cols, bint weighted) except -1:
    """Samples of `cols` elements in n (cols must divide n when there are weights)."""
    if cols < 1 or (weighted and n % cols != 0):
        raise ValueError(f"loss weights: {n} elements do not form samples of {cols}")
    return n // cols


def sigmoid_bce(const floating[::1] z, const floating[::1] t, floating[::1] grad=None, floating[::1] prob=None,
                double scale=1.0, int n_threads=1, const floating[::1] w=None, int64_t cols=1):
    """Mean of w * sigmoid binary cross-entropy of logits z; fills grad = w (sigmoid - t) * scale and
    prob (w: one weight per sample of `cols` elements, None for 1)."""
    _same(t.shape[0], z.shape[0], "targets")
    if w is not None:
        _same(w.shape[0], _weight_groups(z.shape[0], cols, True), "loss weights")
    cdef const floating *pw = &w[0] if w is not None and w.shape[0] > 0 else NULL
    if grad is not None:
        _same(grad.shape[0], z.shape[0], "loss gradient")
    if prob is not None:
        _same(prob.shape[0], z.shape[0], "probabilities")
    if z.shape[0] == 0:
        return 0.0
    cdef double loss = 0
    cdef _op o
    o.kind, o.f64, o.n, o.k, o.alpha, o.n_threads = _OP_BCE, floating is double, z.shape[0], cols, scale, n_threads
    o.a, o.b, o.c = &z[0], &t[0], pw
    o.out = &grad[0] if grad is not None else NULL
    o.idx = &prob[0] if prob is not None else NULL
    o.ws = _result_slot(&loss)
    _exec(&o, (z, t, grad, prob, w))
    return _result(loss)


def mse(const floating[::1] y, const floating[::1] t, floating[::1] grad=None, double scale=1.0,
        int n_threads=1, const floating[::1] w=None, int64_t cols=1):
    """Mean of w * squared error; fills grad = 2 w (y - t) * scale (w as for sigmoid_bce)."""
    _same(t.shape[0], y.shape[0], "targets")
    if w is not None:
        _same(w.shape[0], _weight_groups(y.shape[0], cols, True), "loss weights")
    cdef const floating *pw = &w[0] if w is not None and w.shape[0] > 0 else NULL
    if grad is not None:
        _same(grad.shape[0], y.shape[0], "loss gradient")
    if y.shape[0] == 0:
        return 0.0
    cdef double loss = 0
    cdef _op o
    o.kind, o.f64, o.n, o.k, o.alpha, o.n_threads = _OP_MSE, floating is double, y.shape[0], cols, scale, n_threads
    o.a, o.b, o.c = &y[0], &t[0], pw
    o.out = &grad[0] if grad is not None else NULL
    o.idx = NULL
    o.ws = _result_slot(&loss)
    _exec(&o, (y, t, grad, w))
    return _result(loss)


# ---- optimizers -----------------------------------------------------------------------------

def sgd_step(floating[::1] param, const floating[::1] grad, floating[::1] buf, double lr, double momentum,
             double weight_decay, bint nesterov, bint first, int n_threads=1):
    _same(grad.shape[0], param.shape[0], "sgd gradient")
    _same(buf.shape[0], param.shape[0], "sgd momentum buffer")
    if param.shape[0] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.flags, o.code, o.n, o.n_threads = _OP_SGD, floating is double, nesterov, first, \
        param.shape[0], n_threads
    o.alpha, o.beta, o.hyper[0], o.t = lr, momentum, weight_decay, 1
    o.a, o.out, o.ws = &grad[0], &param[0], &buf[0]
    _exec(&o, (param, grad, buf))


def adam_step(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] v, int64_t t,
              double lr, double beta1, double beta2, double eps, double weight_decay, int n_threads=1,
              bint decoupled=False):
    """One Adam step (torch.optim.Adam), or AdamW's (torch.optim.AdamW) with decoupled=True."""
    _same(grad.shape[0], param.shape[0], "adam gradient")
    _same(m.shape[0], param.shape[0], "adam first moment")
    _same(v.shape[0], param.shape[0], "adam second moment")
    if t < 1:
        raise ValueError(f"adam: step must be >= 1, got {t}")
    if param.shape[0] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.flags, o.n, o.n_threads = _OP_ADAM, floating is double, decoupled, param.shape[0], n_threads
    o.t, o.alpha, o.beta, o.hyper[0], o.hyper[1], o.hyper[2] = t, lr, beta1, beta2, eps, weight_decay
    o.a, o.out, o.d, o.e = &grad[0], &param[0], &m[0], &v[0]
    _exec(&o, (param, grad, m, v))


def rmsprop_step(floating[::1] param, const floating[::1] grad, floating[::1] sq, floating[::1] grad_avg,
                 floating[::1] buf, double lr, double rho, double momentum, double eps, double weight_decay,
                 int n_threads=1):
    """One RMSprop step (torch.optim.RMSprop); grad_avg None unless centered, buf None unless
    momentum > 0."""
    _same(grad.shape[0], param.shape[0], "rmsprop gradient")
    _same(sq.shape[0], param.shape[0], "rmsprop square average")
    if grad_avg is not None:
        _same(grad_avg.shape[0], param.shape[0], "rmsprop gradient average")
    if momentum != 0:
        if buf is None:
            raise ValueError("rmsprop: momentum > 0 needs a momentum buffer")
        _same(buf.shape[0], param.shape[0], "rmsprop momentum buffer")
    if param.shape[0] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.flags, o.n, o.n_threads = _OP_RMSPROP, floating is double, grad_avg is not None, \
        param.shape[0], n_threads
    o.t, o.alpha, o.beta, o.hyper[0], o.hyper[1], o.hyper[2] = 1, lr, rho, momentum, eps, weight_decay
    o.a, o.out, o.ws = &grad[0], &param[0], &sq[0]
    o.d = &grad_avg[0] if grad_avg is not None else NULL
    o.e = &buf[0] if momentum != 0 else NULL
    _exec(&o, (param, grad, sq, grad_avg, buf))


def penalty(const floating[::1] w, floating[::1] grad, double l1, double l2, int n_threads=1):
    """grad += l1 sign(w) + 2 l2 w; returns l1 sum|w| + l2 sum w^2."""
    _no_capture("penalty")
    _same(grad.shape[0], w.shape[0], "penalty gradient")
    cdef double value = 0
    cdef int status
    if w.shape[0] == 0:
        return 0.0
    with nogil:
        if floating is float:
            status = c.fnn_penalty_f32(w.shape[0], <float>l1, <float>l2, &w[0], &grad[0], &value, n_threads)
        else:
            status = c.fnn_penalty_f64(w.shape[0], l1, l2, &w[0], &grad[0], &value, n_threads)
    _check(status)
    return value


# ---- kernel families with their own binding files ------------------------------------------
include "_conv.pxi"
include "_rnn.pxi"
include "_norm.pxi"
include "_embed.pxi"
include "_augment.pxi"
include "_bf16.pxi"
