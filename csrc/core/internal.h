/* Private helpers shared by the kernel files (not part of the public API). */
#ifndef FASTNN_INTERNAL_H
#define FASTNN_INTERNAL_H

#include "../include/fastnn.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many elements an elementwise kernel stays serial: waking a second thread costs
 * a few microseconds, about what one core needs for 32k simple float operations. */
#define FNN_PAR_MIN_ELEMS 32768

/* Deterministic reductions split their range into this many fixed chunks, whatever the thread
 * count, and add the chunk results in order: the sum is then bit-identical for any n_threads. */
#define FNN_REDUCE_CHUNKS 64

/* OpenMP regions only when there are threads to share the work: libgomp sets up a team even
 * for a region whose `if` clause is false, about 0.3-0.4 us per call, as long as a whole small
 * kernel takes at batch 1. FNN_PARALLEL(nt, block) runs the block on nt threads (each finds its
 * share with fnn_omp_range) or once, outside any region; FNN_PARALLEL_FOR(nt, i, n, body) a
 * static loop over i in [0, n); FNN_PARALLEL_FOR_OR(nt, acc, i, n, body) the same with
 * `acc |= ...` in the body reduced over the threads. */
#define FNN_PRAGMA(x) _Pragma(#x)
#define FNN_PARALLEL(nt, ...)                                                                    \
    do {                                                                                         \
        if ((nt) > 1) {                                                                          \
            FNN_PRAGMA(omp parallel num_threads(nt)) { __VA_ARGS__ }                             \
        } else {                                                                                 \
            __VA_ARGS__                                                                          \
        }                                                                                        \
    } while (0)
#define FNN_PARALLEL_FOR(nt, i, n, ...)                                                          \
    do {                                                                                         \
        if ((nt) > 1) {                                                                          \
            FNN_PRAGMA(omp parallel for num_threads(nt) schedule(static))                        \
            for (int64_t i = 0; i < (n); i++) { __VA_ARGS__ }                                    \
        } else {                                                                                 \
            for (int64_t i = 0; i < (n); i++) { __VA_ARGS__ }                                    \
        }                                                                                        \
    } while (0)
#define FNN_PARALLEL_FOR_OR(nt, acc, i, n, ...)                                                  \
    do {                                                                                         \
        if ((nt) > 1) {                                                                          \
            FNN_PRAGMA(omp parallel for num_threads(nt) schedule(static) reduction(| : acc))     \
            for (int64_t i = 0; i < (n); i++) { __VA_ARGS__ }                                    \
        } else {                                                                                 \
            for (int64_t i = 0; i < (n); i++) { __VA_ARGS__ }                                    \
        }                                                                                        \
    } while (0)

/* The share [*i0, *i1) of n elements that the calling OpenMP thread owns: contiguous blocks in
 * multiples of 16 elements (64-byte lines for float) so threads never write the same line. */
static inline void fnn_omp_range(int64_t n, int64_t *i0, int64_t *i1) {
    int t = 0, T = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    T = omp_get_num_threads();
#endif
    int64_t blocks = (n + 15) / 16;
    *i0 = blocks * t / T * 16;
    *i1 = blocks * (t + 1) / T * 16;
    if (*i0 > n) *i0 = n;
    if (*i1 > n) *i1 = n;
}

/* exp(x) for float in a form the compiler vectorises (no libm call, no branches): x = k ln2 + r
 * with |r| <= ln2/2 (ln2 split in two for an exact k ln2), Cephes' degree-6 polynomial for e^r
 * (about 1 ulp), and 2^k assembled in the exponent bits. Below -87.3 (where 2^k would be
 * subnormal) it returns 0; above 88.3 it saturates near FLT_MAX. */
static inline float fnn_expf(float x) {
    float xc = x > 88.3f ? 88.3f : x;
    xc = xc < -87.3f ? -87.3f : xc;
    float kf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    /* NaN passes the clamps; converting it to int is undefined, so 2^k gets k = 0 and the NaN
     * reaches the result through r and p. */
    kf = kf == kf ? kf : 0.0f;
    float r = xc - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { uint32_t u; float f; } scale;
    scale.u = (uint32_t)((int32_t)kf + 127) << 23;
    return x < -87.3f ? 0.0f : p * scale.f;
}

/* sum_c fn(chunk c) over FNN_REDUCE_CHUNKS fixed chunks of [0, n), added in chunk order: the
 * result is bit-identical for any thread count. fn returns the sum over its rows [i0, i1). */
typedef double (*fnn_chunk_sum_fn)(int64_t i0, int64_t i1, const void *ctx);

static inline double fnn_fixed_order_sum(int64_t n, int nt, fnn_chunk_sum_fn fn, const void *ctx) {
    double part[FNN_REDUCE_CHUNKS];
    FNN_PARALLEL_FOR(nt, c, FNN_REDUCE_CHUNKS,
                     part[c] = fn(n * c / FNN_REDUCE_CHUNKS, n * (c + 1) / FNN_REDUCE_CHUNKS, ctx););
    double total = 0;
    for (int c = 0; c < FNN_REDUCE_CHUNKS; c++) total += part[c];
    return total;
}

static inline int fnn_threads_for(int64_t work, int64_t min_per_thread, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    int64_t useful = work / (min_per_thread > 0 ? min_per_thread : 1);
    if (useful < 1) useful = 1;
    return useful < n_threads ? (int)useful : n_threads;
}

/* The convolution's implicit im2col (defined in csrc/gemm/gemm.c): rows [0, m) of
 * C = act(A B + bias) for one group of columns on the calling thread, A m x k row-major (lda):
 * nr0 values of row p of B at b + boff[p] go to c[i*ldc + j], nr1 more at b + boff[p] + b2 to
 * c[i*ldc + c2 + j] (two output rows of a small image at once). flags: FNN_BIAS_ROW,
 * FNN_EPI_RELU. nr0 and nr1 are at most fnn_gemm_rows_width_*(), the vector width of the CPU
 * variant's kernel, 0 where it has none (then FNN_ERR_ARG). The direct GEMM kernel's
 * arithmetic: each element the same as fnn_gemm over the gathered B. */
int fnn_gemm_rows_width_f32(void);
int fnn_gemm_rows_width_f64(void);
/* Whether the implicit forward convolution (output rows of ow values, wp = ow + kw - 1 wide columns
 * on the explicit path, k taps) takes fnn_gemm_rows_* on this CPU variant: where it has the kernel
 * and, per variant, where the kernel is faster (the shape only, never the thread count). */
int fnn_gemm_rows_take_f32(int64_t ow, int64_t wp, int64_t k);
int fnn_gemm_rows_take_f64(int64_t ow, int64_t wp, int64_t k);
int fnn_gemm_rows_f32(int flags, int64_t m, int64_t k, const float *a, int64_t lda, const float *b,
                      const int64_t *boff, int64_t b2, int nr0, int nr1, const float *bias, float *c, int64_t ldc,
                      int64_t c2);
int fnn_gemm_rows_f64(int flags, int64_t m, int64_t k, const double *a, int64_t lda, const double *b,
                      const int64_t *boff, int64_t b2, int nr0, int nr1, const double *bias, double *c, int64_t ldc,
                      int64_t c2);
/* The same over kq k-pairs of bf16 (csrc/gemm/gemm_bf16.c): pair q of A row i at a[i*lda + q], of B
 * column j at b[boff[q] + j], each uint32_t holding element 2q in its low and 2q+1 in its high half
 * (the packed layout of gemm_bf16_internal.h); 0 width where the bf16 variant has no such kernel. */
int fnn_gemm_rows_width_bf16(void);
int fnn_gemm_rows_bf16(int flags, int64_t m, int64_t kq, const uint32_t *a, int64_t lda, const uint32_t *b,
                       const int64_t *boff, int64_t b2, int nr0, int nr1, const float *bias, float *c, int64_t ldc,
                       int64_t c2);

#endif
