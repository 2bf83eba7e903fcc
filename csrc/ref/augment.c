/* Data augmentation (RandomFlip, RandomTranslation, GaussianNoise): float and double from
 * augment_tmpl.h. Every random decision is a pure function of (seed, counter) through the
 * counter hash of core/rng.h, so results do not depend on the thread count, and the decisions
 * (flip bits, shifts) do not depend on the dtype either.
 *
 * Counters of one call with offset o:
 *   flip:        sample s uses counter o + s (bit 31 of its bits: flip the width axis, bit 30:
 *                flip the height axis, each taken only when the mode asks for that axis);
 *   translation: sample s uses o + 2s (height shift) and o + 2s + 1 (width shift), each shift
 *                floor(bits * (2m + 1) / 2^32) - m, uniform over the integers in [-m, m] (up to
 *                (2m + 1) / 2^32 of bias);
 *   noise:       element i uses o + 2i and o + 2i + 1 (Box-Muller on two 24-bit uniforms, in
 *                double whatever the dtype, then rounded to it).
 * All counter arithmetic is modulo 2^64. */
#include <math.h>

#include "../core/internal.h"
#include "../core/rng.h"

/* What the image kernels need after their checks (augment_tmpl.h's aug_prepare). */
typedef struct {
    int status;         /* FNN_OK or FNN_ERR_ARG */
    int64_t rows;       /* n c h output rows (0: nothing to do) */
    uint32_t k0, k1;    /* keys of the seed */
    int nt;             /* threads for the work */
} fnn_aug_setup;

/* The shift of one axis for bits b and maximum m (0 <= m < 2^30). */
FNN_RNG_INLINE int64_t fnn_shift_of(uint32_t b, int64_t m) {
    return (int64_t)(((uint64_t)b * (uint64_t)(2 * m + 1)) >> 32) - m;
}

/* A standard normal value from the bits of two counters (Box-Muller, the cosine branch):
 * u1 = (a >> 8) + 1 over 2^24 in (0, 1], u2 = (b >> 8) over 2^24 in [0, 1). */
static inline double fnn_normal_of(uint32_t a, uint32_t b) {
    const double u1 = (double)((a >> 8) + 1) * (1.0 / 16777216.0);
    const double u2 = (double)(b >> 8) * (1.0 / 16777216.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#include "augment_tmpl.h"
#define FNN_DOUBLE
#include "augment_tmpl.h"
#undef FNN_DOUBLE

int fnn_random_flip_f32(int64_t n, int64_t c, int64_t h, int64_t w, int flags, uint64_t seed, uint64_t offset,
                        const float *x, float *y, int n_threads) {
    return random_flip_f32(n, c, h, w, flags, seed, offset, x, y, n_threads);
}
int fnn_random_flip_f64(int64_t n, int64_t c, int64_t h, int64_t w, int flags, uint64_t seed, uint64_t offset,
                        const double *x, double *y, int n_threads) {
    return random_flip_f64(n, c, h, w, flags, seed, offset, x, y, n_threads);
}
int fnn_random_translate_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t max_h, int64_t max_w,
                             uint64_t seed, uint64_t offset, int adjoint, float fill, const float *x, float *y,
                             int n_threads) {
    return random_translate_f32(n, c, h, w, max_h, max_w, seed, offset, adjoint, fill, x, y, n_threads);
}
int fnn_random_translate_f64(int64_t n, int64_t c, int64_t h, int64_t w, int64_t max_h, int64_t max_w,
                             uint64_t seed, uint64_t offset, int adjoint, double fill, const double *x,
                             double *y, int n_threads) {
    return random_translate_f64(n, c, h, w, max_h, max_w, seed, offset, adjoint, fill, x, y, n_threads);
}
int fnn_gaussian_noise_f32(int64_t n, double stddev, uint64_t seed, uint64_t offset, const float *x, float *y,
                           int n_threads) {
    return gaussian_noise_f32(n, stddev, seed, offset, x, y, n_threads);
}
int fnn_gaussian_noise_f64(int64_t n, double stddev, uint64_t seed, uint64_t offset, const double *x, double *y,
                           int n_threads) {
    return gaussian_noise_f64(n, stddev, seed, offset, x, y, n_threads);
}
