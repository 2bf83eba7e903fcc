/* Inverted dropout with a counter-based mask; included once per type by dropout.c. */
#include "tmpl_types.h"

FNN_DROPOUT_INLINE void FNN_(dropout_body)(int64_t n, uint32_t k0, uint32_t k1, uint64_t offset, uint32_t thr,
                                           FNN_T scale, const FNN_T *restrict x, FNN_T *restrict y,
                                           FNN_T *restrict mask) {
    /* counter = offset + i in 32-bit halves (with the carry), so the loop vectorises in 32-bit
     * lanes */
    const uint32_t lo0 = (uint32_t)offset, hi0 = (uint32_t)(offset >> 32);
    for (int64_t i = 0; i < n; i++) {
        const uint32_t lo = lo0 + (uint32_t)i;
        const uint32_t hi = hi0 + (uint32_t)((uint64_t)i >> 32) + (uint32_t)(lo < lo0);
        FNN_T mk = fnn_dropout_keep(k0, k1, lo, hi, thr) ? scale : 0;
        mask[i] = mk;
        y[i] = x[i] * mk;
    }
}

#if FNN_DROPOUT_X86
FNN_DROPOUT_AVX512 static void FNN_(dropout_range_avx512)(int64_t n, uint32_t k0, uint32_t k1, uint64_t offset,
                                                         uint32_t thr, FNN_T scale, const FNN_T *restrict x,
                                                         FNN_T *restrict y, FNN_T *restrict mask) {
    FNN_(dropout_body)(n, k0, k1, offset, thr, scale, x, y, mask);
}
#endif

/* The loop compiled for the baseline and, where the CPU has it, for AVX-512 (16 hashes per
 * vector instead of a scalar or SSE2 loop without 32-bit multiplies): the same integer hash
 * and the same products, so the same bits either way. */
static void FNN_(dropout_range)(int64_t n, uint32_t k0, uint32_t k1, uint64_t offset, uint32_t thr, FNN_T scale,
                                const FNN_T *restrict x, FNN_T *restrict y, FNN_T *restrict mask) {
#if FNN_DROPOUT_X86
    if (fnn_arch_get() == FNN_ARCH_AVX512) {
        FNN_(dropout_range_avx512)(n, k0, k1, offset, thr, scale, x, y, mask);
        return;
    }
#endif
    FNN_(dropout_body)(n, k0, k1, offset, thr, scale, x, y, mask);
}

static int FNN_(dropout_fwd)(int64_t n, double rate, uint64_t seed, uint64_t offset, const FNN_T *x, FNN_T *y,
                             FNN_T *mask, int nt) {
    if (n < 0 || !(rate >= 0.0 && rate < 1.0) || (n > 0 && (!x || !y || !mask))) return FNN_ERR_ARG;
    const uint32_t thr = fnn_dropout_threshold(rate);
    const uint64_t key = fnn_mix64(seed);
    const uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    const FNN_T scale = (FNN_T)(1.0 / (1.0 - rate));
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS / 2, nt);
    FNN_PARALLEL(nt, {
        int64_t i0, i1;
        fnn_omp_range(n, &i0, &i1);
        FNN_(dropout_range)(i1 - i0, k0, k1, offset + (uint64_t)i0, thr, scale, x + i0, y + i0, mask + i0);
    });
    return FNN_OK;
}
