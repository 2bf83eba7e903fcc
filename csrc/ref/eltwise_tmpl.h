/* Activations, bias gradient and elementwise product; included once per type by eltwise.c.
 * Each op is a plain serial loop over a range (which the compiler vectorises; loads are
 * unconditional so it may) driven by one OpenMP region that hands each thread its range. */
#include "tmpl_types.h"

static inline FNN_T FNN_(sigmoid1)(FNN_T x) {
    /* Two branches so exp never overflows: exp(-|x|) <= 1. */
    FNN_T e = FNN_EXP(-FNN_FABS(x));
    FNN_T r = (FNN_T)1 / ((FNN_T)1 + e);
    return x >= 0 ? r : e * r;
}

static void FNN_(act_fwd_range)(int act, int64_t n, FNN_T alpha, const FNN_T *restrict x, FNN_T *restrict y) {
    switch (act) {
    case FNN_ACT_LINEAR:
        for (int64_t i = 0; i < n; i++) y[i] = x[i];
        break;
    case FNN_ACT_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0 ? 0 : x[i]; /* NaN stays NaN, as the GEMM epilogue */
        break;
    case FNN_ACT_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) {
            FNN_T v = x[i];
            y[i] = v > 0 ? v : alpha * v;
        }
        break;
    case FNN_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) y[i] = FNN_(sigmoid1)(x[i]);
        break;
    case FNN_ACT_TANH:
        for (int64_t i = 0; i < n; i++) y[i] = FNN_TANH(x[i]);
        break;
    }
}

/* In place (y == x) needs the non-restrict twin of the loops above; only linear and relu
 * are applied in place on hot paths, so the others go through a small stack tile. */
static void FNN_(act_fwd_inplace)(int act, int64_t n, FNN_T alpha, FNN_T *x) {
    if (act == FNN_ACT_RELU) {
        for (int64_t i = 0; i < n; i++) x[i] = x[i] < 0 ? 0 : x[i];
        return;
    }
    FNN_T tile[256];
    for (int64_t i = 0; i < n; i += 256) {
        int64_t m = n - i < 256 ? n - i : 256;
        FNN_(act_fwd_range)(act, m, alpha, x + i, tile);
        for (int64_t j = 0; j < m; j++) x[i + j] = tile[j];
    }
}

static int FNN_(act_fwd)(int act, int64_t n, FNN_T alpha, const FNN_T *x, FNN_T *y, int nt) {
    if (n < 0 || (n > 0 && (!x || !y)) || act < FNN_ACT_LINEAR || act > FNN_ACT_LEAKY_RELU) return FNN_ERR_ARG;
    if (act == FNN_ACT_LINEAR && x == y) return FNN_OK;
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
    FNN_PARALLEL(nt, {
        int64_t i0, i1;
        fnn_omp_range(n, &i0, &i1);
        if (x == y)
            FNN_(act_fwd_inplace)(act, i1 - i0, alpha, y + i0);
        else
            FNN_(act_fwd_range)(act, i1 - i0, alpha, x + i0, y + i0);
    });
    return FNN_OK;
}

static void FNN_(act_bwd_range)(int act, int64_t n, FNN_T alpha, const FNN_T *y, const FNN_T *dy, FNN_T *dx) {
    switch (act) {
    case FNN_ACT_LINEAR:
        if (dx != dy)
            for (int64_t i = 0; i < n; i++) dx[i] = dy[i];
        break;
    case FNN_ACT_RELU:
        for (int64_t i = 0; i < n; i++) {
            FNN_T g = dy[i];
            dx[i] = y[i] > 0 ? g : 0;
        }
        break;
    case FNN_ACT_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) {
            FNN_T g = dy[i];
            dx[i] = y[i] > 0 ? g : alpha * g;
        }
        break;
    case FNN_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * ((FNN_T)1 - y[i]);
        break;
    case FNN_ACT_TANH:
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * ((FNN_T)1 - y[i] * y[i]);
        break;
    }
}

static int FNN_(act_bwd)(int act, int64_t n, FNN_T alpha, const FNN_T *y, const FNN_T *dy, FNN_T *dx,
                         int nt) {
    if (n < 0 || (n > 0 && (!y || !dy || !dx)) || act < FNN_ACT_LINEAR || act > FNN_ACT_LEAKY_RELU)
        return FNN_ERR_ARG;
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
    FNN_PARALLEL(nt, {
        int64_t i0, i1;
        fnn_omp_range(n, &i0, &i1);
        FNN_(act_bwd_range)(act, i1 - i0, alpha, y + i0, dy + i0, dx + i0);
    });
    return FNN_OK;
}

static void FNN_(colsum_range)(int accumulate, int64_t m, int64_t n, int64_t j0, int64_t j1,
                               const FNN_T *restrict dy, FNN_T *restrict db) {
    if (!accumulate)
        for (int64_t j = j0; j < j1; j++) db[j] = 0;
    for (int64_t i = 0; i < m; i++) {
        const FNN_T *row = dy + i * n;
        for (int64_t j = j0; j < j1; j++) db[j] += row[j];
    }
}

static int FNN_(bias_grad)(int accumulate, int64_t m, int64_t n, const FNN_T *dy, FNN_T *db, int nt) {
    if (m < 0 || n < 0 || (n > 0 && !db) || (m > 0 && n > 0 && !dy)) return FNN_ERR_ARG;
    /* Threads split the columns; each column is summed over rows in order, so the result
     * does not depend on the thread count. */
    nt = fnn_threads_for(m * n, FNN_PAR_MIN_ELEMS, nt);
    if (nt > 1 && n < 64 * nt) nt = 1;
    FNN_PARALLEL(nt, {
        int64_t j0, j1;
        fnn_omp_range(n, &j0, &j1);
        FNN_(colsum_range)(accumulate, m, n, j0, j1, dy, db);
    });
    return FNN_OK;
}

static void FNN_(mul_range)(int64_t n, const FNN_T *a, const FNN_T *b, FNN_T *out) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

static int FNN_(mul)(int64_t n, const FNN_T *a, const FNN_T *b, FNN_T *out, int nt) {
    if (n < 0 || (n > 0 && (!a || !b || !out))) return FNN_ERR_ARG;
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
    FNN_PARALLEL(nt, {
        int64_t i0, i1;
        fnn_omp_range(n, &i0, &i1);
        FNN_(mul_range)(i1 - i0, a + i0, b + i0, out + i0);
    });
    return FNN_OK;
}
