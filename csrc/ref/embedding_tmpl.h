/* Embedding gather (forward) and scatter-add (backward); included once per type by embedding.c. */
#include "tmpl_types.h"

static int FNN_(embedding_fwd)(int64_t n, int64_t v, int64_t d, const int64_t *restrict idx,
                               const FNN_T *restrict w, FNN_T *restrict y, int nt) {
    const int st = fnn_embedding_check(n, v, d, idx);
    if (st != FNN_OK || n == 0 || d == 0) return st;
    if (!w || !y) return FNN_ERR_ARG;
    nt = fnn_threads_for(n * d, FNN_EMB_MIN_ELEMS, nt);
    /* Rows are copied whole by whichever thread owns them: a pure copy, the same bits for any
     * thread count. */
    FNN_PARALLEL_FOR(nt, i, n, {
        const FNN_T *restrict src = w + idx[i] * d;
        FNN_T *restrict dst = y + i * d;
        for (int64_t j = 0; j < d; j++) dst[j] = src[j];
    });
    return FNN_OK;
}

/* Columns [j0, j1) of dw: zeroed, then dw[idx[i], j] += dy[i, j] for i ascending. */
static void FNN_(embedding_bwd_cols)(int64_t n, int64_t v, int64_t d, int64_t j0, int64_t j1,
                                     const int64_t *restrict idx, const FNN_T *restrict dy, FNN_T *restrict dw) {
    const int64_t width = j1 - j0;
    if (width <= 0) return;
    for (int64_t r = 0; r < v; r++) {
        FNN_T *restrict row = dw + r * d + j0;
        for (int64_t j = 0; j < width; j++) row[j] = 0;
    }
    for (int64_t i = 0; i < n; i++) {
        FNN_T *restrict dst = dw + idx[i] * d + j0;
        const FNN_T *restrict src = dy + i * d + j0;
        for (int64_t j = 0; j < width; j++) dst[j] += src[j];
    }
}

static int FNN_(embedding_bwd)(int64_t n, int64_t v, int64_t d, const int64_t *restrict idx,
                               const FNN_T *restrict dy, FNN_T *restrict dw, int nt) {
    const int st = fnn_embedding_check(n, v, d, idx);
    if (st != FNN_OK || v == 0 || d == 0) return st;
    if (!dw || (n > 0 && !dy)) return FNN_ERR_ARG;
    /* Threads own blocks of whole cache lines of columns (16 floats, 8 doubles) across every
     * row of dw, and each walks all n indices in order: every element of dw is the sum of its
     * terms for i = 0, 1, ..., n-1, added in that order whatever the thread count (no atomics,
     * no workspace, the same order as a serial loop), and repeated indices need no sorting.
     * The split is balanced whatever the index distribution (a frequent padding index costs
     * every thread the same). */
    const int64_t blk = 64 / (int64_t)sizeof(FNN_T);
    const int64_t nblk = (d + blk - 1) / blk;
    nt = fnn_threads_for((n + v) * d, FNN_EMB_MIN_ELEMS, nt);
    if (nt > nblk) nt = (int)nblk;
    FNN_PARALLEL_FOR(nt, t, nt, {
        const int64_t b1 = nblk * (t + 1) / nt;
        FNN_(embedding_bwd_cols)(n, v, d, nblk * t / nt * blk, b1 * blk < d ? b1 * blk : d, idx, dy, dw);
    });
    return FNN_OK;
}
