# Cython bindings of the recurrent-cell kernels (included by _core.pyx).
#
# Cells by code: 0 SimpleRNN, 1 LSTM, 2 GRU. x is (n, t, f) batch first; y / dy are passed as
# 2-D row views (n, t*h) with return_sequences, else (n, h). Every size, including the
# workspaces, is checked against the others before the GIL is released.

CELL_RNN, CELL_LSTM, CELL_GRU = 0, 1, 2
_CELL_NAMES = ("SimpleRNN", "LSTM", "GRU")
_CELL_GATES = (1, 4, 3)


cdef inline int _cell_gates(int cell) except -1:
    if cell < 0 or cell > 2:
        raise ValueError(f"recurrent: unknown cell code {cell}")
    return _CELL_GATES[cell]


cdef int64_t _fwd_workspace(int cell, int64_t n, int64_t t, int64_t f, int64_t h) noexcept nogil:
    if cell == 0:
        return c.fnn_rnn_fwd_workspace(n, t, f, h)
    if cell == 1:
        return c.fnn_lstm_fwd_workspace(n, t, f, h)
    return c.fnn_gru_fwd_workspace(n, t, f, h)


cdef int64_t _bwd_workspace(int cell, int64_t n, int64_t t, int64_t f, int64_t h) noexcept nogil:
    if cell == 0:
        return c.fnn_rnn_bwd_workspace(n, t, f, h)
    if cell == 1:
        return c.fnn_lstm_bwd_workspace(n, t, f, h)
    return c.fnn_gru_bwd_workspace(n, t, f, h)


cdef int _flags(str name, bint seq, bint bf16, bint f64) except -1:
    """The C flags; bf16 ("mixed_bfloat16") is a float32 policy."""
    if bf16 and f64:
        raise ValueError(f"{name}: bf16 (mixed_bfloat16) takes float32 arrays, got float64")
    return (c.FNN_RNN_SEQ if seq else 0) | (c.FNN_RNN_BF16 if bf16 else 0)


def recurrent_workspace(int cell, int64_t n, int64_t t, int64_t f, int64_t h):
    """(forward, backward) workspace sizes in elements for inputs (n, t, f) and h units."""
    _cell_gates(cell)
    cdef int64_t fw = _fwd_workspace(cell, n, t, f, h), bw = _bwd_workspace(cell, n, t, f, h)
    if fw < 0 or bw < 0:
        raise ValueError(f"{_CELL_NAMES[cell]}: invalid sizes (batch {n}, steps {t}, features {f}, units {h})")
    return int(fw), int(bw)


cdef void _check_weights(int cell, int64_t f, int64_t h, tuple wx, tuple wh, Py_ssize_t nbx,
                         Py_ssize_t nbh) except *:
    cdef int64_t kh = _cell_gates(cell) * h
    name = _CELL_NAMES[cell]
    if h < 1:
        raise ValueError(f"{name}: W_h must have at least one row, got shape {wh}")
    if wx != (f, kh):
        raise ValueError(f"{name}: W_x: expected shape ({f}, {kh}), got {wx}")
    if wh != (h, kh):
        raise ValueError(f"{name}: W_h: expected shape ({h}, {kh}), got {wh}")
    _same(nbx, kh, f"{name} b_x")
    _same(nbh, kh, f"{name} b_h")


def recurrent_fwd(int cell, const floating[:, :, ::1] x, const floating[:, ::1] wx, const floating[:, ::1] wh,
                  const floating[::1] bx, const floating[::1] bh, floating[:, ::1] y, floating[::1] ws,
                  bint seq=False, int n_threads=1, bint bf16=False):
    """y = the layer output (n, t*h) or (n, h); ws keeps what recurrent_bwd needs. bf16: the
    products x W_x and h_{t-1} W_h on inputs rounded to bfloat16 (float32 only; pass the same to
    recurrent_bwd)."""
    cdef int64_t n = x.shape[0], t = x.shape[1], f = x.shape[2], h = wh.shape[0]
    name = _CELL_NAMES[cell] if 0 <= cell <= 2 else "recurrent"
    _check_weights(cell, f, h, (wx.shape[0], wx.shape[1]), (wh.shape[0], wh.shape[1]), bx.shape[0], bh.shape[0])
    cdef int flags = _flags(name, seq, bf16, floating is double)
    if t < 1:
        raise ValueError(f"{name}: expected at least one time step, got input shape ({n}, {t}, {f})")
    if y.shape[0] != n or y.shape[1] != (t * h if seq else h):
        raise ValueError(f"{name}: output has shape ({y.shape[0]}, {y.shape[1]}), expected "
                         f"({n}, {t * h if seq else h})")
    cdef int64_t need = _fwd_workspace(cell, n, t, f, h)
    if need < 0:
        raise ValueError(f"{name}: invalid sizes (batch {n}, steps {t}, features {f}, units {h})")
    if ws.shape[0] < need:
        raise ValueError(f"{name}: workspace has {ws.shape[0]} elements, needs {need}")
    if n == 0:
        return
    cdef _op o
    o.kind, o.f64, o.code, o.n_threads = _OP_RECURRENT, floating is double, cell, n_threads
    o.flags = flags
    o.m, o.t, o.n, o.h = n, t, f, h
    o.a = &x[0, 0, 0] if f > 0 else NULL
    o.b = &wx[0, 0] if f > 0 else NULL
    o.c, o.d, o.e, o.out, o.ws = &bx[0], &wh[0, 0], &bh[0], &y[0, 0], &ws[0]
    _exec(&o, (x, wx, wh, bx, bh, y, ws))


def recurrent_bwd(int cell, const floating[:, :, ::1] x, const floating[:, ::1] wx, const floating[:, ::1] wh,
                  const floating[::1] ws, const floating[:, ::1] dy, floating[:, ::1] dwx, floating[:, ::1] dwh,
                  floating[::1] dbx, floating[::1] dbh, floating[:, :, ::1] dx, floating[::1] bws,
                  bint seq=False, int n_threads=1, bint bf16=False):
    """Gradients of sum(dy * y) for the forward that filled ws: dW_x, dW_h, db_x, db_h and,
    unless dx is None, dx (n, t, f). bf16 as the forward's: the products dG W_x^T, dG W_h^T and
    the weight gradients on bf16-rounded inputs; the bias gradients float32 sums."""
    cdef int64_t n = x.shape[0], t = x.shape[1], f = x.shape[2], h = wh.shape[0]
    name = _CELL_NAMES[cell] if 0 <= cell <= 2 else "recurrent"
    _check_weights(cell, f, h, (wx.shape[0], wx.shape[1]), (wh.shape[0], wh.shape[1]), dbx.shape[0],
                   dbh.shape[0])
    cdef int flags = _flags(name, seq, bf16, floating is double)
    if (dwx.shape[0], dwx.shape[1]) != (wx.shape[0], wx.shape[1]):
        raise ValueError(f"{name}: dW_x has shape ({dwx.shape[0]}, {dwx.shape[1]}), expected "
                         f"({wx.shape[0]}, {wx.shape[1]})")
    if (dwh.shape[0], dwh.shape[1]) != (wh.shape[0], wh.shape[1]):
        raise ValueError(f"{name}: dW_h has shape ({dwh.shape[0]}, {dwh.shape[1]}), expected "
                         f"({wh.shape[0]}, {wh.shape[1]})")
    if t < 1:
        raise ValueError(f"{name}: expected at least one time step, got input shape ({n}, {t}, {f})")
    if dy.shape[0] != n or dy.shape[1] != (t * h if seq else h):
        raise ValueError(f"{name}: output gradient has shape ({dy.shape[0]}, {dy.shape[1]}), expected "
                         f"({n}, {t * h if seq else h})")
    if dx is not None and (dx.shape[0] != n or dx.shape[1] != t or dx.shape[2] != f):
        raise ValueError(f"{name}: dx has shape ({dx.shape[0]}, {dx.shape[1]}, {dx.shape[2]}), expected "
                         f"({n}, {t}, {f})")
    cdef int64_t need_f = _fwd_workspace(cell, n, t, f, h), need_b = _bwd_workspace(cell, n, t, f, h)
    if need_f < 0 or need_b < 0:
        raise ValueError(f"{name}: invalid sizes (batch {n}, steps {t}, features {f}, units {h})")
    if ws.shape[0] < need_f:
        raise ValueError(f"{name}: forward workspace has {ws.shape[0]} elements, needs {need_f}")
    if bws.shape[0] < need_b:
        raise ValueError(f"{name}: backward workspace has {bws.shape[0]} elements, needs {need_b}")
    cdef _op o
    o.kind, o.f64, o.code, o.flags, o.n_threads = _OP_RNN_BWD, floating is double, cell, flags, n_threads
    o.m, o.t, o.n, o.h = n, t, f, h
    o.a = &x[0, 0, 0] if n > 0 and f > 0 else NULL
    o.b = &wx[0, 0] if f > 0 else NULL
    o.out = &dwx[0, 0] if f > 0 else NULL
    o.c = &ws[0] if ws.shape[0] > 0 else NULL
    o.e = &dy[0, 0] if n > 0 else NULL
    o.d, o.idx, o.ws, o.ext[0] = &wh[0, 0], &dwh[0, 0], &dbx[0], &dbh[0]
    o.ext[1] = &dx[0, 0, 0] if dx is not None and n > 0 and f > 0 else NULL
    o.ext[2] = &bws[0] if bws.shape[0] > 0 else NULL
    _exec(&o, (x, wx, wh, ws, dy, dwx, dwh, dbx, dbh, dx, bws))


cdef int _run_recurrent_train(const _op *o, floating *tag) noexcept nogil:
    """_OP_RNN_BWD, _OP_TABLE_FWD and _OP_TABLE_BWD in the training kinds' switch."""
    cdef const floating *x = <const floating *>o.a
    cdef const floating *wx = <const floating *>o.b
    cdef const floating *ws = <const floating *>o.c
    cdef const floating *wh = <const floating *>o.d
    cdef const floating *e = <const floating *>o.e
    cdef floating *out = <floating *>o.out
    cdef floating *dwh = <floating *>o.idx
    cdef floating *dbx = <floating *>o.ws
    cdef floating *dbh = <floating *>o.ext[0]
    cdef floating *dx = <floating *>o.ext[1]
    cdef floating *bws = <floating *>o.ext[2]
    cdef const int64_t *idx = <const int64_t *>o.idx
    if o.kind == _OP_TABLE_FWD:       # a: the table (lda its stride), e: b_h, out: y, ws: workspace
        if floating is float:
            return c.fnn_recurrent_table_fwd_f32(o.code, o.flags, o.m, o.t, o.h, o.k, idx, x, o.lda, wh, e, out,
                                                 <float *>o.ws, o.n_threads)
        return c.fnn_recurrent_table_fwd_f64(o.code, o.flags, o.m, o.t, o.h, o.k, idx, x, o.lda, wh, e, out,
                                             <double *>o.ws, o.n_threads)
    if o.kind == _OP_TABLE_BWD:       # e: dy, out: dW_h, ws: db_x, ext: db_h, the table's gradient, bws
        if floating is float:
            return c.fnn_recurrent_table_bwd_f32(o.code, o.flags, o.m, o.t, o.h, o.k, idx, wh, ws, e, out, dbx, dbh,
                                                 dx, o.lda, bws, o.n_threads)
        return c.fnn_recurrent_table_bwd_f64(o.code, o.flags, o.m, o.t, o.h, o.k, idx, wh, ws, e, out, dbx, dbh,
                                             dx, o.lda, bws, o.n_threads)
    # _OP_RNN_BWD: e: dy, out: dW_x, idx: dW_h, ws: db_x, ext: db_h, dx, bws
    if floating is float:
        if o.code == 0:
            return c.fnn_rnn_bwd_f32(o.flags, o.m, o.t, o.n, o.h, x, wx, wh, ws, e, out, dwh, dbx, dbh, dx, bws,
                                     o.n_threads)
        if o.code == 1:
            return c.fnn_lstm_bwd_f32(o.flags, o.m, o.t, o.n, o.h, x, wx, wh, ws, e, out, dwh, dbx, dbh, dx, bws,
                                      o.n_threads)
        return c.fnn_gru_bwd_f32(o.flags, o.m, o.t, o.n, o.h, x, wx, wh, ws, e, out, dwh, dbx, dbh, dx, bws,
                                 o.n_threads)
    if o.code == 0:
        return c.fnn_rnn_bwd_f64(o.flags, o.m, o.t, o.n, o.h, x, wx, wh, ws, e, out, dwh, dbx, dbh, dx, bws,
                                 o.n_threads)
    if o.code == 1:
        return c.fnn_lstm_bwd_f64(o.flags, o.m, o.t, o.n, o.h, x, wx, wh, ws, e, out, dwh, dbx, dbh, dx, bws,
                                  o.n_threads)
    return c.fnn_gru_bwd_f64(o.flags, o.m, o.t, o.n, o.h, x, wx, wh, ws, e, out, dwh, dbx, dbh, dx, bws,
                             o.n_threads)


cdef void _check_table_call(str name, int cell, int64_t n, int64_t t, int64_t h, tuple idx, tuple p, tuple wh,
                            Py_ssize_t nbh, Py_ssize_t ws_len, Py_ssize_t bws_len, bint bwd) except *:
    cdef int64_t kh = _cell_gates(cell) * h
    if idx != (n, t):
        raise ValueError(f"{name}: indices have shape {idx}, expected ({n}, {t})")
    if p[0] < 1 or p[1] != kh:
        raise ValueError(f"{name}: table: expected shape (v >= 1, {kh}), got {p}")
    if wh != (h, kh):
        raise ValueError(f"{name}: W_h: expected shape ({h}, {kh}), got {wh}")
    _same(nbh, kh, f"{name} b_h")
    if t < 1:
        raise ValueError(f"{name}: expected at least one time step, got indices of shape ({n}, {t})")
    cdef int64_t need_f = _fwd_workspace(cell, n, t, 0, h), need_b = _bwd_workspace(cell, n, t, 0, h)
    if need_f < 0 or need_b < 0:
        raise ValueError(f"{name}: invalid sizes (batch {n}, steps {t}, units {h})")
    if ws_len < need_f:
        raise ValueError(f"{name}: forward workspace has {ws_len} elements, needs {need_f}")
    if bwd and bws_len < need_b:
        raise ValueError(f"{name}: backward workspace has {bws_len} elements, needs {need_b}")


def recurrent_table_fwd(int cell, const int64_t[:, ::1] idx, const floating[:, ::1] p, const floating[:, ::1] wh,
                        const floating[::1] bh, floating[:, ::1] y, floating[::1] ws, bint seq=False,
                        int n_threads=1):
    """The recurrent forward with input projections gathered from the table p = E W_x + b_x by
    the indices idx (n, t); ws as recurrent_workspace(cell, n, t, 0, h)[0]."""
    _cell_gates(cell)
    cdef int64_t n = idx.shape[0], t = idx.shape[1], h = wh.shape[0], v = p.shape[0]
    name = _CELL_NAMES[cell]
    _check_table_call(name, cell, n, t, h, (idx.shape[0], idx.shape[1]), (p.shape[0], p.shape[1]),
                      (wh.shape[0], wh.shape[1]), bh.shape[0], ws.shape[0], 0, False)
    if y.shape[0] != n or y.shape[1] != (t * h if seq else h):
        raise ValueError(f"{name}: output has shape ({y.shape[0]}, {y.shape[1]}), expected "
                         f"({n}, {t * h if seq else h})")
    if n == 0:
        return
    cdef _op o       # idx: the indices, a: the table, d: W_h, e: b_h, out: y, ws: workspace
    o.kind, o.f64, o.code, o.n_threads = _OP_TABLE_FWD, floating is double, cell, n_threads
    o.flags = c.FNN_RNN_SEQ if seq else 0
    o.m, o.t, o.h, o.k, o.lda = n, t, h, v, p.shape[1]
    o.idx, o.a, o.d, o.e = <void *>&idx[0, 0], &p[0, 0], &wh[0, 0], &bh[0]
    o.out, o.ws = &y[0, 0], &ws[0]
    _exec(&o, (idx, p, wh, bh, y, ws))


def recurrent_table_bwd(int cell, const int64_t[:, ::1] idx, const floating[:, ::1] wh, const floating[::1] ws,
                        const floating[:, ::1] dy, floating[:, ::1] dwh, floating[::1] dbx, floating[::1] dbh,
                        floating[:, ::1] dp, floating[::1] bws, bint seq=False, int n_threads=1):
    """Gradients of sum(dy * y) for the recurrent_table_fwd that filled ws: dW_h, db_x, db_h and
    dp (v, kh), the gradient of the table (each row the sum of its indices' x-side gate gradients)."""
    _cell_gates(cell)
    cdef int64_t n = idx.shape[0], t = idx.shape[1], h = wh.shape[0], v = dp.shape[0]
    name = _CELL_NAMES[cell]
    _check_table_call(name, cell, n, t, h, (idx.shape[0], idx.shape[1]), (dp.shape[0], dp.shape[1]),
                      (wh.shape[0], wh.shape[1]), dbh.shape[0], ws.shape[0], bws.shape[0], True)
    _same(dbx.shape[0], dbh.shape[0], f"{name} db_x")
    if (dwh.shape[0], dwh.shape[1]) != (wh.shape[0], wh.shape[1]):
        raise ValueError(f"{name}: dW_h has shape ({dwh.shape[0]}, {dwh.shape[1]}), expected "
                         f"({wh.shape[0]}, {wh.shape[1]})")
    if dy.shape[0] != n or dy.shape[1] != (t * h if seq else h):
        raise ValueError(f"{name}: output gradient has shape ({dy.shape[0]}, {dy.shape[1]}), expected "
                         f"({n}, {t * h if seq else h})")
    cdef _op o       # idx, d: W_h, c: workspace, e: dy, out: dW_h, ws: db_x, ext: db_h, dp, bws
    o.kind, o.f64, o.code, o.n_threads = _OP_TABLE_BWD, floating is double, cell, n_threads
    o.flags = c.FNN_RNN_SEQ if seq else 0
    o.m, o.t, o.h, o.k, o.lda = n, t, h, v, dp.shape[1]
    o.idx = <void *>&idx[0, 0] if n > 0 else NULL
    o.c = &ws[0] if ws.shape[0] > 0 else NULL
    o.e = &dy[0, 0] if n > 0 else NULL
    o.d, o.out, o.ws, o.ext[0], o.ext[1] = &wh[0, 0], &dwh[0, 0], &dbx[0], &dbh[0], &dp[0, 0]
    o.ext[2] = &bws[0] if bws.shape[0] > 0 else NULL
    _exec(&o, (idx, wh, ws, dy, dwh, dbx, dbh, dp, bws))
