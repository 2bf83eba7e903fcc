# Cython bindings of the data augmentation kernels (included by _core.pyx).
#
# x and y are (n, c, h, w) arrays (any float dtype, C-contiguous); the shapes are checked against
# each other here, the arguments (mode, factors, stddev) by the layers, which name themselves in
# their messages, and again here so no call reaches C with values it refuses. Training step plans
# capture them (their random stream offset set each step, as Dropout's); inference never calls
# them (the layers are the identity there).

FLIP_HORIZONTAL, FLIP_VERTICAL = c.FNN_FLIP_HORIZONTAL, c.FNN_FLIP_VERTICAL


cdef inline int _same4(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] y, str what) except -1:
    cdef int d
    for d in range(4):
        if x.shape[d] != y.shape[d]:
            raise ValueError(f"{what}: output has shape {tuple([y.shape[k] for k in range(4)])}, "
                             f"expected {tuple([x.shape[k] for k in range(4)])}")
    if x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3] > 0 and \
            <const char *>&x[0, 0, 0, 0] == <const char *>&y[0, 0, 0, 0]:
        raise ValueError(f"{what}: the output must not be the input")
    return 0


def random_flip(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y, int flags, uint64_t seed,
                uint64_t offset, int n_threads=1):
    """y = x with each sample's width (flags & FLIP_HORIZONTAL) and height (FLIP_VERTICAL) axes
    reversed with probability 1/2, decided by the counter hash at offset + sample."""
    _same4(x, y, "random_flip")
    if flags & ~(FLIP_HORIZONTAL | FLIP_VERTICAL):
        raise ValueError(f"random_flip: unknown flags {flags}")
    cdef int64_t n = x.shape[0], ch = x.shape[1], h = x.shape[2], w = x.shape[3]
    if n * ch * h * w == 0:
        return
    cdef _op o
    o.kind, o.f64, o.code, o.n_threads = _OP_FLIP, floating is double, flags, n_threads
    o.m, o.n, o.k, o.t, o.seed, o.offset = n, ch, h, w, seed, offset
    o.a, o.out = &x[0, 0, 0, 0], &y[0, 0, 0, 0]
    _exec(&o, (x, y))


def random_translate(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y, int64_t max_h, int64_t max_w,
                     uint64_t seed, uint64_t offset, bint adjoint, double fill, int n_threads=1):
    """Whole-pixel shifts per sample in [-max_h, max_h] x [-max_w, max_w], fill outside; adjoint:
    the transpose for the same (seed, offset) (0 outside)."""
    _same4(x, y, "random_translate")
    cdef int64_t n = x.shape[0], ch = x.shape[1], h = x.shape[2], w = x.shape[3]
    if not (0 <= max_h < max(h, 1) and 0 <= max_w < max(w, 1) and max_h < (1 << 30) and max_w < (1 << 30)):
        raise ValueError(f"random_translate: shifts ({max_h}, {max_w}) must lie in [0, size) for images "
                         f"of {h}x{w}")
    if fill != fill or fill in (float("inf"), float("-inf")):
        raise ValueError(f"random_translate: fill must be finite, got {fill}")
    if n * ch * h * w == 0:
        return
    cdef _op o
    o.kind, o.f64, o.code, o.n_threads = _OP_TRANSLATE, floating is double, adjoint, n_threads
    o.m, o.n, o.k, o.t, o.h, o.lda, o.alpha = n, ch, h, w, max_h, max_w, fill
    o.seed, o.offset, o.a, o.out = seed, offset, &x[0, 0, 0, 0], &y[0, 0, 0, 0]
    _exec(&o, (x, y))


def gaussian_noise(const floating[::1] x, floating[::1] y, double stddev, uint64_t seed, uint64_t offset,
                   int n_threads=1):
    """y = x + stddev * z, z standard normal from the counter hash at offset + 2i, offset + 2i + 1."""
    _same(y.shape[0], x.shape[0], "gaussian_noise output")
    if not (0.0 <= stddev <= 1.7976931348623157e308):
        raise ValueError(f"gaussian_noise: stddev must be finite and >= 0, got {stddev}")
    if x.shape[0] == 0:
        return
    cdef _op o
    o.kind, o.f64, o.n, o.alpha, o.n_threads = _OP_NOISE, floating is double, x.shape[0], stddev, n_threads
    o.seed, o.offset, o.a, o.out = seed, offset, &x[0], &y[0]
    _exec(&o, (x, y))
