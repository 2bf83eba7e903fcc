# Cython bindings of the convolution and pooling kernels (included by _core.pyx).
#
# Geometry arguments: stride = (sh, sw), padding = (top, bottom, left, right), pool = (kh, kw).
# Every shape is checked against the geometry before the GIL is released.
from libc.stdint cimport int32_t

import numpy as _np


cdef inline tuple _shape4(Py_ssize_t *shape):
    return (shape[0], shape[1], shape[2], shape[3])


cdef c.fnn_conv2d_shape _conv_shape(tuple xs, tuple wsh, stride, padding) except *:
    """The C geometry of a convolution of input shape xs with weights of shape wsh, checked."""
    cdef c.fnn_conv2d_shape s
    if len(xs) != 4 or len(wsh) != 4:
        raise ValueError(f"conv2d: expected 4-D input and weights, got shapes {xs} and {wsh}")
    s.n, s.c, s.h, s.w = xs
    s.f, s.kh, s.kw = wsh[0], wsh[2], wsh[3]
    if wsh[1] != s.c:
        raise ValueError(f"conv2d: weights {wsh} expect {wsh[1]} input channels, the input {xs} has {s.c}")
    s.sh, s.sw = stride
    s.pad_t, s.pad_b, s.pad_l, s.pad_r = padding
    if s.sh < 1 or s.sw < 1:
        raise ValueError(f"conv2d: strides must be >= 1, got {tuple(stride)}")
    if s.pad_t < 0 or s.pad_b < 0 or s.pad_l < 0 or s.pad_r < 0:
        raise ValueError(f"conv2d: padding must be >= 0, got {tuple(padding)}")
    if s.c < 1 or s.h < 1 or s.w < 1 or s.f < 1 or s.kh < 1 or s.kw < 1:
        raise ValueError(f"conv2d: empty channel, spatial or kernel dimension in input {xs} / weights {wsh}")
    if s.h + s.pad_t + s.pad_b < s.kh or s.w + s.pad_l + s.pad_r < s.kw:
        raise ValueError(f"conv2d: kernel ({s.kh}, {s.kw}) is larger than the padded input "
                         f"({s.h + s.pad_t + s.pad_b}, {s.w + s.pad_l + s.pad_r})")
    return s


cdef inline tuple _conv_out(c.fnn_conv2d_shape *s):
    return (s.n, s.f, (s.h + s.pad_t + s.pad_b - s.kh) // s.sh + 1, (s.w + s.pad_l + s.pad_r - s.kw) // s.sw + 1)


cdef int64_t _conv_ws(int backward, c.fnn_conv2d_shape *s, int n_threads) except -1:
    cdef int64_t need = c.fnn_conv2d_workspace(backward, s, n_threads)
    if need < 0:
        raise ValueError(f"conv2d: unsupported geometry (input ({s.n}, {s.c}, {s.h}, {s.w}), kernel "
                         f"({s.f}, {s.c}, {s.kh}, {s.kw}), strides ({s.sh}, {s.sw}), padding "
                         f"({s.pad_t}, {s.pad_b}, {s.pad_l}, {s.pad_r}))")
    return need


cdef inline void _same_shape(tuple got, tuple want, str what) except *:
    if got != want:
        raise ValueError(f"{what}: expected shape {want}, got {got}")


cdef inline int _bf16_float(bint bf16, bint f64) except -1:
    if bf16 and f64:
        raise ValueError("conv2d: bf16=True needs float32 arrays")
    return 0


def conv2d_workspace(bint backward, tuple x_shape, tuple w_shape, stride, padding, int n_threads=1) -> int:
    """Elements of the workspace conv2d_fwd (backward=False) or conv2d_bwd wants."""
    cdef c.fnn_conv2d_shape s = _conv_shape(x_shape, w_shape, stride, padding)
    return _conv_ws(backward, &s, n_threads)


def conv2d_fwd(const floating[:, :, :, ::1] x not None, const floating[:, :, :, ::1] w not None,
               const floating[::1] b, floating[:, :, :, ::1] y not None, stride, padding, bint relu=False,
               floating[::1] ws=None, int n_threads=1, bint bf16=False):
    """y = relu?(conv2d(x, w) + b) (cross-correlation, NCHW); bf16 (float32 only): x and w rounded to
    bf16, float32 sums (fnn_conv2d_fwd_bf16)."""
    _bf16_float(bf16, floating is double)
    cdef tuple xs = _shape4(x.shape), wsh = _shape4(w.shape)
    cdef c.fnn_conv2d_shape s = _conv_shape(xs, wsh, stride, padding)
    _same_shape(_shape4(y.shape), _conv_out(&s), "conv2d output")
    if b is not None:
        _same(b.shape[0], s.f, "conv2d bias")
    cdef int64_t need = _conv_ws(0, &s, n_threads)
    if s.n == 0:
        return
    if ws is None:
        ws = _np.empty(max(need, 1), dtype=_np.float32 if floating is float else _np.float64)
    elif ws.shape[0] < need:
        raise ValueError(f"conv2d workspace: expected at least {need} elements, got {ws.shape[0]}")
    cdef _op o
    o.kind, o.f64, o.flags, o.n_threads = _OP_CONV, floating is double, c.FNN_EPI_RELU if relu else 0, n_threads
    o.code = bf16
    o.conv, o.ws_len = s, ws.shape[0]
    o.a, o.b, o.out, o.ws = &x[0, 0, 0, 0], &w[0, 0, 0, 0], &y[0, 0, 0, 0], &ws[0]
    o.c = &b[0] if b is not None else NULL
    _exec(&o, (x, w, b, y, ws))


def conv2d_bwd(const floating[:, :, :, ::1] x not None, const floating[:, :, :, ::1] w not None,
               const floating[:, :, :, ::1] y, const floating[:, :, :, ::1] dy not None,
               floating[:, :, :, ::1] dw not None, floating[::1] db, floating[:, :, :, ::1] dx, stride, padding,
               bint relu=False, floating[::1] ws=None, int n_threads=1, bint bf16=False):
    """dw, db (may be None) and dx (may be None) from g = dy, or g = dy * (y > 0) with relu (y is then
    the forward output); bf16 (float32 only): x, w and g rounded to bf16 for the products, float32
    sums, db the float32 sum of g (fnn_conv2d_bwd_bf16)."""
    _bf16_float(bf16, floating is double)
    cdef tuple xs = _shape4(x.shape), wsh = _shape4(w.shape)
    cdef c.fnn_conv2d_shape s = _conv_shape(xs, wsh, stride, padding)
    cdef tuple out = _conv_out(&s)
    _same_shape(_shape4(dy.shape), out, "conv2d output gradient")
    _same_shape(_shape4(dw.shape), wsh, "conv2d weight gradient")
    if relu:
        if y is None:
            raise ValueError("conv2d backward: relu needs the forward output y")
        _same_shape(_shape4(y.shape), out, "conv2d output")
    if db is not None:
        _same(db.shape[0], s.f, "conv2d bias gradient")
    if dx is not None:
        _same_shape(_shape4(dx.shape), xs, "conv2d input gradient")
    cdef int64_t need = _conv_ws(1, &s, n_threads)
    if ws is None:
        ws = _np.empty(max(need, 1), dtype=_np.float32 if floating is float else _np.float64)
    elif ws.shape[0] < need:
        raise ValueError(f"conv2d workspace: expected at least {need} elements, got {ws.shape[0]}")
    cdef _op o       # no samples (s.n == 0): the kernel zeroes dw and db
    o.kind, o.f64, o.flags, o.code, o.n_threads = _OP_CONV_BWD, floating is double, \
        c.FNN_EPI_RELU if relu else 0, bf16, n_threads
    o.conv, o.ws_len, o.ws = s, ws.shape[0], &ws[0]
    o.b, o.out = &w[0, 0, 0, 0], &dw[0, 0, 0, 0]
    o.a = &x[0, 0, 0, 0] if s.n > 0 else NULL
    o.e = &dy[0, 0, 0, 0] if s.n > 0 else NULL
    o.d = &y[0, 0, 0, 0] if relu and s.n > 0 else NULL
    o.c = &db[0] if db is not None else NULL
    o.idx = &dx[0, 0, 0, 0] if dx is not None and s.n > 0 else NULL
    _exec(&o, (x, w, y, dy, dw, db, dx, ws))


cdef c.fnn_pool2d_shape _pool_shape(tuple xs, pool, stride, str what) except *:
    cdef c.fnn_pool2d_shape s
    if len(xs) != 4:
        raise ValueError(f"{what}: expected 4-D input (N, C, H, W), got shape {xs}")
    s.n, s.c, s.h, s.w = xs
    s.kh, s.kw = pool
    s.sh, s.sw = stride
    if s.kh < 1 or s.kw < 1 or s.sh < 1 or s.sw < 1 or max(s.kh, s.kw, s.sh, s.sw) > 2147483647:
        raise ValueError(f"{what}: pool size and strides must be in [1, 2^31), got {tuple(pool)} and {tuple(stride)}")
    if s.c < 1 or s.h < 1 or s.w < 1:
        raise ValueError(f"{what}: empty channel or spatial dimension in input {xs}")
    if s.kh > s.h or s.kw > s.w:
        raise ValueError(f"{what}: window ({s.kh}, {s.kw}) is larger than the input ({s.h}, {s.w})")
    if s.h * s.w > 2147483647:
        raise ValueError(f"{what}: planes of more than 2^31 - 1 values are not supported, got ({s.h}, {s.w})")
    return s


cdef inline tuple _pool_out(c.fnn_pool2d_shape *s):
    return (s.n, s.c, (s.h - s.kh) // s.sh + 1, (s.w - s.kw) // s.sw + 1)


def maxpool2d_fwd(const floating[:, :, :, ::1] x not None, floating[:, :, :, ::1] y not None,
                  int32_t[:, :, :, ::1] idx, pool, stride, int n_threads=1):
    """y = window maxima; idx (may be None) = argmax offsets inside each (H, W) plane."""
    cdef c.fnn_pool2d_shape s = _pool_shape(_shape4(x.shape), pool, stride, "maxpool2d")
    cdef tuple out = _pool_out(&s)
    _same_shape(_shape4(y.shape), out, "maxpool2d output")
    if idx is not None:
        _same_shape(_shape4(idx.shape), out, "maxpool2d indices")
    if s.n == 0:
        return
    cdef _op o
    o.kind, o.f64, o.pool, o.n_threads = _OP_MAXPOOL, floating is double, s, n_threads
    o.a, o.out, o.idx = &x[0, 0, 0, 0], &y[0, 0, 0, 0], &idx[0, 0, 0, 0] if idx is not None else NULL
    _exec(&o, (x, y, idx))


def maxpool2d_bwd(const floating[:, :, :, ::1] dy not None, const int32_t[:, :, :, ::1] idx not None,
                  floating[:, :, :, ::1] dx not None, pool, stride, int n_threads=1):
    """dx = 0, then dx[plane][idx] += dy."""
    cdef c.fnn_pool2d_shape s = _pool_shape(_shape4(dx.shape), pool, stride, "maxpool2d")
    cdef tuple out = _pool_out(&s)
    _same_shape(_shape4(dy.shape), out, "maxpool2d output gradient")
    _same_shape(_shape4(idx.shape), out, "maxpool2d indices")
    if s.n == 0:
        return
    cdef _op o
    o.kind, o.f64, o.pool, o.n_threads = _OP_MAXPOOL_BWD, floating is double, s, n_threads
    o.a, o.idx, o.out = &dy[0, 0, 0, 0], <void *>&idx[0, 0, 0, 0], &dx[0, 0, 0, 0]
    try:
        _exec(&o, (dy, idx, dx))
    except KernelError as err:      # the kernel checks every index against its plane
        raise ValueError("maxpool2d: an index lies outside its plane") from err


def avgpool2d_fwd(const floating[:, :, :, ::1] x not None, floating[:, :, :, ::1] y not None, pool, stride,
                  int n_threads=1):
    """y = window means."""
    cdef c.fnn_pool2d_shape s = _pool_shape(_shape4(x.shape), pool, stride, "avgpool2d")
    _same_shape(_shape4(y.shape), _pool_out(&s), "avgpool2d output")
    if s.n == 0:
        return
    cdef _op o
    o.kind, o.f64, o.pool, o.n_threads = _OP_AVGPOOL, floating is double, s, n_threads
    o.a, o.out = &x[0, 0, 0, 0], &y[0, 0, 0, 0]
    _exec(&o, (x, y))


def avgpool2d_bwd(const floating[:, :, :, ::1] dy not None, floating[:, :, :, ::1] dx not None, pool, stride,
                  int n_threads=1):
    """dx = 0, then every window of dx += its dy / (kh * kw)."""
    cdef c.fnn_pool2d_shape s = _pool_shape(_shape4(dx.shape), pool, stride, "avgpool2d")
    _same_shape(_shape4(dy.shape), _pool_out(&s), "avgpool2d output gradient")
    if s.n == 0:
        return
    cdef _op o
    o.kind, o.f64, o.pool, o.n_threads = _OP_AVGPOOL_BWD, floating is double, s, n_threads
    o.a, o.out = &dy[0, 0, 0, 0], &dx[0, 0, 0, 0]
    _exec(&o, (dy, dx))
