# Cython bindings of the embedding kernels (included by _core.pyx).
#
# idx is the flat (n,) int64 index array, w the (v, d) table, y / dy (n, d) rows. The sizes are
# checked here; the index range is checked by the layer (which names the bad index) and again by
# the C kernel, which returns FNN_ERR_INDEX (a ValueError here) before reading anything. The
# forward is capturable into inference plans (an _op of kind _OP_EMBED with the indices in idx).


cdef int _run_embed(const _op *o) noexcept nogil:
    """_OP_EMBED (the forward) and _OP_EMBED_BWD (a: dy, out: dw)."""
    if o.kind == _OP_EMBED_BWD:
        if o.f64:
            return c.fnn_embedding_bwd_f64(o.m, o.k, o.n, <const int64_t *>o.idx, <const double *>o.a,
                                           <double *>o.out, o.n_threads)
        return c.fnn_embedding_bwd_f32(o.m, o.k, o.n, <const int64_t *>o.idx, <const float *>o.a, <float *>o.out,
                                       o.n_threads)
    if o.f64:
        return c.fnn_embedding_fwd_f64(o.m, o.k, o.n, <const int64_t *>o.idx, <const double *>o.b,
                                       <double *>o.out, o.n_threads)
    return c.fnn_embedding_fwd_f32(o.m, o.k, o.n, <const int64_t *>o.idx, <const float *>o.b, <float *>o.out,
                                   o.n_threads)


def embedding_fwd(const int64_t[::1] idx, const floating[:, ::1] w, floating[:, ::1] y, int n_threads=1):
    """y[i] = w[idx[i]] for every i (an index outside [0, v) raises ValueError)."""
    cdef int64_t n = idx.shape[0], v = w.shape[0], d = w.shape[1]
    if y.shape[0] != n or y.shape[1] != d:
        raise ValueError(f"embedding: output has shape ({y.shape[0]}, {y.shape[1]}), expected ({n}, {d})")
    if n == 0 or d == 0:
        return
    cdef _op o
    o.kind, o.f64, o.n_threads = _OP_EMBED, floating is double, n_threads
    o.m, o.k, o.n = n, v, d
    o.idx = <void *>&idx[0]
    o.b = &w[0, 0] if v > 0 else NULL
    o.out = &y[0, 0]
    _exec(&o, (idx, w, y))


def embedding_bwd(const int64_t[::1] idx, const floating[:, ::1] dy, floating[:, ::1] dw, int n_threads=1):
    """dw = 0; dw[idx[i]] += dy[i] for i in order (the sum does not depend on n_threads)."""
    cdef int64_t n = idx.shape[0], v = dw.shape[0], d = dw.shape[1]
    if dy.shape[0] != n or dy.shape[1] != d:
        raise ValueError(f"embedding: output gradient has shape ({dy.shape[0]}, {dy.shape[1]}), expected ({n}, {d})")
    if v == 0 or d == 0:
        return
    cdef _op o
    o.kind, o.f64, o.n_threads = _OP_EMBED_BWD, floating is double, n_threads
    o.m, o.k, o.n, o.out = n, v, d, &dw[0, 0]
    o.idx = <void *>&idx[0] if n > 0 else NULL
    o.a = &dy[0, 0] if n > 0 else NULL
    _exec(&o, (idx, dy, dw))
