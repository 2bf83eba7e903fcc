/* Activations, bias gradient and elementwise product; included once per type by eltwise.c. */
#include "tmpl_types.h"

static inline FNN_T FNN_(sigmoid1)(FNN_T x) {
    /* Two branches so exp never overflows: exp(-|x|) <= 1. */
    if (x >= 0) return (FNN_T)1 / ((FNN_T)1 + FNN_EXP(-x));
    FNN_T e = FNN_EXP(x);
    return e / ((FNN_T)1 + e);
}

static int FNN_(act_fwd)(int act, int64_t n, FNN_T alpha, const FNN_T *x, FNN_T *y, int nt) {
    if (n < 0 || (n > 0 && (!x || !y))) return FNN_ERR_ARG;
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
    switch (act) {
    case FNN_ACT_LINEAR:
        if (x != y) {
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
            for (int64_t i = 0; i < n; i++) y[i] = x[i];
        }
        break;
    case FNN_ACT_RELU:
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
        break;
    case FNN_ACT_LEAKY_RELU:
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : alpha * x[i];
        break;
    case FNN_ACT_SIGMOID:
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t i = 0; i < n; i++) y[i] = FNN_(sigmoid1)(x[i]);
        break;
    case FNN_ACT_TANH:
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t i = 0; i < n; i++) y[i] = FNN_TANH(x[i]);
        break;
    default:
        return FNN_ERR_ARG;
    }
    return FNN_OK;
}

static int FNN_(act_bwd)(int act, int64_t n, FNN_T alpha, const FNN_T *y, const FNN_T *dy, FNN_T *dx,
                         int nt) {
    if (n < 0 || (n > 0 && (!y || !dy || !dx))) return FNN_ERR_ARG;
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
    switch (act) {
    case FNN_ACT_LINEAR:
        if (dx != dy) {
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
            for (int64_t i = 0; i < n; i++) dx[i] = dy[i];
        }
        break;
    case FNN_ACT_RELU:
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
        break;
    case FNN_ACT_LEAKY_RELU:
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0 ? dy[i] : alpha * dy[i];
        break;
    case FNN_ACT_SIGMOID:
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * ((FNN_T)1 - y[i]);
        break;
    case FNN_ACT_TANH:
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * ((FNN_T)1 - y[i] * y[i]);
        break;
    default:
        return FNN_ERR_ARG;
    }
    return FNN_OK;
}

static int FNN_(bias_grad)(int accumulate, int64_t m, int64_t n, const FNN_T *dy, FNN_T *db, int nt) {
    if (m < 0 || n < 0 || (n > 0 && !db) || (m > 0 && n > 0 && !dy)) return FNN_ERR_ARG;
    /* Threads split the columns; each column is summed over rows in order, so the result
     * does not depend on the thread count. */
    nt = fnn_threads_for(m * n, FNN_PAR_MIN_ELEMS, nt);
    if (nt > 1 && n < 64 * nt) nt = 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = 0, T = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
        /* Column ranges in multiples of 16 keep each thread's stores on its own cache lines. */
        int64_t blocks = (n + 15) / 16;
        int64_t j0 = (blocks * t / T) * 16, j1 = (blocks * (t + 1) / T) * 16;
        if (j1 > n) j1 = n;
        if (!accumulate)
            for (int64_t j = j0; j < j1; j++) db[j] = 0;
        for (int64_t i = 0; i < m; i++) {
            const FNN_T *row = dy + i * n;
#pragma omp simd
            for (int64_t j = j0; j < j1; j++) db[j] += row[j];
        }
    }
    return FNN_OK;
}

static int FNN_(mul)(int64_t n, const FNN_T *a, const FNN_T *b, FNN_T *out, int nt) {
    if (n < 0 || (n > 0 && (!a || !b || !out))) return FNN_ERR_ARG;
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
    return FNN_OK;
}
