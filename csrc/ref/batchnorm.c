/* Batch normalization: float and double from batchnorm_tmpl.h. Threads take whole channels
 * (blocks of FNN_BN_LANES channels when inner == 1), and each channel's sums run in an order
 * fixed by the shape: results do not depend on n_threads. */
#include <math.h>
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

#include "../core/internal.h"

/* Partial sums per channel: 16 doubles, two AVX-512 or four AVX2 registers of independent adds. */
#define FNN_BN_LANES 16
/* Channels per block of the AVX-512 (N, C, H, W) path: their partial sums (2 x 16 doubles each)
 * stay on the stack. */
#define FNN_BN_BLOCK 32

/* The per-channel work is also compiled for AVX2 (a function attribute, so the file stays
 * portable), used by the avx2 and avx512 variants of fnn_arch_get() (so FASTNN_ARCH applies);
 * the helpers are forced inline so they are compiled for their caller's instruction set. No FMA
 * (not enabled, and no contraction under -std=c11): every variant computes the same bits. */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FNN_BN_X86 1
#define FNN_BN_INLINE static inline __attribute__((always_inline))
#define FNN_BN_AVX2 __attribute__((target("avx2")))
#define FNN_BN_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2")))
#else
#define FNN_BN_X86 0
#define FNN_BN_INLINE static inline
#endif

#include "batchnorm_tmpl.h"
#define FNN_DOUBLE
#include "batchnorm_tmpl.h"
#undef FNN_DOUBLE

int fnn_batchnorm_fwd_train_f32(int flags, int64_t outer, int64_t ch, int64_t inner, float momentum, float eps, const float *x,
                                const float *gamma, const float *beta, float *y, float *save_mean,
                                float *save_invstd, float *moving_mean, float *moving_var, int n_threads) {
    return batchnorm_fwd_train_f32(flags, outer, ch, inner, momentum, eps, x, gamma, beta, y, save_mean, save_invstd,
                                   moving_mean, moving_var, n_threads);
}
int fnn_batchnorm_fwd_train_f64(int flags, int64_t outer, int64_t ch, int64_t inner, double momentum, double eps,
                                const double *x, const double *gamma, const double *beta, double *y,
                                double *save_mean, double *save_invstd, double *moving_mean, double *moving_var,
                                int n_threads) {
    return batchnorm_fwd_train_f64(flags, outer, ch, inner, momentum, eps, x, gamma, beta, y, save_mean, save_invstd,
                                   moving_mean, moving_var, n_threads);
}
int fnn_batchnorm_fwd_infer_f32(int64_t outer, int64_t ch, int64_t inner, float eps, const float *x,
                                const float *gamma, const float *beta, const float *mean, const float *var, float *y,
                                int n_threads) {
    return batchnorm_fwd_infer_f32(outer, ch, inner, eps, x, gamma, beta, mean, var, y, n_threads);
}
int fnn_batchnorm_fwd_infer_f64(int64_t outer, int64_t ch, int64_t inner, double eps, const double *x,
                                const double *gamma, const double *beta, const double *mean, const double *var,
                                double *y, int n_threads) {
    return batchnorm_fwd_infer_f64(outer, ch, inner, eps, x, gamma, beta, mean, var, y, n_threads);
}
int fnn_batchnorm_bwd_f32(int flags, int64_t outer, int64_t ch, int64_t inner, const float *x, const float *gamma,
                          const float *mean, const float *invstd, const float *y, const float *dy, float *dx, float *dgamma,
                          float *dbeta, int n_threads) {
    return batchnorm_bwd_f32(flags, outer, ch, inner, x, gamma, mean, invstd, y, dy, dx, dgamma, dbeta, n_threads);
}
int fnn_batchnorm_bwd_f64(int flags, int64_t outer, int64_t ch, int64_t inner, const double *x,
                          const double *gamma, const double *mean, const double *invstd, const double *y,
                          const double *dy, double *dx, double *dgamma,
                          double *dbeta, int n_threads) {
    return batchnorm_bwd_f64(flags, outer, ch, inner, x, gamma, mean, invstd, y, dy, dx, dgamma, dbeta, n_threads);
}
int fnn_batchnorm_sums_f32(int flags, int64_t outer, int64_t ch, int64_t inner, const float *x, const float *shift,
                          const float *y, const float *dy, double *sums, int n_threads) {
    return batchnorm_sums_f32(flags, outer, ch, inner, x, shift, y, dy, sums, n_threads);
}
int fnn_batchnorm_fwd_apply_f32(int flags, int64_t outer, int64_t ch, int64_t inner, double count, float momentum,
                               float eps, const float *x, const float *gamma, const float *beta, const float *shift,
                               const double *sums, float *y, float *save_mean, float *save_invstd, float *moving_mean,
                               float *moving_var, int n_threads) {
    return batchnorm_fwd_apply_f32(flags, outer, ch, inner, count, momentum, eps, x, gamma, beta, shift, sums, y,
                                  save_mean, save_invstd, moving_mean, moving_var, n_threads);
}
int fnn_batchnorm_bwd_apply_f32(int flags, int64_t outer, int64_t ch, int64_t inner, double count, const float *x,
                               const float *gamma, const float *mean, const float *invstd, const float *y, const float *dy,
                               const double *sums, float *dx, int n_threads) {
    return batchnorm_bwd_apply_f32(flags, outer, ch, inner, count, x, gamma, mean, invstd, y, dy, sums, dx, n_threads);
}
int fnn_batchnorm_sums_f64(int flags, int64_t outer, int64_t ch, int64_t inner, const double *x, const double *shift,
                          const double *y, const double *dy, double *sums, int n_threads) {
    return batchnorm_sums_f64(flags, outer, ch, inner, x, shift, y, dy, sums, n_threads);
}
int fnn_batchnorm_fwd_apply_f64(int flags, int64_t outer, int64_t ch, int64_t inner, double count, double momentum,
                               double eps, const double *x, const double *gamma, const double *beta, const double *shift,
                               const double *sums, double *y, double *save_mean, double *save_invstd, double *moving_mean,
                               double *moving_var, int n_threads) {
    return batchnorm_fwd_apply_f64(flags, outer, ch, inner, count, momentum, eps, x, gamma, beta, shift, sums, y,
                                  save_mean, save_invstd, moving_mean, moving_var, n_threads);
}
int fnn_batchnorm_bwd_apply_f64(int flags, int64_t outer, int64_t ch, int64_t inner, double count, const double *x,
                               const double *gamma, const double *mean, const double *invstd, const double *y, const double *dy,
                               const double *sums, double *dx, int n_threads) {
    return batchnorm_bwd_apply_f64(flags, outer, ch, inner, count, x, gamma, mean, invstd, y, dy, sums, dx, n_threads);
}
