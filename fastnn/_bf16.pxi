# bfloat16: conversion, the bf16 GEMM (float32 or bf16-stored operands, float32 C) and its variant
# dispatch (included by _core.pyx). bf16 arrays are uint16 arrays holding the bits.
from libc.stdint cimport uint16_t

ctypedef fused bf16_opnd_a:
    float
    uint16_t

ctypedef fused bf16_opnd_b:
    float
    uint16_t

BF16_NAMES = ("ref", "avx512bf16", "amx")


def bf16_best() -> str:
    return c.fnn_bf16_name(c.fnn_bf16_best()).decode()


def bf16_get() -> str:
    return c.fnn_bf16_name(c.fnn_bf16_get()).decode()


def bf16_note() -> str:
    """"" normally; when the picked variant cannot run its own kernel, why and what runs instead
    (amx: the OS refused the tile state, or the kernel failed its first-use self-check)."""
    return c.fnn_bf16_note().decode()


def bf16_forced():
    """The bf16 variant picked by FASTNN_BF16 or bf16_set, or None when it follows the float32 one
    (FASTNN_ARCH=generic or avx2 then select "ref")."""
    cdef int v = c.fnn_bf16_forced()
    return None if v < 0 else c.fnn_bf16_name(v).decode()


def bf16_set(name) -> None:
    """Pick the bf16 GEMM variant by name; None: follow the float32 variant again."""
    if name is None:
        c.fnn_bf16_set(-1)
        return
    if name not in BF16_NAMES:
        raise ValueError(f"bf16 variant: expected one of {BF16_NAMES}, got {name!r}")
    if c.fnn_bf16_set(BF16_NAMES.index(name)) != c.FNN_OK:
        raise ValueError(f"bf16 variant: this CPU does not support {name!r} (best: {bf16_best()!r})")


cdef int64_t _ld_raw(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t s0, Py_ssize_t s1, size_t ptr, size_t size,
                     str what) except -1:
    """_ld for an operand of any element size (see _core.pyx)."""
    if rows == 0 or cols == 0:
        return max(cols, 1)
    if (cols > 1 and s1 != <Py_ssize_t>size) or s0 < cols * <Py_ssize_t>size or s0 % <Py_ssize_t>size != 0:
        raise ValueError(f"{what}: rows must be contiguous with a positive row stride")
    if ptr % size != 0:
        raise ValueError(f"{what}: the array must be aligned to its element size")
    return s0 // <Py_ssize_t>size


def f32_to_bf16(const float[::1] x, uint16_t[::1] y, int n_threads=1):
    """y = bf16 bits of x (round to nearest even)."""
    _no_capture("f32_to_bf16")
    _same(y.shape[0], x.shape[0], "f32_to_bf16 y")
    cdef int status
    if x.shape[0] == 0:
        return
    with nogil:
        status = c.fnn_f32_to_bf16(x.shape[0], &x[0], &y[0], n_threads)
    _check(status)


def bf16_to_f32(const uint16_t[::1] x, float[::1] y, int n_threads=1):
    _no_capture("bf16_to_f32")
    _same(y.shape[0], x.shape[0], "bf16_to_f32 y")
    cdef int status
    if x.shape[0] == 0:
        return
    with nogil:
        status = c.fnn_bf16_to_f32(x.shape[0], &x[0], &y[0], n_threads)
    _check(status)


def round_bf16(const float[::1] x, float[::1] y, int n_threads=1):
    """y = float32(bf16(x)); y may be x. Capturable into plans."""
    _same(y.shape[0], x.shape[0], "round_bf16 y")
    if x.shape[0] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.n_threads, o.n = _OP_ROUND_BF16, 0, n_threads, x.shape[0]
    o.a, o.out = &x[0], &y[0]
    _exec(&o, (x, y))


def gemm_bf16(const bf16_opnd_a[:, :] a, const bf16_opnd_b[:, :] b, float[:, :] out, bint trans_a=False,
              bint trans_b=False, double alpha=1.0, double beta=0.0, const float[::1] bias=None,
              bint bias_row=False, bint relu=False, int n_threads=1):
    """out = relu?(alpha * bf16(op(a)) @ bf16(op(b)) + beta * out + bias), float32 accumulation;
    a and b are float32 (rounded while packed) or uint16 (bf16 bits)."""
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
    cdef int64_t lda = _ld_raw(a.shape[0], a.shape[1], a.strides[0], a.strides[1],
                               <size_t>&a[0, 0] if a.shape[0] and a.shape[1] else 0, sizeof(bf16_opnd_a), "matmul a")
    cdef int64_t ldb = _ld_raw(b.shape[0], b.shape[1], b.strides[0], b.strides[1],
                               <size_t>&b[0, 0] if b.shape[0] and b.shape[1] else 0, sizeof(bf16_opnd_b), "matmul b")
    cdef int64_t ldc = _ld(out, "matmul out")
    cdef int flags = (c.FNN_TRANS_A if trans_a else 0) | (c.FNN_TRANS_B if trans_b else 0) \
        | (c.FNN_BIAS_ROW if bias_row else 0) | (c.FNN_EPI_RELU if relu else 0) \
        | (c.FNN_A_BF16 if bf16_opnd_a is uint16_t else 0) | (c.FNN_B_BF16 if bf16_opnd_b is uint16_t else 0)
    if m == 0 or n == 0:
        return
    cdef _op o
    o.kind, o.f64, o.flags, o.n_threads = _OP_GEMM_BF16, 0, flags, n_threads
    o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.alpha, o.beta = m, n, k, lda, ldb, ldc, alpha, beta
    o.a = &a[0, 0] if k > 0 else NULL
    o.b = &b[0, 0] if k > 0 else NULL
    o.c = &bias[0] if bias is not None and bias.shape[0] > 0 else NULL
    o.out = &out[0, 0]
    _exec(&o, (a, b, out, bias))
