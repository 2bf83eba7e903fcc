/* Inverted dropout: float and double from dropout_tmpl.h. */
#include "../core/internal.h"

/* splitmix64's finaliser: a bijective 64-bit mix, used once per call to derive two 32-bit keys
 * from the seed. */
static inline uint64_t fnn_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* A 32-bit bijective mixer (Wellons' "lowbias32"); two rounds over the 64-bit counter give the
 * per-element bits. 32-bit multiplies vectorise on every x86 level (64-bit ones do not below
 * AVX-512), and a CUDA kernel reproduces them exactly. */
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

FNN_DROPOUT_INLINE uint32_t fnn_mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    return x ^ (x >> 16);
}

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
