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

/* For each channel c0 + l of the unit: s[l] = sum (u - ku[l]), q[l] = sum (u - ku[l]) (x - k[l])
 * over its values, with u = x (moments around the shift k: one pass, and accurate when the mean
 * is large against the spread) or u = dy, ku = 0, k = mean (the backward's sums). */
FNN_BN_INLINE void FNN_(bn_sums)(int64_t outer, int64_t ch, int64_t inner, int64_t c0, int64_t cb, const FNN_T *x,
                                 const FNN_T *k, const FNN_T *u, const FNN_T *mask, const FNN_T *ku, double *s_out,
                                 double *q_out) {
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
    double st = 0, qt = 0;
    for (int l = 0; l < FNN_BN_LANES; l++) {
        st += s[l];
        qt += q[l];
    }
    s_out[0] = st;
    q_out[0] = qt;
}

/* out = a[l] g + (a2[l] in2 + b[l]) for each channel c0 + l of the unit, g = in where mask > 0
 * (mask NULL: everywhere), else 0; with relu, max(out, 0). out may be in or in2. */
FNN_BN_INLINE void FNN_(bn_apply)(int64_t outer, int64_t ch, int64_t inner, int64_t c0, int64_t cb, const FNN_T *a,
                                  const FNN_T *b, const FNN_T *in, const FNN_T *mask, const FNN_T *a2,
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
        for (int64_t i = 0; i < inner; i++)
            r[i] = FNN_(bn_relu)(a0 * FNN_(bn_masked)(in, mask, at, i) + (a20 * p2[i] + b0), relu);
    }
}

/* Per-channel statistics of channels c0 + l from the sums s, q around the shift k over m values:
 * saves mean and invstd, updates the moving ones, and gives the affine map y = a x + b. */
FNN_BN_INLINE void FNN_(bn_fwd_finish)(int64_t c0, int64_t cb, double m, FNN_T momentum, FNN_T eps, const FNN_T *k,
                                       const double *s, const double *q, const FNN_T *gamma, const FNN_T *beta,
                                       FNN_T *save_mean, FNN_T *save_invstd, FNN_T *moving_mean, FNN_T *moving_var,
                                       FNN_T *a, FNN_T *b) {
    for (int64_t l = 0; l < cb; l++) {
        const int64_t c = c0 + l;
        const double dm = s[l] / m;
        double var = q[l] / m - dm * dm;
        var = var < 0 ? 0 : var;
        const FNN_T mean = (FNN_T)((double)k[l] + dm), v = (FNN_T)var;
        const FNN_T invstd = (FNN_T)1 / FNN_SQRT(v + eps);
        if (save_mean) save_mean[c] = mean;
        if (save_invstd) save_invstd[c] = invstd;
        if (moving_mean) moving_mean[c] = momentum * moving_mean[c] + ((FNN_T)1 - momentum) * mean;
        if (moving_var) moving_var[c] = momentum * moving_var[c] + ((FNN_T)1 - momentum) * v;
        a[l] = (gamma ? gamma[c] : (FNN_T)1) * invstd;
        b[l] = (beta ? beta[c] : (FNN_T)0) - mean * a[l];
    }
}

FNN_BN_INLINE void FNN_(bn_train_unit)(int relu, int64_t u, int64_t outer, int64_t ch, int64_t inner, FNN_T momentum,
                                       FNN_T eps, const FNN_T *x, const FNN_T *gamma, const FNN_T *beta, FNN_T *y,
                                       FNN_T *save_mean, FNN_T *save_invstd, FNN_T *moving_mean, FNN_T *moving_var) {
    int64_t c0, cb;
    FNN_(bn_unit)(u, ch, inner, &c0, &cb);
    double s[FNN_BN_LANES], q[FNN_BN_LANES];
    FNN_T k[FNN_BN_LANES] = {0}, a[FNN_BN_LANES], b[FNN_BN_LANES], zero[FNN_BN_LANES] = {0};
    for (int64_t l = 0; l < cb; l++) k[l] = x[(c0 + l) * inner];
    FNN_(bn_sums)(outer, ch, inner, c0, cb, x, k, x, NULL, k, s, q);
    FNN_(bn_fwd_finish)(c0, cb, (double)(outer * inner), momentum, eps, k, s, q, gamma, beta, save_mean, save_invstd,
                        moving_mean, moving_var, a, b);
    FNN_(bn_apply)(outer, ch, inner, c0, cb, a, b, x, NULL, zero, x, relu, y);
}

/* The split training forward (kind 3: the unit's sums around shift into sums[c], sums[ch + c];
 * kind 5: statistics from sums added over every process's part of the batch, count values in all,
 * then the apply) and backward (kind 4 and kind 6 alike): data-parallel training adds the sums
 * over processes between the two phases. */
FNN_BN_INLINE void FNN_(bn_sums_unit)(int relu, int64_t u, int64_t outer, int64_t ch, int64_t inner, const FNN_T *x,
                                      const FNN_T *shift, const FNN_T *y, const FNN_T *dy, double *sums) {
    int64_t c0, cb;
    FNN_(bn_unit)(u, ch, inner, &c0, &cb);
    const FNN_T zero[FNN_BN_LANES] = {0};
    if (dy)
        FNN_(bn_sums)(outer, ch, inner, c0, cb, x, shift + c0, dy, relu ? y : NULL, zero, sums + c0, sums + ch + c0);
    else
        FNN_(bn_sums)(outer, ch, inner, c0, cb, x, shift + c0, x, NULL, shift + c0, sums + c0, sums + ch + c0);
}

FNN_BN_INLINE void FNN_(bn_fwd_apply_unit)(int relu, int64_t u, int64_t outer, int64_t ch, int64_t inner, double count,
                                           FNN_T momentum, FNN_T eps, const FNN_T *x, const FNN_T *gamma,
                                           const FNN_T *beta, const FNN_T *shift, const double *sums, FNN_T *y,
                                           FNN_T *save_mean, FNN_T *save_invstd, FNN_T *moving_mean,
                                           FNN_T *moving_var) {
    int64_t c0, cb;
    FNN_(bn_unit)(u, ch, inner, &c0, &cb);
    FNN_T a[FNN_BN_LANES], b[FNN_BN_LANES], zero[FNN_BN_LANES] = {0};
    FNN_(bn_fwd_finish)(c0, cb, count, momentum, eps, shift + c0, sums + c0, sums + ch + c0, gamma, beta, save_mean,
                        save_invstd, moving_mean, moving_var, a, b);
    FNN_(bn_apply)(outer, ch, inner, c0, cb, a, b, x, NULL, zero, x, relu, y);
}

FNN_BN_INLINE void FNN_(bn_infer_unit)(int64_t u, int64_t outer, int64_t ch, int64_t inner, FNN_T eps, const FNN_T *x,
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
    FNN_(bn_apply)(outer, ch, inner, c0, cb, a, b, x, NULL, zero, x, 0, y);
}

/* dx = A dy + (B x + C) per channel, with A = gamma invstd, mean_g = dbeta / m,
 * mean_gx = dgamma / m: B = -A invstd mean_gx, C = -A mean_g - B mean; s, q: the sums of dy and
 * of dy (x - mean) over m values. */
FNN_BN_INLINE void FNN_(bn_bwd_finish)(int64_t c0, int64_t cb, double m, const FNN_T *gamma, const FNN_T *mean,
                                       const FNN_T *invstd, const double *s, const double *q, FNN_T *dgamma,
                                       FNN_T *dbeta, FNN_T *a, FNN_T *b, FNN_T *cc) {
    for (int64_t l = 0; l < cb; l++) {
        const int64_t c = c0 + l;
        const double is = (double)invstd[c], dg = q[l] * is;    /* sum dy * xhat */
        if (dgamma) dgamma[c] = (FNN_T)dg;
        if (dbeta) dbeta[c] = (FNN_T)s[l];
        const double A = (gamma ? (double)gamma[c] : 1.0) * is, B = -A * is * (dg / m);
        a[l] = (FNN_T)A;
        b[l] = (FNN_T)B;
        cc[l] = (FNN_T)(-A * (s[l] / m) - B * (double)mean[c]);
    }
}

FNN_BN_INLINE void FNN_(bn_bwd_unit)(int64_t u, int64_t outer, int64_t ch, int64_t inner, const FNN_T *x,
                              const FNN_T *gamma, const FNN_T *mean, const FNN_T *invstd, const FNN_T *y,
                              const FNN_T *dy, FNN_T *dx,
                              FNN_T *dgamma, FNN_T *dbeta) {
    int64_t c0, cb;
    FNN_(bn_unit)(u, ch, inner, &c0, &cb);
    double s[FNN_BN_LANES], q[FNN_BN_LANES];
    FNN_T a[FNN_BN_LANES], b[FNN_BN_LANES], cc[FNN_BN_LANES], zero[FNN_BN_LANES] = {0};
    FNN_(bn_sums)(outer, ch, inner, c0, cb, x, mean + c0, dy, y, zero, s, q);
    FNN_(bn_bwd_finish)(c0, cb, (double)(outer * inner), gamma, mean, invstd, s, q, dgamma, dbeta, a, b, cc);
    if (dx) FNN_(bn_apply)(outer, ch, inner, c0, cb, a, cc, dy, y, b, x, 0, dx);
}

FNN_BN_INLINE void FNN_(bn_bwd_apply_unit)(int relu, int64_t u, int64_t outer, int64_t ch, int64_t inner,
                                           double count, const FNN_T *x, const FNN_T *gamma, const FNN_T *mean,
                                           const FNN_T *invstd, const FNN_T *y, const FNN_T *dy, const double *sums,
                                           FNN_T *dx) {
    int64_t c0, cb;
    FNN_(bn_unit)(u, ch, inner, &c0, &cb);
    FNN_T a[FNN_BN_LANES], b[FNN_BN_LANES], cc[FNN_BN_LANES];
    FNN_(bn_bwd_finish)(c0, cb, count, gamma, mean, invstd, sums + c0, sums + ch + c0, NULL, NULL, a, b, cc);
    FNN_(bn_apply)(outer, ch, inner, c0, cb, a, cc, dy, relu ? y : NULL, b, x, 0, dx);
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

FNN_BN_INLINE void FNN_(bn_unit_body)(const FNN_(bn_args) *a, int64_t u) {
    if (a->kind == 0)
        FNN_(bn_train_unit)(a->relu, u, a->outer, a->ch, a->inner, a->momentum, a->eps, a->x, a->gamma, a->beta, a->y,
                            a->save_mean, a->save_invstd, a->moving_mean, a->moving_var);
    else if (a->kind == 1)
        FNN_(bn_infer_unit)(u, a->outer, a->ch, a->inner, a->eps, a->x, a->gamma, a->beta, a->mean, a->var, a->y);
    else if (a->kind == 2)
        FNN_(bn_bwd_unit)(u, a->outer, a->ch, a->inner, a->x, a->gamma, a->mean, a->invstd, a->y_in, a->dy, a->dx, a->dgamma,
                          a->dbeta);
    else if (a->kind == 3 || a->kind == 4)
        FNN_(bn_sums_unit)(a->relu, u, a->outer, a->ch, a->inner, a->x, a->shift, a->y_in, a->dy, a->sums);
    else if (a->kind == 5)
        FNN_(bn_fwd_apply_unit)(a->relu, u, a->outer, a->ch, a->inner, a->count, a->momentum, a->eps, a->x, a->gamma,
                                a->beta, a->shift, a->sums_in, a->y, a->save_mean, a->save_invstd, a->moving_mean,
                                a->moving_var);
    else
        FNN_(bn_bwd_apply_unit)(a->relu, u, a->outer, a->ch, a->inner, a->count, a->x, a->gamma, a->mean, a->invstd,
                                a->y_in, a->dy, a->sums_in, a->dx);
}

/* The same body compiled for the baseline and for AVX2 (the same arithmetic in the same order: the
 * lanes are independent and nothing is contracted, so both give the same bits). The AVX2 body
 * also serves the avx512 variant: compiled for AVX-512 the training forward measured twice as
 * slow (531 against 240 us for 64 x 16 x 28 x 28 floats on one core). */
static void FNN_(bn_unit_generic)(const FNN_(bn_args) *a, int64_t u) { FNN_(bn_unit_body)(a, u); }
#if FNN_BN_X86
FNN_BN_AVX2 static void FNN_(bn_unit_avx2)(const FNN_(bn_args) *a, int64_t u) { FNN_(bn_unit_body)(a, u); }
#endif

static int FNN_(bn_run)(const FNN_(bn_args) *a, int nt) {
    void (*unit)(const FNN_(bn_args) *, int64_t) = FNN_(bn_unit_generic);
#if FNN_BN_X86
    if (fnn_arch_get() != FNN_ARCH_GENERIC) unit = FNN_(bn_unit_avx2);
#endif
    const int64_t units = FNN_(bn_units)(a->outer, a->ch, a->inner, &nt);
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
