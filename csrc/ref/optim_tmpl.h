/* Optimizer updates over one flat parameter buffer; included once per type by optim.c.
 * The per-range loops are in optim_range_tmpl.h, compiled once per instruction set. */
#include "tmpl_types.h"

static int FNN_(sgd_step)(int nesterov, int first, int64_t n, FNN_T lr, FNN_T momentum, FNN_T wd,
                          const FNN_T *grad, FNN_T *p, FNN_T *buf, int nt) {
    if (n < 0 || (n > 0 && (!grad || !p || (momentum != 0 && !buf)))) return FNN_ERR_ARG;
    if (momentum == 0) buf = NULL;
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
    FNN_PARALLEL(nt, {
        int64_t i0, i1;
        fnn_omp_range(n, &i0, &i1);
        FNN_VARIANT_PICK(FNN_(sgd_range))(nesterov, first, i1 - i0, lr, momentum, wd, grad + i0, p + i0,
                                          buf ? buf + i0 : NULL);
    });
    return FNN_OK;
}

static int FNN_(adam_step)(int decoupled, int64_t t, int64_t n, FNN_T lr, FNN_T b1, FNN_T b2, FNN_T eps, FNN_T wd,
                           const FNN_T *grad, FNN_T *p, FNN_T *m, FNN_T *v, int nt) {
    if (t < 1 || n < 0 || (n > 0 && (!grad || !p || !m || !v))) return FNN_ERR_ARG;
    /* Bias corrections in double, as torch computes them from Python floats. */
    const double bc1 = 1.0 - pow((double)b1, (double)t), bc2 = 1.0 - pow((double)b2, (double)t);
    const FNN_T step = (FNN_T)((double)lr / bc1), rs2 = (FNN_T)(1.0 / sqrt(bc2));
    const FNN_T shrink = 1 - lr * wd;
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
    FNN_PARALLEL(nt, {
        int64_t i0, i1;
        fnn_omp_range(n, &i0, &i1);
        if (decoupled)
            FNN_VARIANT_PICK(FNN_(adamw_range))(i1 - i0, step, rs2, b1, b2, eps, shrink, grad + i0, p + i0, m + i0,
                                                v + i0);
        else
            FNN_VARIANT_PICK(FNN_(adam_range))(i1 - i0, step, rs2, b1, b2, eps, wd, grad + i0, p + i0, m + i0,
                                               v + i0);
    });
    return FNN_OK;
}

static int FNN_(rmsprop_step)(int centered, int64_t n, FNN_T lr, FNN_T rho, FNN_T momentum, FNN_T eps, FNN_T wd,
                              const FNN_T *grad, FNN_T *p, FNN_T *sq, FNN_T *ga, FNN_T *buf, int nt) {
    if (n < 0 || (n > 0 && (!grad || !p || !sq || (centered && !ga) || (momentum != 0 && !buf))))
        return FNN_ERR_ARG;
    if (!centered) ga = NULL;
    if (momentum == 0) buf = NULL;
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
    FNN_PARALLEL(nt, {
        int64_t i0, i1;
        fnn_omp_range(n, &i0, &i1);
        FNN_VARIANT_PICK(FNN_(rmsprop_range))(i1 - i0, lr, rho, momentum, eps, wd, grad + i0, p + i0, sq + i0,
                                              ga ? ga + i0 : NULL, buf ? buf + i0 : NULL);
    });
    return FNN_OK;
}

/* Weight penalties: g += l1 sign(w) + 2 l2 w over a chunk, returning l1 |w| + l2 w^2 summed. */
typedef struct {
    FNN_T l1, l2;
    const FNN_T *w;
    FNN_T *g;
} FNN_(penalty_args);

static double FNN_(penalty_chunk)(int64_t i0, int64_t i1, const void *ctx) {
    const FNN_(penalty_args) *a = ctx;
    const FNN_T l1 = a->l1, l2 = a->l2;
    double s1 = 0, s2 = 0;
    for (int64_t i = i0; i < i1; i++) {
        FNN_T w = a->w[i];
        FNN_T sign = (FNN_T)(w > 0) - (FNN_T)(w < 0);
        a->g[i] += l1 * sign + 2 * l2 * w;
        s1 += FNN_FABS(w);
        s2 += (double)w * w;
    }
    return (double)l1 * s1 + (double)l2 * s2;
}

static int FNN_(penalty)(int64_t n, FNN_T l1, FNN_T l2, const FNN_T *w, FNN_T *g, double *penalty, int nt) {
    if (n < 0 || !penalty || (n > 0 && (!w || !g))) return FNN_ERR_ARG;
    FNN_(penalty_args) a = {l1, l2, w, g};
    *penalty = fnn_fixed_order_sum(n, fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt), FNN_(penalty_chunk), &a);
    return FNN_OK;
}
