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
