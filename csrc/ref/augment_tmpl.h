/* Data augmentation kernels; included once per type by augment.c (see there for the counters). */
#include "tmpl_types.h"

/* The checks and set-up shared by the image kernels: ok = their own argument checks passed. */
static fnn_aug_setup FNN_(aug_prepare)(int ok, int64_t n, int64_t c, int64_t h, int64_t w, const FNN_T *x,
                                       const FNN_T *y, uint64_t seed, int nt) {
    fnn_aug_setup st = {FNN_ERR_ARG, 0, 0, 0, 1};
    if (!ok || n < 0 || c < 0 || h < 0 || w < 0) return st;
    const int64_t total = n * c * h * w;
    st.status = FNN_OK;
    if (total == 0) return st;
    if (!x || !y || (x < y + total && y < x + total)) {   /* missing or overlapping buffers */
        st.status = FNN_ERR_ARG;
        return st;
    }
    st.rows = n * c * h;
    fnn_rng_keys(seed, &st.k0, &st.k1);
    st.nt = fnn_threads_for(total, FNN_PAR_MIN_ELEMS, nt);
    return st;
}

static int FNN_(random_flip)(int64_t n, int64_t c, int64_t h, int64_t w, int flags, uint64_t seed,
                             uint64_t offset, const FNN_T *x, FNN_T *y, int nt) {
    const int ok = (flags & ~(FNN_FLIP_HORIZONTAL | FNN_FLIP_VERTICAL)) == 0;
    const fnn_aug_setup st = FNN_(aug_prepare)(ok, n, c, h, w, x, y, seed, nt);
    if (st.status != FNN_OK || st.rows == 0) return st.status;
    /* one output row per iteration: a copy, so any partition gives the same bits */
    FNN_PARALLEL_FOR(st.nt, r, st.rows, {
        const int64_t s = r / (c * h), i = r % h;
        const uint32_t bits = fnn_rng_bits(st.k0, st.k1, offset + (uint64_t)s);
        const int fw = (flags & FNN_FLIP_HORIZONTAL) && (bits >> 31);
        const int fh = (flags & FNN_FLIP_VERTICAL) && ((bits >> 30) & 1u);
        const FNN_T *src = x + (r - i + (fh ? h - 1 - i : i)) * w;
        FNN_T *dst = y + r * w;
        if (fw) {
            for (int64_t j = 0; j < w; j++) dst[j] = src[w - 1 - j];
        } else {
            for (int64_t j = 0; j < w; j++) dst[j] = src[j];
        }
    });
    return FNN_OK;
}

static int FNN_(random_translate)(int64_t n, int64_t c, int64_t h, int64_t w, int64_t max_h, int64_t max_w,
                                  uint64_t seed, uint64_t offset, int adjoint, FNN_T fill, const FNN_T *x,
                                  FNN_T *y, int nt) {
    const int ok = max_h >= 0 && max_w >= 0 && max_h < (1 << 30) && max_w < (1 << 30) && (h <= 0 || max_h < h) &&
                   (w <= 0 || max_w < w);
    const fnn_aug_setup st = FNN_(aug_prepare)(ok, n, c, h, w, x, y, seed, nt);
    if (st.status != FNN_OK || st.rows == 0) return st.status;
    const FNN_T pad = adjoint ? (FNN_T)0 : fill;
    FNN_PARALLEL_FOR(st.nt, r, st.rows, {
        const int64_t s = r / (c * h), i = r % h;
        const uint64_t ctr = offset + 2 * (uint64_t)s;
        int64_t sy = fnn_shift_of(fnn_rng_bits(st.k0, st.k1, ctr), max_h);
        int64_t sx = fnn_shift_of(fnn_rng_bits(st.k0, st.k1, ctr + 1), max_w);
        if (adjoint) {
            sy = -sy;
            sx = -sx;
        }
        /* y[i, j] = x[i - sy, j - sx] where that lies inside, pad elsewhere */
        FNN_T *dst = y + r * w;
        const int64_t si = i - sy;
        if (si < 0 || si >= h) {
            for (int64_t j = 0; j < w; j++) dst[j] = pad;
        } else {
            const FNN_T *src = x + (r - i + si) * w;
            const int64_t j0 = sx > 0 ? sx : 0, j1 = sx < 0 ? w + sx : w;   /* j - sx in [0, w) */
            for (int64_t j = 0; j < j0; j++) dst[j] = pad;
            for (int64_t j = j0; j < j1; j++) dst[j] = src[j - sx];
            for (int64_t j = j1; j < w; j++) dst[j] = pad;
        }
    });
    return FNN_OK;
}

static int FNN_(gaussian_noise)(int64_t n, double stddev, uint64_t seed, uint64_t offset, const FNN_T *x,
                                FNN_T *y, int nt) {
    if (n < 0 || !(stddev >= 0.0 && stddev <= 1.7976931348623157e308)) return FNN_ERR_ARG;
    if (n == 0) return FNN_OK;
    if (!x || !y) return FNN_ERR_ARG;      /* y may be x (element-wise) */
    uint32_t k0, k1;
    fnn_rng_keys(seed, &k0, &k1);
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS / 8, nt);
    FNN_PARALLEL_FOR(nt, i, n, {
        const uint64_t ctr = offset + 2 * (uint64_t)i;
        const double z = fnn_normal_of(fnn_rng_bits(k0, k1, ctr), fnn_rng_bits(k0, k1, ctr + 1));
        y[i] = x[i] + (FNN_T)(stddev * z);
    });
    return FNN_OK;
}
