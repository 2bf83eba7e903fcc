/* Softmax and the fused losses; included once per type by softmax.c. */
#include "tmpl_types.h"

static void FNN_(softmax_row)(int64_t k, const FNN_T *x, FNN_T *y) {
    FNN_T mx = x[0];
    for (int64_t j = 1; j < k; j++) mx = x[j] > mx ? x[j] : mx;
    FNN_T s = 0;
    for (int64_t j = 0; j < k; j++) {
        y[j] = FNN_EXP(x[j] - mx);
        s += y[j];
    }
    FNN_T inv = (FNN_T)1 / s;
    for (int64_t j = 0; j < k; j++) y[j] *= inv;
}

static int FNN_(softmax_fwd)(int64_t m, int64_t k, const FNN_T *x, FNN_T *y, int nt) {
    if (m < 0 || k < 0 || (m > 0 && k > 0 && (!x || !y))) return FNN_ERR_ARG;
    if (k == 0) return FNN_OK;
    nt = fnn_threads_for(m * k, FNN_PAR_MIN_ELEMS / 4, nt);
    FNN_PARALLEL_FOR(nt, i, m, FNN_(softmax_row)(k, x + i * k, y + i * k););
    return FNN_OK;
}

static int FNN_(softmax_bwd)(int64_t m, int64_t k, const FNN_T *y, const FNN_T *dy, FNN_T *dx, int nt) {
    if (m < 0 || k < 0 || (m > 0 && k > 0 && (!y || !dy || !dx))) return FNN_ERR_ARG;
    nt = fnn_threads_for(m * k, FNN_PAR_MIN_ELEMS / 4, nt);
    FNN_PARALLEL_FOR(nt, i, m, {
        const FNN_T *yi = y + i * k, *gi = dy + i * k;
        FNN_T *oi = dx + i * k;
        FNN_T dot = 0;
        for (int64_t j = 0; j < k; j++) dot += yi[j] * gi[j];
        for (int64_t j = 0; j < k; j++) oi[j] = yi[j] * (gi[j] - dot);
    });
    return FNN_OK;
}

/* One row of softmax cross-entropy; returns the row loss (accumulated in double). */
static double FNN_(xent_row)(int64_t k, FNN_T scale, const FNN_T *z, int64_t label, const FNN_T *t,
                             FNN_T *g, FNN_T *p) {
    FNN_T mx = z[0];
    for (int64_t j = 1; j < k; j++) mx = z[j] > mx ? z[j] : mx;
    FNN_T s = 0;
    for (int64_t j = 0; j < k; j++) s += FNN_EXP(z[j] - mx);
    FNN_T lse = mx + FNN_LOG(s), inv = (FNN_T)1 / s;
    double loss;
    if (t) {
        double tz = 0, tsum = 0;
        for (int64_t j = 0; j < k; j++) {
            tz += (double)t[j] * z[j];
            tsum += t[j];
        }
        loss = tsum * lse - tz;
    } else {
        loss = (double)lse - z[label];
    }
    if (g || p) {
        for (int64_t j = 0; j < k; j++) {
            FNN_T pj = FNN_EXP(z[j] - mx) * inv;
            if (p) p[j] = pj;
            if (g) g[j] = (pj - (t ? t[j] : (FNN_T)(j == label))) * scale;
        }
    }
    return loss;
}

/* Arguments of one loss call, handed to its chunk function. w (may be NULL): one weight per
 * sample, a sample being a row of k (softmax) or `cols` consecutive elements (bce, mse). */
typedef struct {
    int64_t k, cols;
    FNN_T scale;
    const FNN_T *z, *t, *w;
    const int64_t *labels;
    FNN_T *grad, *prob;
} FNN_(loss_args);

static double FNN_(xent_chunk)(int64_t i0, int64_t i1, const void *ctx) {
    const FNN_(loss_args) *a = ctx;
    const int64_t k = a->k;
    double s = 0;
    for (int64_t i = i0; i < i1; i++) {
        /* A weight scales the row's loss and its gradient (1 leaves both bit for bit as they were). */
        const FNN_T wi = a->w ? a->w[i] : (FNN_T)1;
        s += (double)wi * FNN_(xent_row)(k, a->scale * wi, a->z + i * k, a->labels ? a->labels[i] : 0,
                                         a->t ? a->t + i * k : NULL, a->grad ? a->grad + i * k : NULL,
                                         a->prob ? a->prob + i * k : NULL);
    }
    return s;
}

static int FNN_(softmax_xent)(int64_t m, int64_t k, FNN_T scale, const FNN_T *z, const int64_t *labels,
                              const FNN_T *onehot, const FNN_T *w, FNN_T *loss, FNN_T *grad, FNN_T *prob, int nt) {
    if (m < 0 || k < 1 || !loss || (m > 0 && (!z || (!labels && !onehot)))) return FNN_ERR_ARG;
    if (labels)
        for (int64_t i = 0; i < m; i++)
            if (labels[i] < 0 || labels[i] >= k) return FNN_ERR_LABEL;
    FNN_(loss_args) a = {k, 1, scale, z, onehot, w, labels, grad, prob};
    double total = fnn_fixed_order_sum(m, fnn_threads_for(m * k, FNN_PAR_MIN_ELEMS / 8, nt), FNN_(xent_chunk), &a);
    *loss = m > 0 ? (FNN_T)(total / (double)m) : 0;
    return FNN_OK;
}

static double FNN_(bce_chunk)(int64_t i0, int64_t i1, const void *ctx) {
    const FNN_(loss_args) *a = ctx;
    double s = 0;
    for (int64_t i = i0; i < i1; i++) {
        FNN_T x = a->z[i], t = a->t[i], wi = a->w ? a->w[i / a->cols] : (FNN_T)1;
        /* log(1 + exp(-|x|)) never overflows; max(x,0) - x t completes the stable form. */
        FNN_T e = FNN_EXP(-FNN_FABS(x));
        s += (double)wi * (double)((x > 0 ? x : 0) - x * t + FNN_LOG1P(e));
        FNN_T p = x >= 0 ? (FNN_T)1 / ((FNN_T)1 + e) : e / ((FNN_T)1 + e);
        if (a->prob) a->prob[i] = p;
        if (a->grad) a->grad[i] = (p - t) * (a->scale * wi);
    }
    return s;
}

/* Weights come one per `cols` elements: cols must divide n. */
static int FNN_(weights_ok)(int64_t n, int64_t cols, const FNN_T *w) {
    return cols >= 1 && (!w || n % cols == 0);
}

static int FNN_(sigmoid_bce)(int64_t n, int64_t cols, FNN_T scale, const FNN_T *z, const FNN_T *t, const FNN_T *w,
                             FNN_T *loss, FNN_T *grad, FNN_T *prob, int nt) {
    if (n < 0 || !loss || !FNN_(weights_ok)(n, cols, w) || (n > 0 && (!z || !t))) return FNN_ERR_ARG;
    FNN_(loss_args) a = {1, cols, scale, z, t, w, NULL, grad, prob};
    double total = fnn_fixed_order_sum(n, fnn_threads_for(n, FNN_PAR_MIN_ELEMS / 8, nt), FNN_(bce_chunk), &a);
    *loss = n > 0 ? (FNN_T)(total / (double)n) : 0;
    return FNN_OK;
}

static double FNN_(mse_chunk)(int64_t i0, int64_t i1, const void *ctx) {
    const FNN_(loss_args) *a = ctx;
    double s = 0;
    if (!a->w) {   /* the common case keeps its branch-free, vectorisable loop */
        for (int64_t i = i0; i < i1; i++) {
            FNN_T d = a->z[i] - a->t[i];
            s += (double)d * d;
            if (a->grad) a->grad[i] = 2 * d * a->scale;
        }
        return s;
    }
    for (int64_t i = i0; i < i1; i++) {
        FNN_T d = a->z[i] - a->t[i], wi = a->w[i / a->cols];
        s += (double)wi * ((double)d * d);
        if (a->grad) a->grad[i] = 2 * d * (a->scale * wi);
    }
    return s;
}

static int FNN_(mse)(int64_t n, int64_t cols, FNN_T scale, const FNN_T *y, const FNN_T *t, const FNN_T *w,
                     FNN_T *loss, FNN_T *grad, int nt) {
    if (n < 0 || !loss || !FNN_(weights_ok)(n, cols, w) || (n > 0 && (!y || !t))) return FNN_ERR_ARG;
    FNN_(loss_args) a = {1, cols, scale, y, t, w, NULL, grad, NULL};
    double total = fnn_fixed_order_sum(n, fnn_threads_for(n, FNN_PAR_MIN_ELEMS / 2, nt), FNN_(mse_chunk), &a);
    *loss = n > 0 ? (FNN_T)(total / (double)n) : 0;
    return FNN_OK;
}
