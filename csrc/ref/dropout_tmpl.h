/* Inverted dropout with a counter-based mask; included once per type by dropout.c. */
#include "tmpl_types.h"

static int FNN_(dropout_fwd)(int64_t n, double rate, uint64_t seed, uint64_t offset, const FNN_T *x, FNN_T *y,
                             FNN_T *mask, int nt) {
    if (n < 0 || !(rate >= 0.0 && rate < 1.0) || (n > 0 && (!x || !y || !mask))) return FNN_ERR_ARG;
    const uint64_t thr = fnn_dropout_threshold(rate);
    const uint64_t key = fnn_mix64(seed);
    const FNN_T scale = (FNN_T)(1.0 / (1.0 - rate));
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS / 2, nt);
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < n; i++) {
        FNN_T mk = fnn_dropout_keep(key, offset + (uint64_t)i, thr) ? scale : 0;
        mask[i] = mk;
        y[i] = x[i] * mk;
    }
    return FNN_OK;
}
