/* Optimizer updates over one flat parameter buffer; included once per type by optim.c. */
#include "tmpl_types.h"

static int FNN_(sgd_step)(int nesterov, int first, int64_t n, FNN_T lr, FNN_T momentum, FNN_T wd,
                          const FNN_T *grad, FNN_T *p, FNN_T *buf, int nt) {
    if (n < 0 || (n > 0 && (!grad || !p || (momentum != 0 && !buf)))) return FNN_ERR_ARG;
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
    if (momentum == 0) {
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t i = 0; i < n; i++) p[i] -= lr * (grad[i] + wd * p[i]);
        return FNN_OK;
    }
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < n; i++) {
        FNN_T g = grad[i] + wd * p[i];
        FNN_T b = first ? g : momentum * buf[i] + g;
        buf[i] = b;
        p[i] -= lr * (nesterov ? g + momentum * b : b);
    }
    return FNN_OK;
}

static int FNN_(adam_step)(int64_t t, int64_t n, FNN_T lr, FNN_T b1, FNN_T b2, FNN_T eps, FNN_T wd,
                           const FNN_T *grad, FNN_T *p, FNN_T *m, FNN_T *v, int nt) {
    if (t < 1 || n < 0 || (n > 0 && (!grad || !p || !m || !v))) return FNN_ERR_ARG;
    /* Bias corrections in double, as torch computes them from Python floats. */
    const double bc1 = 1.0 - pow((double)b1, (double)t), bc2 = 1.0 - pow((double)b2, (double)t);
    const FNN_T step = (FNN_T)((double)lr / bc1), rs2 = (FNN_T)(1.0 / sqrt(bc2));
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < n; i++) {
        FNN_T g = grad[i] + wd * p[i];
        FNN_T mi = b1 * m[i] + (1 - b1) * g;
        FNN_T vi = b2 * v[i] + (1 - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step * mi / (FNN_SQRT(vi) * rs2 + eps);
    }
    return FNN_OK;
}
