/* Batch normalization over x viewed as (outer, ch, inner); included once per type by batchnorm.c.
 *
 * Work comes in units: a block of up to FNN_BN_LANES channels when inner == 1 ((N, F) and
 * (N, T, F) inputs: the loops run along the contiguous rows, one lane per channel), else one
 * channel ((N, C, H, W): the loops run along its H*W runs, element e of a run in lane e % LANES).
 * Sums are kept in double in those FNN_BN_LANES independent partial sums, added in lane order at
 * the end, so the compiler vectorises them without reassociating anything: the order of every
 * sum is fixed by the shape alone, whatever the thread count or the data's alignment. */
#include "tmpl_types.h"

/* Channels [*c0, *c0 + *cb) of unit u. */
static inline void FNN_(bn_unit)(int64_t u, int64_t ch, int64_t inner, int64_t *c0, int64_t *cb) {
    if (inner > 1) {
        *c0 = u;
        *cb = 1;
        return;
    }
    *c0 = u * FNN_BN_LANES;
    *cb = ch - *c0 < FNN_BN_LANES ? ch - *c0 : FNN_BN_LANES;
}

/* The number of units and (in *nt) the threads to share them. */
static inline int64_t FNN_(bn_units)(int64_t outer, int64_t ch, int64_t inner, int *nt) {
    const int64_t units = inner > 1 ? ch : (ch + FNN_BN_LANES - 1) / FNN_BN_LANES;
    const int t = fnn_threads_for(outer * inner * ch, FNN_PAR_MIN_ELEMS, *nt);
    *nt = t < units ? t : (int)units;
    return units;
}

/* in[at + i], or 0 where the mask (the forward's ReLU output) is not positive. */
static inline FNN_T FNN_(bn_masked)(const FNN_T *in, const FNN_T *mask, int64_t at, int64_t i) {
    return mask && !(mask[at + i] > 0) ? (FNN_T)0 : in[at + i];
}

/* max(v, 0) with relu (NaN stays NaN, as the activation kernel and the GEMM epilogue). */
static inline FNN_T FNN_(bn_relu)(FNN_T v, int relu) { return relu && v < 0 ? (FNN_T)0 : v; }

#if FNN_BN_X86
/* The (N, C, H, W) runs of bn_sums and bn_apply in AVX-512 intrinsics: element i of a run in
 * double lane i % FNN_BN_LANES (two zmm of 8 doubles), the same float subtraction, conversion,
 * double multiply and add (no FMA) as the portable loops, so the bits are the same. The portable
 * loops' lanes come out of the compiler as shuffles of a 16-double array; here each lane is a
 * register lane (4x faster for the training forward's sums). */
#ifdef FNN_DOUBLE
/* 16 values at v (m < 16: the first m, the rest 0) minus k, as two vectors of 8 doubles. */
FNN_BN_AVX512 static inline void FNN_(bn_load16)(const double *v, const double *mask, int m, __m512d k, __m512d *lo,
                                                 __m512d *hi) {
    const __mmask8 ml = (__mmask8)(m >= 8 ? 0xff : (1u << m) - 1), mh = (__mmask8)(m >= 16 ? 0xff : m <= 8 ? 0 : (1u << (m - 8)) - 1);
    __m512d a = _mm512_maskz_loadu_pd(ml, v), b = _mm512_maskz_loadu_pd(mh, v + 8);
    if (mask) {
        const __m512d z = _mm512_setzero_pd();
        a = _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(_mm512_maskz_loadu_pd(ml, mask), z, _CMP_GT_OQ), a);
        b = _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(_mm512_maskz_loadu_pd(mh, mask + 8), z, _CMP_GT_OQ), b);
    }
    *lo = _mm512_sub_pd(a, k);
    *hi = _mm512_sub_pd(b, k);
}
#else
FNN_BN_AVX512 static inline void FNN_(bn_load16)(const float *v, const float *mask, int m, __m512 k, __m512d *lo,
                                                 __m512d *hi) {
    const __mmask16 mm = (__mmask16)(m >= 16 ? 0xffff : (1u << m) - 1);
    __m512 a = _mm512_maskz_loadu_ps(mm, v);
    if (mask) a = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(mm, mask), _mm512_setzero_ps(), _CMP_GT_OQ), a);
    a = _mm512_sub_ps(a, k);
    *lo = _mm512_cvtps_pd(_mm512_castps512_ps256(a));
    *hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}
#endif

/* s[l] += (u - ku0), q[l] += (u - ku0)(x - k0) over one run of n values (u masked by mask > 0). */
FNN_BN_AVX512 static void FNN_(bn_sums_run512)(int64_t n, const FNN_T *x, const FNN_T *u, const FNN_T *mask, FNN_T k0,
                                               FNN_T ku0, double *s, double *q) {
#ifdef FNN_DOUBLE
    const __m512d kv = _mm512_set1_pd(k0), kuv = _mm512_set1_pd(ku0);
#else
    const __m512 kv = _mm512_set1_ps(k0), kuv = _mm512_set1_ps(ku0);
#endif
    /* the training forward's sums: u is x itself, so w is v */
    const int same = u == x && !mask && ku0 == k0;
    __m512d s0 = _mm512_loadu_pd(s), s1 = _mm512_loadu_pd(s + 8), q0 = _mm512_loadu_pd(q), q1 = _mm512_loadu_pd(q + 8);
    for (int64_t i = 0; i < n; i += FNN_BN_LANES) {
        const int m = n - i < FNN_BN_LANES ? (int)(n - i) : FNN_BN_LANES;
        __m512d v0, v1, w0, w1;
        FNN_(bn_load16)(x + i, NULL, m, kv, &v0, &v1);
        if (same) {
            w0 = v0;
            w1 = v1;
        } else {
            FNN_(bn_load16)(u + i, mask ? mask + i : NULL, m, kuv, &w0, &w1);
        }
        if (m == FNN_BN_LANES) {
            s0 = _mm512_add_pd(s0, w0);
            s1 = _mm512_add_pd(s1, w1);
            q0 = _mm512_add_pd(q0, _mm512_mul_pd(w0, v0));
            q1 = _mm512_add_pd(q1, _mm512_mul_pd(w1, v1));
        } else {   /* the tail: lanes past the run keep their sums */
            const __mmask8 ml = (__mmask8)(m >= 8 ? 0xff : (1u << m) - 1), mh = (__mmask8)(m <= 8 ? 0 : (1u << (m - 8)) - 1);
            s0 = _mm512_mask_add_pd(s0, ml, s0, w0);
            s1 = _mm512_mask_add_pd(s1, mh, s1, w1);
            q0 = _mm512_mask_add_pd(q0, ml, q0, _mm512_mul_pd(w0, v0));
            q1 = _mm512_mask_add_pd(q1, mh, q1, _mm512_mul_pd(w1, v1));
        }
    }
    _mm512_storeu_pd(s, s0);
    _mm512_storeu_pd(s + 8, s1);
    _mm512_storeu_pd(q, q0);
    _mm512_storeu_pd(q + 8, q1);
}

/* r = a0 g + (a20 in2 + b0) over one run of n values, g = in where mask > 0 (mask NULL:
 * everywhere), else 0; with relu, max(r, 0) with NaN kept. */
FNN_BN_AVX512 static void FNN_(bn_apply_run512)(int64_t n, FNN_T a0, FNN_T b0, FNN_T a20, const FNN_T *in,
                                                const FNN_T *mask, const FNN_T *in2, int relu, FNN_T *r) {
#ifdef FNN_DOUBLE
#define FNN_BN_W 8
#define FNN_BN_V __m512d
#define FNN_BN_M __mmask8
#define FNN_BN_OP(op) _mm512_##op##_pd
#define FNN_BN_CMP _mm512_cmp_pd_mask
#else
#define FNN_BN_W 16
#define FNN_BN_V __m512
#define FNN_BN_M __mmask16
#define FNN_BN_OP(op) _mm512_##op##_ps
#define FNN_BN_CMP _mm512_cmp_ps_mask
#endif
    const FNN_BN_V av = FNN_BN_OP(set1)(a0), bv = FNN_BN_OP(set1)(b0), a2v = FNN_BN_OP(set1)(a20);
    const FNN_BN_V z = FNN_BN_OP(setzero)();
    for (int64_t i = 0; i < n; i += FNN_BN_W) {
        const int m = n - i < FNN_BN_W ? (int)(n - i) : FNN_BN_W;
        const FNN_BN_M mm = (FNN_BN_M)(m >= FNN_BN_W ? (FNN_BN_M)~0u : (1u << m) - 1);
        FNN_BN_V g = FNN_BN_OP(maskz_loadu)(mm, in + i);
        if (mask) g = FNN_BN_OP(maskz_mov)(FNN_BN_CMP(FNN_BN_OP(maskz_loadu)(mm, mask + i), z, _CMP_GT_OQ), g);
        FNN_BN_V v = FNN_BN_OP(add)(FNN_BN_OP(mul)(av, g),
                                    FNN_BN_OP(add)(FNN_BN_OP(mul)(a2v, FNN_BN_OP(maskz_loadu)(mm, in2 + i)), bv));
        if (relu) v = FNN_BN_OP(mask_mov)(v, FNN_BN_CMP(v, z, _CMP_LT_OQ), z);
        FNN_BN_OP(mask_storeu)(r + i, mm, v);
    }
#undef FNN_BN_W
#undef FNN_BN_V
#undef FNN_BN_M
#undef FNN_BN_OP
#undef FNN_BN_CMP
}
#endif

/* The lanes' partial sums added in lane order. */
static inline void FNN_(bn_lane_totals)(const double *s, const double *q, double *s_out, double *q_out) {
    double st = 0, qt = 0;
    for (int l = 0; l < FNN_BN_LANES; l++) {
        st += s[l];
        qt += q[l];
    }
    *s_out = st;
    *q_out = qt;
}

/* For each channel c0 + l of the unit: s[l] = sum (u - ku[l]), q[l] = sum (u - ku[l]) (x - k[l])
 * over its values, with u = x (moments around the shift k: one pass, and accurate when the mean
 * is large against the spread) or u = dy, ku = 0, k = mean (the backward's sums). */
FNN_BN_INLINE void FNN_(bn_sums)(int wide, int64_t outer, int64_t ch, int64_t inner, int64_t c0, int64_t cb,
                                 const FNN_T *x, const FNN_T *k, const FNN_T *u, const FNN_T *mask, const FNN_T *ku,
                                 double *s_out, double *q_out) {
    double s[FNN_BN_LANES] = {0}, q[FNN_BN_LANES] = {0};
    if (inner == 1) {
        for (int64_t o = 0; o < outer; o++) {
            const int64_t at = o * ch + c0;
            const FNN_T *p = x + at;
            for (int64_t l = 0; l < cb; l++) {
                const double v = (double)(p[l] - k[l]), w = (double)(FNN_(bn_masked)(u, mask, at, l) - ku[l]);
                s[l] += w;
                q[l] += w * v;
            }
        }
        for (int64_t l = 0; l < cb; l++) {
            s_out[l] = s[l];
            q_out[l] = q[l];
        }
        return;
    }
    const FNN_T k0 = k[0], ku0 = ku[0];
    for (int64_t o = 0; o < outer; o++) {
        const int64_t at = (o * ch + c0) * inner;
        const FNN_T *p = x + at;
#if FNN_BN_X86
        if (wide) {
            FNN_(bn_sums_run512)(inner, p, u + at, mask ? mask + at : NULL, k0, ku0, s, q);
            continue;
        }
#else
        (void)wide;
#endif
        int64_t i = 0;
        for (; i + FNN_BN_LANES <= inner; i += FNN_BN_LANES)
            for (int l = 0; l < FNN_BN_LANES; l++) {
                const double v = (double)(p[i + l] - k0), w = (double)(FNN_(bn_masked)(u, mask, at, i + l) - ku0);
                s[l] += w;
                q[l] += w * v;
            }
        for (int l = 0; i + l < inner; l++) {
            const double v = (double)(p[i + l] - k0), w = (double)(FNN_(bn_masked)(u, mask, at, i + l) - ku0);
            s[l] += w;
            q[l] += w * v;
        }
    }
    FNN_(bn_lane_totals)(s, q, s_out, q_out);
}

/* out = a[l] g + (a2[l] in2 + b[l]) for each channel c0 + l of the unit, g = in where mask > 0
 * (mask NULL: everywhere), else 0; with relu, max(out, 0). out may be in or in2. */
FNN_BN_INLINE void FNN_(bn_apply)(int wide, int64_t outer, int64_t ch, int64_t inner, int64_t c0, int64_t cb,
                                  const FNN_T *a, const FNN_T *b, const FNN_T *in, const FNN_T *mask, const FNN_T *a2,
                                  const FNN_T *in2, int relu, FNN_T *out) {
    if (inner == 1) {
        for (int64_t o = 0; o < outer; o++) {
            const int64_t at = o * ch + c0;
            const FNN_T *p2 = in2 + at;
            FNN_T *r = out + at;
            for (int64_t l = 0; l < cb; l++)
                r[l] = FNN_(bn_relu)(a[l] * FNN_(bn_masked)(in, mask, at, l) + (a2[l] * p2[l] + b[l]), relu);
        }
        return;
    }
    const FNN_T a0 = a[0], a20 = a2[0], b0 = b[0];
    for (int64_t o = 0; o < outer; o++) {
        const int64_t at = (o * ch + c0) * inner;
        const FNN_T *p2 = in2 + at;
        FNN_T *r = out + at;
#if FNN_BN_X86
        if (wide) {
            FNN_(bn_apply_run512)(inner, a0, b0, a20, in + at, mask ? mask + at : NULL, p2, relu, r);
            continue;
        }
#endif
        for (int64_t i = 0; i < inner; i++)
            r[i] = FNN_(bn_relu)(a0 * FNN_(bn_masked)(in, mask, at, i) + (a20 * p2[i] + b0), relu);
    }
}

/* Channel c's statistics from its sums s, q around the shift k (m values): saves them, updates
 * the moving ones, and gives the affine map y = a x + b. */
FNN_BN_INLINE void FNN_(bn_train_coef)(int64_t c, double s, double q, double m, FNN_T k, FNN_T momentum, FNN_T eps,
                                       const FNN_T *gamma, const FNN_T *beta, FNN_T *save_mean, FNN_T *save_invstd,
                                       FNN_T *moving_mean, FNN_T *moving_var, FNN_T *a, FNN_T *b) {
    const double dm = s / m;
    double var = q / m - dm * dm;
    var = var < 0 ? 0 : var;
    const FNN_T mean = (FNN_T)((double)k + dm), v = (FNN_T)var;
    const FNN_T invstd = (FNN_T)1 / FNN_SQRT(v + eps);
    if (save_mean) save_mean[c] = mean;
    if (save_invstd) save_invstd[c] = invstd;
    if (moving_mean) moving_mean[c] = momentum * moving_mean[c] + ((FNN_T)1 - momentum) * mean;
    if (moving_var) moving_var[c] = momentum * moving_var[c] + ((FNN_T)1 - momentum) * v;
    *a = (gamma ? gamma[c] : (FNN_T)1) * invstd;
    *b = (beta ? beta[c] : (FNN_T)0) - mean * *a;
}

/* Channel c's backward map dx = A dy + (B x + C) from its sums s = sum dy, q = sum dy (x - mean)
 * over m values (see bn_bwd_unit); saves dgamma and dbeta. */
FNN_BN_INLINE void FNN_(bn_bwd_coef)(int64_t c, double s, double q, double m, const FNN_T *gamma, const FNN_T *mean,
                                     const FNN_T *invstd, FNN_T *dgamma, FNN_T *dbeta, FNN_T *a, FNN_T *b, FNN_T *cc) {
    const double is = (double)invstd[c], dg = q * is;    /* sum dy * xhat */
    if (dgamma) dgamma[c] = (FNN_T)dg;
    if (dbeta) dbeta[c] = (FNN_T)s;
    const double A = (gamma ? (double)gamma[c] : 1.0) * is, B = -A * is * (dg / m);
    *a = (FNN_T)A;
    *b = (FNN_T)B;
    *cc = (FNN_T)(-A * (s / m) - B * (double)mean[c]);
}

FNN_BN_INLINE void FNN_(bn_train_unit)(int wide, int relu, int64_t u, int64_t outer, int64_t ch, int64_t inner, FNN_T momentum,
                                       FNN_T eps, const FNN_T *x, const FNN_T *gamma, const FNN_T *beta, FNN_T *y,
                                       FNN_T *save_mean, FNN_T *save_invstd, FNN_T *moving_mean, FNN_T *moving_var) {
    int64_t c0, cb;
    FNN_(bn_unit)(u, ch, inner, &c0, &cb);
    double s[FNN_BN_LANES], q[FNN_BN_LANES];
    FNN_T k[FNN_BN_LANES] = {0}, a[FNN_BN_LANES], b[FNN_BN_LANES], zero[FNN_BN_LANES] = {0};
    for (int64_t l = 0; l < cb; l++) k[l] = x[(c0 + l) * inner];
    FNN_(bn_sums)(wide, outer, ch, inner, c0, cb, x, k, x, NULL, k, s, q);
    const double m = (double)(outer * inner);
    for (int64_t l = 0; l < cb; l++)
        FNN_(bn_train_coef)(c0 + l, s[l], q[l], m, k[l], momentum, eps, gamma, beta, save_mean, save_invstd,
                            moving_mean, moving_var, &a[l], &b[l]);
    FNN_(bn_apply)(wide, outer, ch, inner, c0, cb, a, b, x, NULL, zero, x, relu, y);
}

FNN_BN_INLINE void FNN_(bn_infer_unit)(int wide, int64_t u, int64_t outer, int64_t ch, int64_t inner, FNN_T eps, const FNN_T *x,
                                const FNN_T *gamma, const FNN_T *beta, const FNN_T *mean, const FNN_T *var,
                                FNN_T *y) {
    int64_t c0, cb;
    FNN_(bn_unit)(u, ch, inner, &c0, &cb);
    FNN_T a[FNN_BN_LANES], b[FNN_BN_LANES], zero[FNN_BN_LANES] = {0};
    for (int64_t l = 0; l < cb; l++) {
        const int64_t c = c0 + l;
        a[l] = (gamma ? gamma[c] : (FNN_T)1) / FNN_SQRT(var[c] + eps);
        b[l] = (beta ? beta[c] : (FNN_T)0) - mean[c] * a[l];
    }
    FNN_(bn_apply)(wide, outer, ch, inner, c0, cb, a, b, x, NULL, zero, x, 0, y);
}

/* dx = A dy + (B x + C) per channel, with A = gamma invstd, mean_g = dbeta / m,
 * mean_gx = dgamma / m: B = -A invstd mean_gx, C = -A mean_g - B mean. */
FNN_BN_INLINE void FNN_(bn_bwd_unit)(int wide, int64_t u, int64_t outer, int64_t ch, int64_t inner, const FNN_T *x,
                              const FNN_T *gamma, const FNN_T *mean, const FNN_T *invstd, const FNN_T *y,
                              const FNN_T *dy, FNN_T *dx,
                              FNN_T *dgamma, FNN_T *dbeta) {
    int64_t c0, cb;
    FNN_(bn_unit)(u, ch, inner, &c0, &cb);
    double s[FNN_BN_LANES], q[FNN_BN_LANES];
    FNN_T a[FNN_BN_LANES], b[FNN_BN_LANES], cc[FNN_BN_LANES], zero[FNN_BN_LANES] = {0};
    FNN_(bn_sums)(wide, outer, ch, inner, c0, cb, x, mean + c0, dy, y, zero, s, q);
    const double m = (double)(outer * inner);
    for (int64_t l = 0; l < cb; l++)
        FNN_(bn_bwd_coef)(c0 + l, s[l], q[l], m, gamma, mean, invstd, dgamma, dbeta, &a[l], &b[l], &cc[l]);
    if (dx) FNN_(bn_apply)(wide, outer, ch, inner, c0, cb, a, cc, dy, y, b, x, 0, dx);
}

/* The split training forward (kind 3: the unit's sums around shift into sums[c], sums[ch + c];
 * kind 5: statistics from sums added over every process's part of the batch, count values in all,
 * then the apply) and backward (kind 4 and kind 6 alike): data-parallel training adds the sums
 * over processes between the two phases. */
FNN_BN_INLINE void FNN_(bn_sums_unit)(int wide, int relu, int64_t u, int64_t outer, int64_t ch, int64_t inner,
                                      const FNN_T *x, const FNN_T *shift, const FNN_T *y, const FNN_T *dy,
                                      double *sums) {
    int64_t c0, cb;
    FNN_(bn_unit)(u, ch, inner, &c0, &cb);
    const FNN_T zero[FNN_BN_LANES] = {0};
    if (dy)
        FNN_(bn_sums)(wide, outer, ch, inner, c0, cb, x, shift + c0, dy, relu ? y : NULL, zero, sums + c0,
                      sums + ch + c0);
    else
        FNN_(bn_sums)(wide, outer, ch, inner, c0, cb, x, shift + c0, x, NULL, shift + c0, sums + c0, sums + ch + c0);
}

FNN_BN_INLINE void FNN_(bn_fwd_apply_unit)(int wide, int relu, int64_t u, int64_t outer, int64_t ch, int64_t inner,
                                           double count, FNN_T momentum, FNN_T eps, const FNN_T *x,
                                           const FNN_T *gamma, const FNN_T *beta, const FNN_T *shift,
                                           const double *sums, FNN_T *y, FNN_T *save_mean, FNN_T *save_invstd,
                                           FNN_T *moving_mean, FNN_T *moving_var) {
    int64_t c0, cb;
    FNN_(bn_unit)(u, ch, inner, &c0, &cb);
    FNN_T a[FNN_BN_LANES], b[FNN_BN_LANES], zero[FNN_BN_LANES] = {0};
    for (int64_t l = 0; l < cb; l++)
        FNN_(bn_train_coef)(c0 + l, sums[c0 + l], sums[ch + c0 + l], count, shift[c0 + l], momentum, eps, gamma,
                            beta, save_mean, save_invstd, moving_mean, moving_var, &a[l], &b[l]);
    FNN_(bn_apply)(wide, outer, ch, inner, c0, cb, a, b, x, NULL, zero, x, relu, y);
}

FNN_BN_INLINE void FNN_(bn_bwd_apply_unit)(int wide, int relu, int64_t u, int64_t outer, int64_t ch, int64_t inner,
                                           double count, const FNN_T *x, const FNN_T *gamma, const FNN_T *mean,
                                           const FNN_T *invstd, const FNN_T *y, const FNN_T *dy, const double *sums,
                                           FNN_T *dx) {
    int64_t c0, cb;
    FNN_(bn_unit)(u, ch, inner, &c0, &cb);
    FNN_T a[FNN_BN_LANES], b[FNN_BN_LANES], cc[FNN_BN_LANES];
    for (int64_t l = 0; l < cb; l++)
        FNN_(bn_bwd_coef)(c0 + l, sums[c0 + l], sums[ch + c0 + l], count, gamma, mean, invstd, NULL, NULL, &a[l],
                          &b[l], &cc[l]);
    FNN_(bn_apply)(wide, outer, ch, inner, c0, cb, a, cc, dy, relu ? y : NULL, b, x, 0, dx);
}

/* One call's arguments; kind 0 training forward, 1 inference forward, 2 backward; 3 and 5 the
 * split training forward, 4 and 6 the split backward. */
typedef struct {
    int kind, relu;
    int64_t outer, ch, inner;
    FNN_T momentum, eps;
    double count;
    const FNN_T *x, *gamma, *beta, *mean, *var, *invstd, *dy, *shift;
    const FNN_T *y_in;
    const double *sums_in;
    FNN_T *y, *save_mean, *save_invstd, *moving_mean, *moving_var, *dx, *dgamma, *dbeta;
    double *sums;
} FNN_(bn_args);

FNN_BN_INLINE void FNN_(bn_unit_body)(const FNN_(bn_args) *a, int64_t u, int wide) {
    if (a->kind == 0)
        FNN_(bn_train_unit)(wide, a->relu, u, a->outer, a->ch, a->inner, a->momentum, a->eps, a->x, a->gamma, a->beta, a->y,
                            a->save_mean, a->save_invstd, a->moving_mean, a->moving_var);
    else if (a->kind == 1)
        FNN_(bn_infer_unit)(wide, u, a->outer, a->ch, a->inner, a->eps, a->x, a->gamma, a->beta, a->mean, a->var, a->y);
    else if (a->kind == 2)
        FNN_(bn_bwd_unit)(wide, u, a->outer, a->ch, a->inner, a->x, a->gamma, a->mean, a->invstd, a->y_in, a->dy, a->dx, a->dgamma,
                          a->dbeta);
    else if (a->kind == 3 || a->kind == 4)
        FNN_(bn_sums_unit)(wide, a->relu, u, a->outer, a->ch, a->inner, a->x, a->shift, a->y_in, a->dy, a->sums);
    else if (a->kind == 5)
        FNN_(bn_fwd_apply_unit)(wide, a->relu, u, a->outer, a->ch, a->inner, a->count, a->momentum, a->eps, a->x,
                                a->gamma, a->beta, a->shift, a->sums_in, a->y, a->save_mean, a->save_invstd,
                                a->moving_mean, a->moving_var);
    else
        FNN_(bn_bwd_apply_unit)(wide, a->relu, u, a->outer, a->ch, a->inner, a->count, a->x, a->gamma, a->mean,
                                a->invstd, a->y_in, a->dy, a->sums_in, a->dx);
}

#if FNN_BN_X86
/* The AVX-512 (N, C, H, W) work of channels [c0, c1) (at most FNN_BN_BLOCK): every channel's
 * arithmetic in the order of the per-channel units (its runs by increasing sample, each run in
 * the lanes of bn_sums_run512), so the same bits, but the loops go sample by sample over the
 * block's channels, whose runs are contiguous in memory: one stream the prefetchers follow
 * instead of one short run (a plane) every outer*inner values (measured 2x faster on one core). */
FNN_BN_AVX2 static void FNN_(bn_block512)(const FNN_(bn_args) *a, int64_t c0, int64_t c1) {
    double s[FNN_BN_BLOCK][FNN_BN_LANES] = {{0}}, q[FNN_BN_BLOCK][FNN_BN_LANES] = {{0}};
    FNN_T k[FNN_BN_BLOCK], ca[FNN_BN_BLOCK], cb[FNN_BN_BLOCK], cc[FNN_BN_BLOCK];
    const int64_t inner = a->inner, ch = a->ch, nb = c1 - c0;
    const double m = (double)(a->outer * inner);
    const int train = a->kind == 0;
    if (a->kind != 1) {
        for (int64_t j = 0; j < nb; j++) k[j] = train ? a->x[(c0 + j) * inner] : a->mean[c0 + j];
        const FNN_T *u = train ? a->x : a->dy, *mask = train ? NULL : a->y_in;
        for (int64_t o = 0; o < a->outer; o++)
            for (int64_t j = 0; j < nb; j++) {
                const int64_t at = (o * ch + c0 + j) * inner;
                FNN_(bn_sums_run512)(inner, a->x + at, u + at, mask ? mask + at : NULL, k[j], train ? k[j] : 0,
                                     s[j], q[j]);
            }
    }
    for (int64_t j = 0; j < nb; j++) {
        const int64_t c = c0 + j;
        double st, qt;
        FNN_(bn_lane_totals)(s[j], q[j], &st, &qt);
        if (train)
            FNN_(bn_train_coef)(c, st, qt, m, k[j], a->momentum, a->eps, a->gamma, a->beta, a->save_mean,
                                a->save_invstd, a->moving_mean, a->moving_var, &ca[j], &cb[j]);
        else if (a->kind == 1) {
            ca[j] = (a->gamma ? a->gamma[c] : (FNN_T)1) / FNN_SQRT(a->var[c] + a->eps);
            cb[j] = (a->beta ? a->beta[c] : (FNN_T)0) - a->mean[c] * ca[j];
        } else
            FNN_(bn_bwd_coef)(c, st, qt, m, a->gamma, a->mean, a->invstd, a->dgamma, a->dbeta, &ca[j], &cc[j], &cb[j]);
        if (a->kind != 2) cc[j] = 0;
    }
    if (a->kind == 2 && !a->dx) return;
    const FNN_T *in = a->kind == 2 ? a->dy : a->x, *mask = a->kind == 2 ? a->y_in : NULL;
    FNN_T *out = a->kind == 2 ? a->dx : a->y;
    for (int64_t o = 0; o < a->outer; o++)
        for (int64_t j = 0; j < nb; j++) {
            const int64_t at = (o * ch + c0 + j) * inner;
            FNN_(bn_apply_run512)(inner, ca[j], cb[j], cc[j], in + at, mask ? mask + at : NULL, a->x + at,
                                  a->kind == 0 && a->relu, out + at);
        }
}
#endif

/* The same body compiled for the baseline and for AVX2 (the same arithmetic in the same order: the
 * lanes are independent and nothing is contracted, so both give the same bits). The AVX2 body
 * also serves the avx512 variant, whose (N, C, H, W) runs go to the hand-vectorised AVX-512 run
 * kernels (the same arithmetic again): compiled for AVX-512 by the compiler, the training forward
 * measured twice as slow (531 against 240 us for 64 x 16 x 28 x 28 floats on one core). */
static void FNN_(bn_unit_generic)(const FNN_(bn_args) *a, int64_t u) { FNN_(bn_unit_body)(a, u, 0); }
#if FNN_BN_X86
FNN_BN_AVX2 static void FNN_(bn_unit_avx2)(const FNN_(bn_args) *a, int64_t u) { FNN_(bn_unit_body)(a, u, 0); }
FNN_BN_AVX2 static void FNN_(bn_unit_avx512)(const FNN_(bn_args) *a, int64_t u) { FNN_(bn_unit_body)(a, u, 1); }
#endif

static int FNN_(bn_run)(const FNN_(bn_args) *a, int nt) {
    void (*unit)(const FNN_(bn_args) *, int64_t) = FNN_(bn_unit_generic);
#if FNN_BN_X86
    if (fnn_arch_get() == FNN_ARCH_AVX512) unit = FNN_(bn_unit_avx512);
    else if (fnn_arch_get() != FNN_ARCH_GENERIC) unit = FNN_(bn_unit_avx2);
#endif
    const int64_t units = FNN_(bn_units)(a->outer, a->ch, a->inner, &nt);
#if FNN_BN_X86
    if (unit == FNN_(bn_unit_avx512) && a->inner > 1 && a->kind <= 2) {   /* the split kinds go by unit */
        /* blocks of channels, as many per thread as FNN_BN_BLOCK allows (any split gives the same bits) */
        const int64_t per = (a->ch + nt - 1) / nt, bs = per < FNN_BN_BLOCK ? per : FNN_BN_BLOCK;
        const int64_t blocks = (a->ch + bs - 1) / bs;
        FNN_PARALLEL_FOR(nt, u, blocks, {
            const int64_t c1 = (u + 1) * bs < a->ch ? (u + 1) * bs : a->ch;
            FNN_(bn_block512)(a, u * bs, c1);
        });
        return FNN_OK;
    }
#endif
    FNN_PARALLEL_FOR(nt, u, units, { unit(a, u); });
    return FNN_OK;
}

static int FNN_(batchnorm_fwd_train)(int flags, int64_t outer, int64_t ch, int64_t inner, FNN_T momentum, FNN_T eps,
                                     const FNN_T *x, const FNN_T *gamma, const FNN_T *beta, FNN_T *y,
                                     FNN_T *save_mean, FNN_T *save_invstd, FNN_T *moving_mean, FNN_T *moving_var,
                                     int nt) {
    /* no batch statistics of an empty batch */
    if (outer < 1 || ch < 1 || inner < 1 || !x || !y || !(eps > 0) || !(momentum >= 0 && momentum <= 1))
        return FNN_ERR_ARG;
    const FNN_(bn_args) a = {.kind = 0, .relu = (flags & FNN_EPI_RELU) != 0, .outer = outer, .ch = ch, .inner = inner, .momentum = momentum, .eps = eps,
                             .x = x, .gamma = gamma, .beta = beta, .y = y, .save_mean = save_mean,
                             .save_invstd = save_invstd, .moving_mean = moving_mean, .moving_var = moving_var};
    return FNN_(bn_run)(&a, nt);
}

static int FNN_(batchnorm_fwd_infer)(int64_t outer, int64_t ch, int64_t inner, FNN_T eps, const FNN_T *x,
                                     const FNN_T *gamma, const FNN_T *beta, const FNN_T *mean, const FNN_T *var,
                                     FNN_T *y, int nt) {
    if (outer < 0 || ch < 1 || inner < 1) return FNN_ERR_ARG;
    if (outer == 0) return FNN_OK;
    if (!x || !y || !mean || !var || !(eps > 0)) return FNN_ERR_ARG;
    const FNN_(bn_args) a = {.kind = 1, .outer = outer, .ch = ch, .inner = inner, .eps = eps, .x = x,
                             .gamma = gamma, .beta = beta, .mean = mean, .var = var, .y = y};
    return FNN_(bn_run)(&a, nt);
}

static int FNN_(batchnorm_bwd)(int flags, int64_t outer, int64_t ch, int64_t inner, const FNN_T *x,
                               const FNN_T *gamma, const FNN_T *mean, const FNN_T *invstd, const FNN_T *y,
                               const FNN_T *dy, FNN_T *dx, FNN_T *dgamma,
                               FNN_T *dbeta, int nt) {
    const int relu = (flags & FNN_EPI_RELU) != 0;
    if (outer < 1 || ch < 1 || inner < 1 || !x || !mean || !invstd || !dy || (relu && !y)) return FNN_ERR_ARG;
    const FNN_(bn_args) a = {.kind = 2, .outer = outer, .ch = ch, .inner = inner, .x = x, .gamma = gamma,
                             .y_in = relu ? y : NULL,
                             .mean = mean, .invstd = invstd, .dy = dy, .dx = dx, .dgamma = dgamma, .dbeta = dbeta};
    return FNN_(bn_run)(&a, nt);
}

/* The split kernels take outer = 0 (a process whose part of the batch is empty still adds its
 * zero sums and keeps the statistics every process shares). */
static int FNN_(batchnorm_sums)(int flags, int64_t outer, int64_t ch, int64_t inner, const FNN_T *x,
                                const FNN_T *shift, const FNN_T *y, const FNN_T *dy, double *sums, int nt) {
    const int relu = (flags & FNN_EPI_RELU) != 0;
    if (outer < 0 || ch < 1 || inner < 1 || !shift || !sums || (outer > 0 && !x) || (outer > 0 && relu && dy && !y))
        return FNN_ERR_ARG;
    const FNN_(bn_args) a = {.kind = dy ? 4 : 3, .relu = relu, .outer = outer, .ch = ch, .inner = inner, .x = x,
                             .shift = shift, .y_in = y, .dy = dy, .sums = sums};
    return FNN_(bn_run)(&a, nt);
}

static int FNN_(batchnorm_fwd_apply)(int flags, int64_t outer, int64_t ch, int64_t inner, double count,
                                     FNN_T momentum, FNN_T eps, const FNN_T *x, const FNN_T *gamma, const FNN_T *beta,
                                     const FNN_T *shift, const double *sums, FNN_T *y, FNN_T *save_mean,
                                     FNN_T *save_invstd, FNN_T *moving_mean, FNN_T *moving_var, int nt) {
    if (outer < 0 || ch < 1 || inner < 1 || !shift || !sums || !(count >= 1) || (outer > 0 && (!x || !y)) ||
        !(eps > 0) || !(momentum >= 0 && momentum <= 1))
        return FNN_ERR_ARG;
    const FNN_(bn_args) a = {.kind = 5, .relu = (flags & FNN_EPI_RELU) != 0, .outer = outer, .ch = ch, .inner = inner,
                             .count = count, .momentum = momentum, .eps = eps, .x = x, .gamma = gamma, .beta = beta,
                             .shift = shift, .sums_in = sums, .y = y, .save_mean = save_mean,
                             .save_invstd = save_invstd, .moving_mean = moving_mean, .moving_var = moving_var};
    return FNN_(bn_run)(&a, nt);
}

static int FNN_(batchnorm_bwd_apply)(int flags, int64_t outer, int64_t ch, int64_t inner, double count,
                                     const FNN_T *x, const FNN_T *gamma, const FNN_T *mean, const FNN_T *invstd,
                                     const FNN_T *y, const FNN_T *dy, const double *sums, FNN_T *dx, int nt) {
    const int relu = (flags & FNN_EPI_RELU) != 0;
    if (outer < 0 || ch < 1 || inner < 1 || !mean || !invstd || !sums || !(count >= 1) ||
        (outer > 0 && (!x || !dy || !dx || (relu && !y))))
        return FNN_ERR_ARG;
    if (outer == 0) return FNN_OK;
    const FNN_(bn_args) a = {.kind = 6, .relu = relu, .outer = outer, .ch = ch, .inner = inner, .count = count,
                             .x = x, .gamma = gamma, .mean = mean, .invstd = invstd, .y_in = y, .dy = dy,
                             .sums_in = sums, .dx = dx};
    return FNN_(bn_run)(&a, nt);
}
