/* Inverted dropout: float and double from dropout_tmpl.h. */
#include "../core/internal.h"
#include "../core/rng.h"   /* fnn_mix64, fnn_mix32 */

/* The hashing loop is also compiled for AVX-512 (a function attribute, so the file stays
 * portable), picked by fnn_arch_get() (so FASTNN_ARCH still applies); the helpers it calls are
 * forced inline so that they are compiled for the caller's instruction set. */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FNN_DROPOUT_X86 1
#define FNN_DROPOUT_INLINE static inline __attribute__((always_inline))
#define FNN_DROPOUT_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,prefer-vector-width=512")))
#else
#define FNN_DROPOUT_X86 0
#define FNN_DROPOUT_INLINE static inline
#endif

/* The top 24 bits of the hash form u in [0, 2^24); drop when u < rate * 2^24. 24 bits is what
 * a float holds exactly, so a float32 kernel elsewhere can reproduce the test. */
static inline uint32_t fnn_dropout_threshold(double rate) { return (uint32_t)(rate * 16777216.0); }

/* Element with counter (hi:lo): kept? */
FNN_DROPOUT_INLINE int fnn_dropout_keep(uint32_t k0, uint32_t k1, uint32_t lo, uint32_t hi, uint32_t thr) {
    uint32_t h = fnn_mix32(lo ^ k0);
    h = fnn_mix32(h ^ hi ^ k1);
    return (h >> 8) >= thr;
}

#include "dropout_tmpl.h"
#define FNN_DOUBLE
#include "dropout_tmpl.h"
#undef FNN_DOUBLE

int fnn_dropout_fwd_f32(int64_t n, double rate, uint64_t seed, uint64_t offset, const float *x, float *y,
                        float *mask, int n_threads) {
    return dropout_fwd_f32(n, rate, seed, offset, x, y, mask, n_threads);
}
int fnn_dropout_fwd_f64(int64_t n, double rate, uint64_t seed, uint64_t offset, const double *x, double *y,
                        double *mask, int n_threads) {
    return dropout_fwd_f64(n, rate, seed, offset, x, y, mask, n_threads);
}
