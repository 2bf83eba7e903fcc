/* Embedding lookups: float and double from embedding_tmpl.h. */
#include "../core/internal.h"

/* Below this many copied or added elements per thread a call stays on one thread. Both kernels
 * stream rows through the cache at tens of GB/s on one core: the emb64 benchmark's 2560 x 64
 * lookups take about 18 us (forward) and 24 us (backward, zeroing dW included) on one thread,
 * and measured no faster, often slower, on two (the second core's wake-up and the hand-off of
 * the rows cost as much as the split saves). */
#define FNN_EMB_MIN_ELEMS 262144

/* Sizes valid and every index in [0, v): checked before anything is read or written (the
 * Python layer checks first and names the bad index; this is the last line of defence). */
static int fnn_embedding_check(int64_t n, int64_t v, int64_t d, const int64_t *idx) {
    if (n < 0 || v < 0 || d < 0 || (n > 0 && !idx)) return FNN_ERR_ARG;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= (int64_t)((uint64_t)idx[i] >= (uint64_t)v);
    return bad ? FNN_ERR_INDEX : FNN_OK;
}

#include "embedding_tmpl.h"
#define FNN_DOUBLE
#include "embedding_tmpl.h"
#undef FNN_DOUBLE

int fnn_embedding_fwd_f32(int64_t n, int64_t v, int64_t d, const int64_t *idx, const float *w, float *y,
                          int n_threads) {
    return embedding_fwd_f32(n, v, d, idx, w, y, n_threads);
}
int fnn_embedding_fwd_f64(int64_t n, int64_t v, int64_t d, const int64_t *idx, const double *w, double *y,
                          int n_threads) {
    return embedding_fwd_f64(n, v, d, idx, w, y, n_threads);
}
int fnn_embedding_bwd_f32(int64_t n, int64_t v, int64_t d, const int64_t *idx, const float *dy, float *dw,
                          int n_threads) {
    return embedding_bwd_f32(n, v, d, idx, dy, dw, n_threads);
}
int fnn_embedding_bwd_f64(int64_t n, int64_t v, int64_t d, const int64_t *idx, const double *dy, double *dw,
                          int n_threads) {
    return embedding_bwd_f64(n, v, d, idx, dy, dw, n_threads);
}
