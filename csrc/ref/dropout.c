/* Inverted dropout: float and double from dropout_tmpl.h. */
#include "../core/internal.h"

/* splitmix64's finaliser: a bijective 64-bit mix with full avalanche, cheap enough to run once
 * per element and trivially reproduced by a CUDA kernel (only 64-bit integer multiply/shift). */
static inline uint64_t fnn_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The top 24 bits of the hash form u in [0, 2^24); drop when u < rate * 2^24. 24 bits is what
 * a float can hold exactly, so a float32 kernel elsewhere can reproduce the test. */
static inline uint64_t fnn_dropout_threshold(double rate) { return (uint64_t)(rate * 16777216.0); }

static inline int fnn_dropout_keep(uint64_t key, uint64_t counter, uint64_t thr) {
    return (fnn_mix64(key ^ (counter * 0x9E3779B97F4A7C15ULL)) >> 40) >= thr;
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
