/* 2-D max and average pooling (NCHW, no padding): float and double from pool_tmpl.h.
 * Threads take whole (image, channel) planes, so every output and every input-gradient element is
 * computed by one thread in a fixed order: results do not depend on n_threads. */
#include <math.h>
#include <string.h>

#include "../core/internal.h"

/* SSE2 is part of the x86-64 baseline: no extra compiler flags, every x86-64 CPU has it. Other
 * targets (and FNN_POOL_NO_SSE2) use the portable loops, which compute the same results. */
#if defined(__SSE2__) && !defined(FNN_POOL_NO_SSE2)
#include <emmintrin.h>
#define FNN_POOL_SSE2 1
#else
#define FNN_POOL_SSE2 0
#endif

/* Checks the geometry and gives the output size; idx_limit asks for planes whose offsets fit
 * the int32 argmax indices. */
static int fnn_pool_check(const fnn_pool2d_shape *s, int idx_limit, int64_t *oh, int64_t *ow) {
    if (!s) return FNN_ERR_ARG;
    const int64_t dims[] = {s->c, s->h, s->w, s->kh, s->kw, s->sh, s->sw};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i] < 1 || dims[i] > (int64_t)INT32_MAX) return FNN_ERR_ARG;
    if (s->n < 0 || s->kh > s->h || s->kw > s->w) return FNN_ERR_ARG;
    if (idx_limit && s->h * s->w > (int64_t)INT32_MAX) return FNN_ERR_ARG;
    *oh = (s->h - s->kh) / s->sh + 1;
    *ow = (s->w - s->kw) / s->sw + 1;
    return FNN_OK;
}

/* take ? a : b without a branch (see FNN_(pick) in pool_tmpl.h). */
static inline int32_t fnn_pick_i32(int take, int32_t a, int32_t b) {
    const int32_t mask = -(int32_t)take;
    return (a & mask) | (b & ~mask);
}

/* 2x2 / stride 2 float rows with AVX-512 (a function attribute, so this file stays portable;
 * used when fnn_arch_get() picked AVX-512, and FASTNN_ARCH still applies): 16 outputs per
 * step, even and odd columns split by permutes, the same rule and results as the SSE2 and
 * portable loops. */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(FNN_POOL_NO_SSE2)
#include <immintrin.h>
#define FNN_POOL_AVX512 1
#define FNN_POOL_T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

FNN_POOL_T512 static inline __mmask16 fnn_pool_mask16(int64_t n) {
    return (__mmask16)(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1);
}

/* out[0, ow) and oi (may be NULL) for the windows of rows r0, r1; base = offset of r0[0] in
 * its plane, w32 = the row length. */
FNN_POOL_T512 static inline void fnn_max2x2_row_avx512(const float *r0, const float *r1, int64_t ow, float *out,
                                                int32_t *oi, int32_t base, int32_t w32) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int64_t j0 = 0; j0 < ow; j0 += 16) {
        const __mmask16 mo = fnn_pool_mask16(ow - j0);
        const __mmask16 ma = fnn_pool_mask16(2 * (ow - j0)), mb = fnn_pool_mask16(2 * (ow - j0) - 16);
        const __m512 a0 = _mm512_maskz_loadu_ps(ma, r0 + 2 * j0), a1 = _mm512_maskz_loadu_ps(mb, r0 + 2 * j0 + 16);
        const __m512 b0 = _mm512_maskz_loadu_ps(ma, r1 + 2 * j0), b1 = _mm512_maskz_loadu_ps(mb, r1 + 2 * j0 + 16);
        const __m512 c[3] = {_mm512_permutex2var_ps(a0, odd, a1), _mm512_permutex2var_ps(b0, even, b1),
                             _mm512_permutex2var_ps(b0, odd, b1)};
        const int32_t at[3] = {1, w32, w32 + 1};
        __m512 m = _mm512_permutex2var_ps(a0, even, a1);
        __m512i k = _mm512_setzero_si512();
        for (int t = 0; t < 3; t++) {
            const __mmask16 take =
                _mm512_cmp_ps_mask(c[t], m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(c[t], c[t], _CMP_UNORD_Q);
            m = _mm512_mask_mov_ps(m, take, c[t]);
            k = _mm512_mask_mov_epi32(k, take, _mm512_set1_epi32(at[t]));
        }
        _mm512_mask_storeu_ps(out + j0, mo, m);
        if (oi) {
            const __m512i off = _mm512_add_epi32(_mm512_set1_epi32(base + 2 * (int32_t)j0), _mm512_add_epi32(lane, lane));
            _mm512_mask_storeu_epi32(oi + j0, mo, _mm512_add_epi32(k, off));
        }
    }
}

/* The input gradient of one row pair: d0/d1 (2*ow values each) = gi where the window's index
 * points, else 0. Returns nonzero when an index is not inside its window. */
FNN_POOL_T512 static inline int fnn_max2x2_bwd_row_avx512(float *d0, float *d1, int64_t ow, const float *gi,
                                                   const int32_t *ii, int32_t base, int32_t w32) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    int bad = 0;
    for (int64_t j0 = 0; j0 < ow; j0 += 16) {
        const __mmask16 mo = fnn_pool_mask16(ow - j0);
        const __mmask16 ma = fnn_pool_mask16(2 * (ow - j0)), mb = fnn_pool_mask16(2 * (ow - j0) - 16);
        const __m512i off = _mm512_add_epi32(_mm512_set1_epi32(base + 2 * (int32_t)j0), _mm512_add_epi32(lane, lane));
        const __m512i k = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(mo, ii + j0), off);
        const __m512 g = _mm512_maskz_loadu_ps(mo, gi + j0);
        const __mmask16 e0 = _mm512_cmpeq_epi32_mask(k, _mm512_setzero_si512());
        const __mmask16 e1 = _mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(1));
        const __mmask16 e2 = _mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(w32));
        const __mmask16 e3 = _mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(w32 + 1));
        bad |= (mo & ~(e0 | e1 | e2 | e3)) != 0;
        const __m512 v0 = _mm512_maskz_mov_ps(e0, g), v1 = _mm512_maskz_mov_ps(e1, g);
        const __m512 v2 = _mm512_maskz_mov_ps(e2, g), v3 = _mm512_maskz_mov_ps(e3, g);
        _mm512_mask_storeu_ps(d0 + 2 * j0, ma, _mm512_permutex2var_ps(v0, lo, v1));
        _mm512_mask_storeu_ps(d0 + 2 * j0 + 16, mb, _mm512_permutex2var_ps(v0, hi, v1));
        _mm512_mask_storeu_ps(d1 + 2 * j0, ma, _mm512_permutex2var_ps(v2, lo, v3));
        _mm512_mask_storeu_ps(d1 + 2 * j0 + 16, mb, _mm512_permutex2var_ps(v2, hi, v3));
    }
    return bad;
}
/* Whole planes per call: a call per row of 7 or 14 outputs cost more than the row. */
FNN_POOL_T512 static void fnn_max2x2_plane_avx512(int64_t w, int64_t oh, int64_t ow, const float *xp, float *yp,
                                                  int32_t *ip) {
    for (int64_t i = 0; i < oh; i++)
        fnn_max2x2_row_avx512(xp + 2 * i * w, xp + (2 * i + 1) * w, ow, yp + i * ow, ip ? ip + i * ow : NULL,
                              (int32_t)(2 * i * w), (int32_t)w);
}

FNN_POOL_T512 static int fnn_max2x2_bwd_plane_avx512(int64_t h, int64_t w, int64_t oh, int64_t ow, const float *g,
                                                     const int32_t *ip, float *d) {
    int bad = 0;
    for (int64_t i = 0; i < oh; i++) {
        float *d0 = d + 2 * i * w, *d1 = d0 + w;
        bad |= fnn_max2x2_bwd_row_avx512(d0, d1, ow, g + i * ow, ip + i * ow, (int32_t)(2 * i * w), (int32_t)w);
        if (2 * ow < w) {
            d0[w - 1] = 0;
            d1[w - 1] = 0;
        }
    }
    if (2 * oh < h) memset(d + (h - 1) * w, 0, (size_t)w * sizeof(float));
    return bad;
}
#else
#define FNN_POOL_AVX512 0
#endif

#include "pool_tmpl.h"
#define FNN_DOUBLE
#include "pool_tmpl.h"
#undef FNN_DOUBLE

int fnn_maxpool2d_fwd_f32(const fnn_pool2d_shape *s, const float *x, float *y, int32_t *idx, int n_threads) {
    return maxpool2d_fwd_f32(s, x, y, idx, n_threads);
}
int fnn_maxpool2d_fwd_f64(const fnn_pool2d_shape *s, const double *x, double *y, int32_t *idx, int n_threads) {
    return maxpool2d_fwd_f64(s, x, y, idx, n_threads);
}
int fnn_maxpool2d_bwd_f32(const fnn_pool2d_shape *s, const float *dy, const int32_t *idx, float *dx, int n_threads) {
    return maxpool2d_bwd_f32(s, dy, idx, dx, n_threads);
}
int fnn_maxpool2d_bwd_f64(const fnn_pool2d_shape *s, const double *dy, const int32_t *idx, double *dx,
                          int n_threads) {
    return maxpool2d_bwd_f64(s, dy, idx, dx, n_threads);
}
int fnn_avgpool2d_fwd_f32(const fnn_pool2d_shape *s, const float *x, float *y, int n_threads) {
    return avgpool2d_fwd_f32(s, x, y, n_threads);
}
int fnn_avgpool2d_fwd_f64(const fnn_pool2d_shape *s, const double *x, double *y, int n_threads) {
    return avgpool2d_fwd_f64(s, x, y, n_threads);
}
int fnn_avgpool2d_bwd_f32(const fnn_pool2d_shape *s, const float *dy, float *dx, int n_threads) {
    return avgpool2d_bwd_f32(s, dy, dx, n_threads);
}
int fnn_avgpool2d_bwd_f64(const fnn_pool2d_shape *s, const double *dy, double *dx, int n_threads) {
    return avgpool2d_bwd_f64(s, dy, dx, n_threads);
}
