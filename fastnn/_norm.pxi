# Cython bindings of the batch-normalization kernels (included by _core.pyx).
#
# x, y, dy and dx are passed as 3-D views (outer, ch, inner) (see fastnn.h); the per-channel
# arrays (gamma, beta, statistics, gradients) are (ch,), gamma/beta/dgamma/dbeta may be None.


cdef inline const void *_vec(const floating[::1] v, Py_ssize_t ch, str what) except? NULL:
    """Pointer to a (ch,) per-channel array, NULL for None."""
    if v is None:
        return NULL
    _same(v.shape[0], ch, what)
    return &v[0]


cdef inline void _bn_sizes(const floating[:, :, ::1] x, const floating[:, :, ::1] y, str what) except *:
    if x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"{what}: expected at least one channel and one value per channel, got {tuple(x.shape)[:3]}")
    if (x.shape[0], x.shape[1], x.shape[2]) != (y.shape[0], y.shape[1], y.shape[2]):
        raise ValueError(f"{what}: shapes {tuple(x.shape)[:3]} and {tuple(y.shape)[:3]} differ")


def batchnorm_fwd_train(const floating[:, :, ::1] x not None, const floating[::1] gamma, const floating[::1] beta,
                        floating[:, :, ::1] y not None, floating[::1] save_mean, floating[::1] save_invstd,
                        floating[::1] moving_mean, floating[::1] moving_var, double momentum, double eps,
                        bint relu=False, int n_threads=1):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta with batch statistics (biased variance)
    per channel of (outer, ch, inner); saves mean and 1/sqrt(var + eps); updates the moving ones;
    with relu, y = max(y, 0) (a ReLU layer after it, fused)."""
    _bn_sizes(x, y, "batchnorm_fwd_train")
    cdef Py_ssize_t ch = x.shape[1]
    if x.shape[0] == 0:
        raise ValueError("batchnorm_fwd_train: batch statistics need at least one sample")
    if not eps > 0 or not 0 <= momentum <= 1:
        raise ValueError(f"batchnorm_fwd_train: expected eps > 0 and 0 <= momentum <= 1, got {eps}, {momentum}")
    cdef _op o
    o.kind, o.f64, o.flags, o.n_threads = _OP_BN_TRAIN, floating is double, c.FNN_EPI_RELU if relu else 0, n_threads
    o.m, o.n, o.k, o.alpha, o.beta = x.shape[0], ch, x.shape[2], eps, momentum
    o.a, o.out = &x[0, 0, 0], &y[0, 0, 0]
    o.b = _vec(gamma, ch, "batchnorm gamma")
    o.c = _vec(beta, ch, "batchnorm beta")
    o.ws = <void *>_vec(save_mean, ch, "batchnorm saved mean")
    o.idx = <void *>_vec(save_invstd, ch, "batchnorm saved invstd")
    o.d = _vec(moving_mean, ch, "batchnorm moving mean")
    o.e = _vec(moving_var, ch, "batchnorm moving variance")
    _exec(&o, (x, gamma, beta, y, save_mean, save_invstd, moving_mean, moving_var))


def batchnorm_fwd_infer(const floating[:, :, ::1] x not None, const floating[::1] gamma, const floating[::1] beta,
                        const floating[::1] mean not None, const floating[::1] var not None,
                        floating[:, :, ::1] y not None, double eps, int n_threads=1):
    """y = x * s + (beta - mean * s), s = gamma / sqrt(var + eps), per channel (capturable)."""
    _bn_sizes(x, y, "batchnorm_fwd_infer")
    cdef Py_ssize_t ch = x.shape[1]
    if not eps > 0:
        raise ValueError(f"batchnorm_fwd_infer: expected eps > 0, got {eps}")
    cdef _op o
    o.kind, o.f64, o.n_threads = _OP_BATCHNORM, floating is double, n_threads
    o.m, o.n, o.k, o.alpha = x.shape[0], ch, x.shape[2], eps
    o.b = _vec(gamma, ch, "batchnorm gamma")
    o.c = _vec(beta, ch, "batchnorm beta")
    o.d = _vec(mean, ch, "batchnorm moving mean")
    o.e = _vec(var, ch, "batchnorm moving variance")
    if x.shape[0] == 0:
        return
    o.a, o.out = &x[0, 0, 0], &y[0, 0, 0]
    _exec(&o, (x, gamma, beta, mean, var, y))


def batchnorm_bwd(const floating[:, :, ::1] x not None, const floating[::1] gamma, const floating[::1] mean not None,
                  const floating[::1] invstd not None, const floating[:, :, ::1] y, const floating[:, :, ::1] dy not None,
                  floating[:, :, ::1] dx, floating[::1] dgamma, floating[::1] dbeta, bint relu=False,
                  int n_threads=1):
    """dgamma, dbeta (each may be None) and dx (skipped when None) of the training forward; with
    relu, dy is the gradient of the fused ReLU's output y (the forward's) and is masked by y > 0."""
    _bn_sizes(x, dy, "batchnorm_bwd")
    if relu:
        if y is None:
            raise ValueError("batchnorm_bwd: relu needs the forward's output y")
        _bn_sizes(x, y, "batchnorm_bwd y")
    if dx is not None:
        _bn_sizes(x, dx, "batchnorm_bwd dx")
    cdef Py_ssize_t ch = x.shape[1]
    if x.shape[0] == 0:
        raise ValueError("batchnorm_bwd: expected at least one sample")
    cdef _op o
    o.kind, o.f64, o.flags, o.n_threads = _OP_BN_BWD, floating is double, c.FNN_EPI_RELU if relu else 0, n_threads
    o.m, o.n, o.k = x.shape[0], ch, x.shape[2]
    o.a, o.ws = &x[0, 0, 0], <void *>&dy[0, 0, 0]
    o.b = _vec(gamma, ch, "batchnorm gamma")
    o.c = _vec(mean, ch, "batchnorm saved mean")
    o.d = _vec(invstd, ch, "batchnorm saved invstd")
    o.e = &y[0, 0, 0] if relu else NULL
    o.out = &dx[0, 0, 0] if dx is not None else NULL
    o.idx = <void *>_vec(dgamma, ch, "batchnorm dgamma")
    o.ext[0] = <void *>_vec(dbeta, ch, "batchnorm dbeta")
    _exec(&o, (x, gamma, mean, invstd, y, dy, dx, dgamma, dbeta))


cdef int _run_norm(const _op *o, floating *tag) noexcept nogil:
    """_OP_BN_TRAIN and _OP_BN_BWD in the training kinds' switch."""
    cdef const floating *a = <const floating *>o.a
    if o.kind == _OP_BN_TRAIN:
        if floating is float:
            return c.fnn_batchnorm_fwd_train_f32(o.flags, o.m, o.n, o.k, <float>o.beta, <float>o.alpha, a,
                                                 <const float *>o.b, <const float *>o.c, <float *>o.out,
                                                 <float *>o.ws, <float *>o.idx, <float *>o.d, <float *>o.e,
                                                 o.n_threads)
        return c.fnn_batchnorm_fwd_train_f64(o.flags, o.m, o.n, o.k, o.beta, o.alpha, a, <const double *>o.b,
                                             <const double *>o.c, <double *>o.out, <double *>o.ws, <double *>o.idx,
                                             <double *>o.d, <double *>o.e, o.n_threads)
    if floating is float:
        return c.fnn_batchnorm_bwd_f32(o.flags, o.m, o.n, o.k, a, <const float *>o.b, <const float *>o.c,
                                       <const float *>o.d, <const float *>o.e, <const float *>o.ws, <float *>o.out,
                                       <float *>o.idx, <float *>o.ext[0], o.n_threads)
    return c.fnn_batchnorm_bwd_f64(o.flags, o.m, o.n, o.k, a, <const double *>o.b, <const double *>o.c,
                                   <const double *>o.d, <const double *>o.e, <const double *>o.ws, <double *>o.out,
                                   <double *>o.idx, <double *>o.ext[0], o.n_threads)


# The split training kernels of data-parallel training (fastnn.distributed): sums over this
# process's part of the batch (which may be empty), added over processes by the caller, then the
# apply phase with the totals. sums: float64 (2, ch).

cdef inline double *_bn_sums_ptr(double[:, ::1] sums, Py_ssize_t ch) except NULL:
    if sums is None or sums.shape[0] != 2 or sums.shape[1] != ch:
        raise ValueError(f"batchnorm sums: expected a float64 array of shape (2, {ch})")
    return &sums[0, 0]


cdef inline const void *_bn_data(const floating[:, :, ::1] a):
    """The data pointer of a (outer, ch, inner) view, NULL when it holds no values."""
    return NULL if a is None or a.shape[0] == 0 else <const void *>&a[0, 0, 0]


def batchnorm_sums(const floating[:, :, ::1] x not None, const floating[::1] shift not None,
                   const floating[:, :, ::1] y, const floating[:, :, ::1] dy, double[:, ::1] sums not None,
                   bint relu=False, int n_threads=1):
    """Forward (dy None): sums = [sum (x - shift), sum (x - shift)^2] per channel; backward:
    [sum dy, sum dy (x - shift)] with dy masked by y > 0 under relu."""
    _no_capture("batchnorm_sums")
    cdef Py_ssize_t ch = x.shape[1]
    if ch < 1 or x.shape[2] < 1:
        raise ValueError(f"batchnorm_sums: expected at least one channel and one value, got {tuple(x.shape)[:3]}")
    if dy is not None:
        _bn_sizes(x, dy, "batchnorm_sums dy")
        if relu:
            if y is None:
                raise ValueError("batchnorm_sums: relu needs the forward's output y")
            _bn_sizes(x, y, "batchnorm_sums y")
    cdef const void *ps = _vec(shift, ch, "batchnorm shift")
    cdef double *pout = _bn_sums_ptr(sums, ch)
    cdef const void *px = _bn_data(x)
    cdef const void *py = _bn_data(y) if relu and dy is not None else NULL
    cdef const void *pdy = NULL
    if dy is not None:
        pdy = _bn_data(dy)
        if pdy == NULL:     # an empty part: its sums are zero in either direction
            pdy = ps
    cdef int status, flags = c.FNN_EPI_RELU if relu else 0
    with nogil:
        if floating is float:
            status = c.fnn_batchnorm_sums_f32(flags, x.shape[0], ch, x.shape[2], <const float *>px,
                                              <const float *>ps, <const float *>py, <const float *>pdy, pout,
                                              n_threads)
        else:
            status = c.fnn_batchnorm_sums_f64(flags, x.shape[0], ch, x.shape[2], <const double *>px,
                                              <const double *>ps, <const double *>py, <const double *>pdy, pout,
                                              n_threads)
    _check(status)


def batchnorm_fwd_apply(const floating[:, :, ::1] x not None, const floating[::1] gamma, const floating[::1] beta,
                        const floating[::1] shift not None, const double[:, ::1] sums not None, double count,
                        floating[:, :, ::1] y not None, floating[::1] save_mean, floating[::1] save_invstd,
                        floating[::1] moving_mean, floating[::1] moving_var, double momentum, double eps,
                        bint relu=False, int n_threads=1):
    """The training forward with the statistics of ``sums`` (batchnorm_sums added over every part
    of the batch, ``count`` values per channel in all)."""
    _no_capture("batchnorm_fwd_apply")
    _bn_sizes(x, y, "batchnorm_fwd_apply")
    cdef Py_ssize_t ch = x.shape[1]
    if not count >= 1:
        raise ValueError(f"batchnorm_fwd_apply: expected count >= 1, got {count}")
    if not eps > 0 or not 0 <= momentum <= 1:
        raise ValueError(f"batchnorm_fwd_apply: expected eps > 0 and 0 <= momentum <= 1, got {eps}, {momentum}")
    if sums.shape[0] != 2 or sums.shape[1] != ch:
        raise ValueError(f"batchnorm_fwd_apply: expected sums of shape (2, {ch}), got {tuple(sums.shape)[:2]}")
    cdef const void *pg = _vec(gamma, ch, "batchnorm gamma")
    cdef const void *pb = _vec(beta, ch, "batchnorm beta")
    cdef const void *ps = _vec(shift, ch, "batchnorm shift")
    cdef void *psm = <void *>_vec(save_mean, ch, "batchnorm saved mean")
    cdef void *psi = <void *>_vec(save_invstd, ch, "batchnorm saved invstd")
    cdef void *pmm = <void *>_vec(moving_mean, ch, "batchnorm moving mean")
    cdef void *pmv = <void *>_vec(moving_var, ch, "batchnorm moving variance")
    cdef const void *px = _bn_data(x)
    cdef void *pyo = <void *>_bn_data(y)
    cdef int status, flags = c.FNN_EPI_RELU if relu else 0
    with nogil:
        if floating is float:
            status = c.fnn_batchnorm_fwd_apply_f32(flags, x.shape[0], ch, x.shape[2], count, <float>momentum,
                                                   <float>eps, <const float *>px, <const float *>pg,
                                                   <const float *>pb, <const float *>ps, &sums[0, 0], <float *>pyo,
                                                   <float *>psm, <float *>psi, <float *>pmm, <float *>pmv,
                                                   n_threads)
        else:
            status = c.fnn_batchnorm_fwd_apply_f64(flags, x.shape[0], ch, x.shape[2], count, momentum, eps,
                                                   <const double *>px, <const double *>pg, <const double *>pb,
                                                   <const double *>ps, &sums[0, 0], <double *>pyo, <double *>psm,
                                                   <double *>psi, <double *>pmm, <double *>pmv, n_threads)
    _check(status)


def batchnorm_bwd_apply(const floating[:, :, ::1] x not None, const floating[::1] gamma,
                        const floating[::1] mean not None, const floating[::1] invstd not None,
                        const floating[:, :, ::1] y, const floating[:, :, ::1] dy not None,
                        const double[:, ::1] sums not None, double count, floating[:, :, ::1] dx not None,
                        bint relu=False, int n_threads=1):
    """dx of the training forward from the backward ``sums`` added over every part of the batch
    (``count`` values per channel in all)."""
    _no_capture("batchnorm_bwd_apply")
    _bn_sizes(x, dy, "batchnorm_bwd_apply")
    _bn_sizes(x, dx, "batchnorm_bwd_apply dx")
    if relu:
        if y is None:
            raise ValueError("batchnorm_bwd_apply: relu needs the forward's output y")
        _bn_sizes(x, y, "batchnorm_bwd_apply y")
    cdef Py_ssize_t ch = x.shape[1]
    if not count >= 1:
        raise ValueError(f"batchnorm_bwd_apply: expected count >= 1, got {count}")
    if sums.shape[0] != 2 or sums.shape[1] != ch:
        raise ValueError(f"batchnorm_bwd_apply: expected sums of shape (2, {ch}), got {tuple(sums.shape)[:2]}")
    cdef const void *pg = _vec(gamma, ch, "batchnorm gamma")
    cdef const void *pm = _vec(mean, ch, "batchnorm saved mean")
    cdef const void *pi = _vec(invstd, ch, "batchnorm saved invstd")
    cdef const void *px = _bn_data(x)
    cdef const void *pdy = _bn_data(dy)
    cdef const void *py = _bn_data(y) if relu else NULL
    cdef void *pdx = <void *>_bn_data(dx)
    cdef int status, flags = c.FNN_EPI_RELU if relu else 0
    with nogil:
        if floating is float:
            status = c.fnn_batchnorm_bwd_apply_f32(flags, x.shape[0], ch, x.shape[2], count, <const float *>px,
                                                   <const float *>pg, <const float *>pm, <const float *>pi,
                                                   <const float *>py, <const float *>pdy, &sums[0, 0], <float *>pdx,
                                                   n_threads)
        else:
            status = c.fnn_batchnorm_bwd_apply_f64(flags, x.shape[0], ch, x.shape[2], count, <const double *>px,
                                                   <const double *>pg, <const double *>pm, <const double *>pi,
                                                   <const double *>py, <const double *>pdy, &sums[0, 0],
                                                   <double *>pdx, n_threads)
    _check(status)
