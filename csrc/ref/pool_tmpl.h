/* Max and average pooling; included once per type by pool.c. One (image, channel) plane at a
 * time: x plane (h, w), y plane (oh, ow). */
#include "tmpl_types.h"

#undef FNN_POOL_U
#ifdef FNN_DOUBLE
#define FNN_POOL_U uint64_t
#else
#define FNN_POOL_U uint32_t
#endif

/* take ? a : b through bit masks. The comparisons below are coin flips on real data, and short
 * rows (7 outputs) leave most of the work to the scalar tail of a vectorised loop, where the
 * compiler would otherwise emit (mispredicted) branches. */
static inline FNN_T FNN_(pick)(int take, FNN_T a, FNN_T b) {
    FNN_POOL_U ua, ub, mask = (FNN_POOL_U)0 - (FNN_POOL_U)take;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & mask) | (ub & ~mask);
    memcpy(&a, &ua, sizeof a);
    return a;
}

/* Window maxima with PyTorch's rule: a value replaces the current one when it is larger or NaN
 * (so ties keep the first maximum and a NaN propagates); idx gets the winner's offset. Written
 * with selects, not branches: on real data the comparison is a coin flip. */
static void FNN_(maxpool_plane)(const fnn_pool2d_shape *s, int64_t oh, int64_t ow, const FNN_T *restrict xp,
                                FNN_T *restrict yp, int32_t *restrict ip) {
    const int64_t w = s->w, kh = s->kh, kw = s->kw;
    for (int64_t i = 0; i < oh; i++)
        for (int64_t j = 0; j < ow; j++) {
            const int64_t base = i * s->sh * w + j * s->sw;
            FNN_T m = (FNN_T)-INFINITY;
            int64_t best = base;
            for (int64_t u = 0; u < kh; u++) {
                const FNN_T *row = xp + base + u * w;
                for (int64_t v = 0; v < kw; v++) {
                    const FNN_T val = row[v];
                    const int take = (val > m) | (val != val);
                    m = FNN_(pick)(take, val, m);
                    best = take ? base + u * w + v : best;
                }
            }
            yp[i * ow + j] = m;
            if (ip) ip[i * ow + j] = (int32_t)best;
        }
}

/* One output of a 2x2 window at (r0, r1)[2j .. 2j+1]; *k gets the winner's offset from r0[2j]. */
static inline FNN_T FNN_(max2x2_one)(const FNN_T *r0, const FNN_T *r1, int64_t j, int32_t w32, int32_t *k) {
    FNN_T m = r0[2 * j], v = r0[2 * j + 1];
    int t = (v > m) | (v != v);
    m = FNN_(pick)(t, v, m);
    int32_t kk = fnn_pick_i32(t, 1, 0);
    v = r1[2 * j];
    t = (v > m) | (v != v);
    m = FNN_(pick)(t, v, m);
    kk = fnn_pick_i32(t, w32, kk);
    v = r1[2 * j + 1];
    t = (v > m) | (v != v);
    *k = fnn_pick_i32(t, w32 + 1, kk);
    return FNN_(pick)(t, v, m);
}

#if FNN_POOL_SSE2 && !defined(FNN_DOUBLE)
/* Four outputs j0 .. j0+3 with SSE2 (the x86-64 baseline; the compiler does not vectorise the
 * stride-2 loads of these short rows well). Same rule and result as max2x2_one. */
static inline void FNN_(max2x2_sse2)(const float *r0, const float *r1, int64_t j0, float *out, int32_t *oi,
                                     int32_t base, int32_t w32) {
    const __m128 a0 = _mm_loadu_ps(r0 + 2 * j0), a1 = _mm_loadu_ps(r0 + 2 * j0 + 4);
    const __m128 b0 = _mm_loadu_ps(r1 + 2 * j0), b1 = _mm_loadu_ps(r1 + 2 * j0 + 4);
    __m128 m = _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0));
    const __m128 c1 = _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1));
    const __m128 c2 = _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0));
    const __m128 c3 = _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1));
    __m128i k = _mm_setzero_si128();
    __m128 t = _mm_or_ps(_mm_cmpgt_ps(c1, m), _mm_cmpunord_ps(c1, c1));
    m = _mm_or_ps(_mm_and_ps(t, c1), _mm_andnot_ps(t, m));
    k = _mm_or_si128(_mm_and_si128(_mm_castps_si128(t), _mm_set1_epi32(1)), _mm_andnot_si128(_mm_castps_si128(t), k));
    t = _mm_or_ps(_mm_cmpgt_ps(c2, m), _mm_cmpunord_ps(c2, c2));
    m = _mm_or_ps(_mm_and_ps(t, c2), _mm_andnot_ps(t, m));
    k = _mm_or_si128(_mm_and_si128(_mm_castps_si128(t), _mm_set1_epi32(w32)),
                     _mm_andnot_si128(_mm_castps_si128(t), k));
    t = _mm_or_ps(_mm_cmpgt_ps(c3, m), _mm_cmpunord_ps(c3, c3));
    m = _mm_or_ps(_mm_and_ps(t, c3), _mm_andnot_ps(t, m));
    k = _mm_or_si128(_mm_and_si128(_mm_castps_si128(t), _mm_set1_epi32(w32 + 1)),
                     _mm_andnot_si128(_mm_castps_si128(t), k));
    _mm_storeu_ps(out + j0, m);
    if (oi) {
        const int32_t b = base + 2 * (int32_t)j0;
        k = _mm_add_epi32(k, _mm_setr_epi32(b, b + 2, b + 4, b + 6));
        _mm_storeu_si128((__m128i *)(oi + j0), k);
    }
}
#endif

/* 2x2 windows with stride 2 (the common case). Rows are short (7 or 14 outputs): in the SSE2
 * path the last group of 4 overlaps the previous one instead of a scalar tail (recomputing an
 * output writes the same value). */
static void FNN_(maxpool_plane_2x2)(int64_t w, int64_t oh, int64_t ow, const FNN_T *restrict xp, FNN_T *restrict yp,
                                    int32_t *restrict ip, int wide) {
    (void)wide;
#if FNN_POOL_AVX512 && !defined(FNN_DOUBLE)
    if (wide) {
        fnn_max2x2_plane_avx512(w, oh, ow, xp, yp, ip);
        return;
    }
#endif
    for (int64_t i = 0; i < oh; i++) {
        const FNN_T *r0 = xp + 2 * i * w, *r1 = r0 + w;
        const int32_t base = (int32_t)(2 * i * w), w32 = (int32_t)w;
        FNN_T *out = yp + i * ow;
        int32_t *oi = ip ? ip + i * ow : NULL;
#if FNN_POOL_SSE2 && !defined(FNN_DOUBLE)
        if (ow >= 4) {
            int64_t j0 = 0;
            for (; j0 + 4 <= ow; j0 += 4) FNN_(max2x2_sse2)(r0, r1, j0, out, oi, base, w32);
            if (j0 < ow) FNN_(max2x2_sse2)(r0, r1, ow - 4, out, oi, base, w32);
            continue;
        }
#endif
        for (int64_t j = 0; j < ow; j++) {
            int32_t k;
            out[j] = FNN_(max2x2_one)(r0, r1, j, w32, &k);
            if (oi) oi[j] = base + 2 * (int32_t)j + k;
        }
    }
}

static int FNN_(maxpool2d_fwd)(const fnn_pool2d_shape *s, const FNN_T *x, FNN_T *y, int32_t *idx, int nt) {
    int64_t oh, ow;
    int st = fnn_pool_check(s, 1, &oh, &ow);
    if (st != FNN_OK) return st;
    const int64_t planes = s->n * s->c, in_plane = s->h * s->w, out_plane = oh * ow;
    if (planes == 0) return FNN_OK;
    if (!x || !y) return FNN_ERR_ARG;
    const int fast = s->kh == 2 && s->kw == 2 && s->sh == 2 && s->sw == 2;
    const int wide = fnn_arch_get() == FNN_ARCH_AVX512;
    nt = fnn_threads_for(planes * in_plane, FNN_PAR_MIN_ELEMS, nt);
    FNN_PARALLEL_FOR(nt, pl, planes, {
        if (fast)
            FNN_(maxpool_plane_2x2)(s->w, oh, ow, x + pl * in_plane, y + pl * out_plane,
                                    idx ? idx + pl * out_plane : NULL, wide);
        else
            FNN_(maxpool_plane)(s, oh, ow, x + pl * in_plane, y + pl * out_plane, idx ? idx + pl * out_plane : NULL);
    });
    return FNN_OK;
}

/* 2x2 windows, stride 2: the windows do not overlap, so each input gradient is written once
 * (dy where the window's index points, else 0) instead of zeroing the plane and scattering.
 * Returns 1 when an index is not inside its window. */
static inline int FNN_(max2x2_bwd_one)(FNN_T *d0, FNN_T *d1, int64_t j, FNN_T gv, int32_t k, int32_t w32) {
    d0[2 * j] = FNN_(pick)(k == 0, gv, 0);
    d0[2 * j + 1] = FNN_(pick)(k == 1, gv, 0);
    d1[2 * j] = FNN_(pick)(k == w32, gv, 0);
    d1[2 * j + 1] = FNN_(pick)(k == w32 + 1, gv, 0);
    return (k != 0) & (k != 1) & (k != w32) & (k != w32 + 1);
}

#if FNN_POOL_SSE2 && !defined(FNN_DOUBLE)
static inline int FNN_(max2x2_bwd_sse2)(float *d0, float *d1, int64_t j0, const float *gi, const int32_t *ii,
                                        int32_t base, int32_t w32) {
    const int32_t b = base + 2 * (int32_t)j0;
    const __m128i k = _mm_sub_epi32(_mm_loadu_si128((const __m128i *)(ii + j0)),
                                    _mm_setr_epi32(b, b + 2, b + 4, b + 6));
    const __m128 g = _mm_loadu_ps(gi + j0);
    const __m128i e0 = _mm_cmpeq_epi32(k, _mm_setzero_si128()), e1 = _mm_cmpeq_epi32(k, _mm_set1_epi32(1));
    const __m128i e2 = _mm_cmpeq_epi32(k, _mm_set1_epi32(w32)), e3 = _mm_cmpeq_epi32(k, _mm_set1_epi32(w32 + 1));
    const __m128 v0 = _mm_and_ps(_mm_castsi128_ps(e0), g), v1 = _mm_and_ps(_mm_castsi128_ps(e1), g);
    const __m128 v2 = _mm_and_ps(_mm_castsi128_ps(e2), g), v3 = _mm_and_ps(_mm_castsi128_ps(e3), g);
    _mm_storeu_ps(d0 + 2 * j0, _mm_unpacklo_ps(v0, v1));
    _mm_storeu_ps(d0 + 2 * j0 + 4, _mm_unpackhi_ps(v0, v1));
    _mm_storeu_ps(d1 + 2 * j0, _mm_unpacklo_ps(v2, v3));
    _mm_storeu_ps(d1 + 2 * j0 + 4, _mm_unpackhi_ps(v2, v3));
    const __m128i any = _mm_or_si128(_mm_or_si128(e0, e1), _mm_or_si128(e2, e3));
    return _mm_movemask_ps(_mm_castsi128_ps(any)) != 0xF;
}
#endif

static int FNN_(maxpool_bwd_plane_2x2)(int64_t h, int64_t w, int64_t oh, int64_t ow, const FNN_T *restrict g,
                                       const int32_t *restrict ip, FNN_T *restrict d, int wide) {
    int bad = 0;
    (void)wide;
#if FNN_POOL_AVX512 && !defined(FNN_DOUBLE)
    if (wide) return fnn_max2x2_bwd_plane_avx512(h, w, oh, ow, g, ip, d);
#endif
    for (int64_t i = 0; i < oh; i++) {
        FNN_T *d0 = d + 2 * i * w, *d1 = d0 + w;
        const FNN_T *gi = g + i * ow;
        const int32_t *ii = ip + i * ow;
        const int32_t base = (int32_t)(2 * i * w), w32 = (int32_t)w;
#if FNN_POOL_SSE2 && !defined(FNN_DOUBLE)
        if (ow >= 4) {
            int64_t j0 = 0;
            for (; j0 + 4 <= ow; j0 += 4) bad |= FNN_(max2x2_bwd_sse2)(d0, d1, j0, gi, ii, base, w32);
            if (j0 < ow) bad |= FNN_(max2x2_bwd_sse2)(d0, d1, ow - 4, gi, ii, base, w32);
        } else
#endif
        {
            for (int64_t j = 0; j < ow; j++)
                bad |= FNN_(max2x2_bwd_one)(d0, d1, j, gi[j], ii[j] - base - 2 * (int32_t)j, w32);
        }
        if (2 * ow < w) {
            d0[w - 1] = 0;
            d1[w - 1] = 0;
        }
    }
    if (2 * oh < h) memset(d + (h - 1) * w, 0, (size_t)w * sizeof(FNN_T));
    return bad;
}

static int FNN_(maxpool2d_bwd)(const fnn_pool2d_shape *s, const FNN_T *dy, const int32_t *idx, FNN_T *dx, int nt) {
    int64_t oh, ow;
    int st = fnn_pool_check(s, 1, &oh, &ow);
    if (st != FNN_OK) return st;
    const int64_t planes = s->n * s->c, in_plane = s->h * s->w, out_plane = oh * ow;
    if (planes == 0) return FNN_OK;
    if (!dy || !idx || !dx) return FNN_ERR_ARG;
    const int fast = s->kh == 2 && s->kw == 2 && s->sh == 2 && s->sw == 2;
    const int wide = fnn_arch_get() == FNN_ARCH_AVX512;
    int bad = 0;
    nt = fnn_threads_for(planes * in_plane, FNN_PAR_MIN_ELEMS, nt);
    FNN_PARALLEL_FOR_OR(nt, bad, pl, planes, {
        const FNN_T *g = dy + pl * out_plane;
        const int32_t *ip = idx + pl * out_plane;
        FNN_T *d = dx + pl * in_plane;
        if (fast) {
            bad |= FNN_(maxpool_bwd_plane_2x2)(s->h, s->w, oh, ow, g, ip, d, wide);
            continue;
        }
        memset(d, 0, (size_t)in_plane * sizeof(FNN_T));
        for (int64_t k = 0; k < out_plane; k++) {
            const int64_t at = ip[k];
            if (at < 0 || at >= in_plane) {
                bad = 1;
                continue;
            }
            d[at] += g[k];
        }
    });
    return bad ? FNN_ERR_ARG : FNN_OK;
}

static int FNN_(avgpool2d_fwd)(const fnn_pool2d_shape *s, const FNN_T *x, FNN_T *y, int nt) {
    int64_t oh, ow;
    int st = fnn_pool_check(s, 0, &oh, &ow);
    if (st != FNN_OK) return st;
    const int64_t planes = s->n * s->c, in_plane = s->h * s->w, out_plane = oh * ow;
    if (planes == 0) return FNN_OK;
    if (!x || !y) return FNN_ERR_ARG;
    const int64_t w = s->w, kh = s->kh, kw = s->kw;
    const FNN_T inv = (FNN_T)1 / (FNN_T)(kh * kw);
    nt = fnn_threads_for(planes * in_plane, FNN_PAR_MIN_ELEMS, nt);
    FNN_PARALLEL_FOR(nt, pl, planes, {
        const FNN_T *xp = x + pl * in_plane;
        FNN_T *yp = y + pl * out_plane;
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++) {
                const FNN_T *base = xp + i * s->sh * w + j * s->sw;
                FNN_T acc = 0;
                for (int64_t u = 0; u < kh; u++)
                    for (int64_t v = 0; v < kw; v++) acc += base[u * w + v];
                yp[i * ow + j] = acc * inv;
            }
    });
    return FNN_OK;
}

static int FNN_(avgpool2d_bwd)(const fnn_pool2d_shape *s, const FNN_T *dy, FNN_T *dx, int nt) {
    int64_t oh, ow;
    int st = fnn_pool_check(s, 0, &oh, &ow);
    if (st != FNN_OK) return st;
    const int64_t planes = s->n * s->c, in_plane = s->h * s->w, out_plane = oh * ow;
    if (planes == 0) return FNN_OK;
    if (!dy || !dx) return FNN_ERR_ARG;
    const int64_t w = s->w, kh = s->kh, kw = s->kw;
    const FNN_T inv = (FNN_T)1 / (FNN_T)(kh * kw);
    nt = fnn_threads_for(planes * in_plane, FNN_PAR_MIN_ELEMS, nt);
    FNN_PARALLEL_FOR(nt, pl, planes, {
        const FNN_T *g = dy + pl * out_plane;
        FNN_T *d = dx + pl * in_plane;
        memset(d, 0, (size_t)in_plane * sizeof(FNN_T));
        for (int64_t i = 0; i < oh; i++)
            for (int64_t j = 0; j < ow; j++) {
                FNN_T *base = d + i * s->sh * w + j * s->sw;
                const FNN_T gv = g[i * ow + j] * inv;
                for (int64_t u = 0; u < kh; u++)
                    for (int64_t v = 0; v < kw; v++) base[u * w + v] += gv;
            }
    });
    return FNN_OK;
}
