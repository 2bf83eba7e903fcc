/* Optimizer updates over one flat parameter buffer; included once per type by optim.c.
 * The per-range loops keep every branch outside the loop so each one vectorises. */
#include "tmpl_types.h"

static void FNN_(sgd_range)(int nesterov, int first, int64_t n, FNN_T lr, FNN_T mom, FNN_T wd,
                            const FNN_T *restrict grad, FNN_T *restrict p, FNN_T *restrict buf) {
    if (!buf) {
        for (int64_t i = 0; i < n; i++) p[i] -= lr * (grad[i] + wd * p[i]);
    } else if (first && nesterov) {
        for (int64_t i = 0; i < n; i++) {
            FNN_T g = grad[i] + wd * p[i];
            buf[i] = g;
            p[i] -= lr * (g + mom * g);
        }
    } else if (first) {
        for (int64_t i = 0; i < n; i++) {
            FNN_T g = grad[i] + wd * p[i];
            buf[i] = g;
            p[i] -= lr * g;
        }
    } else if (nesterov) {
        for (int64_t i = 0; i < n; i++) {
            FNN_T g = grad[i] + wd * p[i];
            FNN_T b = mom * buf[i] + g;
            buf[i] = b;
            p[i] -= lr * (g + mom * b);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            FNN_T b = mom * buf[i] + (grad[i] + wd * p[i]);
            buf[i] = b;
            p[i] -= lr * b;
        }
    }
}

static int FNN_(sgd_step)(int nesterov, int first, int64_t n, FNN_T lr, FNN_T momentum, FNN_T wd,
                          const FNN_T *grad, FNN_T *p, FNN_T *buf, int nt) {
    if (n < 0 || (n > 0 && (!grad || !p || (momentum != 0 && !buf)))) return FNN_ERR_ARG;
    if (momentum == 0) buf = NULL;
    nt = fnn_threads_for(n, FNN_PAR_MIN_ELEMS, nt);
    FNN_PARALLEL(nt, {
        int64_t i0, i1;
        fnn_omp_range(n, &i0, &i1);
        FNN_(sgd_range)(nesterov, first, i1 - i0, lr, momentum, wd, grad + i0, p + i0, buf ? buf + i0 : NULL);
    });
    return FNN_OK;
}

static void FNN_(adam_range)(int64_t n, FNN_T step, FNN_T rs2, FNN_T b1, FNN_T b2, FNN_T eps, FNN_T wd,
                             const FNN_T *restrict grad, FNN_T *restrict p, FNN_T *restrict m, FNN_T *restrict v) {
    for (int64_t i = 0; i < n; i++) {
        FNN_T g = grad[i] + wd * p[i];
        FNN_T mi = b1 * m[i] + (1 - b1) * g;
        FNN_T vi = b2 * v[i] + (1 - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step * mi / (FNN_SQRT(vi) * rs2 + eps);
    }
}

/* AdamW: the decay scales the parameter before the Adam step and stays out of the moments
 * (torch.optim.AdamW); shrink = 1 - lr * weight_decay. */
static void FNN_(adamw_range)(int64_t n, FNN_T step, FNN_T rs2, FNN_T b1, FNN_T b2, FNN_T eps, FNN_T shrink,
                              const FNN_T *restrict grad, FNN_T *restrict p, FNN_T *restrict m, FNN_T *restrict v) {
    for (int64_t i = 0; i < n; i++) {
        FNN_T g = grad[i];
        FNN_T mi = b1 * m[i] + (1 - b1) * g;
        FNN_T vi = b2 * v[i] + (1 - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * shrink - step * mi / (FNN_SQRT(vi) * rs2 + eps);
    }
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
            FNN_(adamw_range)(i1 - i0, step, rs2, b1, b2, eps, shrink, grad + i0, p + i0, m + i0, v + i0);
        else
            FNN_(adam_range)(i1 - i0, step, rs2, b1, b2, eps, wd, grad + i0, p + i0, m + i0, v + i0);
    });
    return FNN_OK;
}

/* RMSprop as torch.optim.RMSprop: sq = rho sq + (1 - rho) g^2 (g with the L2 term), centered
 * subtracts the square of the running mean gradient ga; d = g / (sqrt(.) + eps); with momentum
 * buf = momentum buf + d and the step is lr * buf. ga is NULL unless centered, buf NULL unless
 * momentum > 0: the four combinations are separate loops so each vectorises. */
static void FNN_(rmsprop_range)(int64_t n, FNN_T lr, FNN_T rho, FNN_T mom, FNN_T eps, FNN_T wd,
                                const FNN_T *restrict grad, FNN_T *restrict p, FNN_T *restrict sq,
                                FNN_T *restrict ga, FNN_T *restrict buf) {
#define FNN_RMS_BODY(CENTER, STEP)                                                                    \
    for (int64_t i = 0; i < n; i++) {                                                              \
        FNN_T g = grad[i] + wd * p[i];                                                             \
        FNN_T s = rho * sq[i] + (1 - rho) * g * g;                                                 \
        sq[i] = s;                                                                                 \
        CENTER                                                                                     \
        FNN_T d = g / (FNN_SQRT(s) + eps);                                                         \
        STEP                                                                                       \
    }
    if (ga && buf) {
        FNN_RMS_BODY(FNN_T a = ga[i] + (1 - rho) * (g - ga[i]); ga[i] = a; s -= a * a;,
                     FNN_T b = mom * buf[i] + d; buf[i] = b; p[i] -= lr * b;)
    } else if (ga) {
        FNN_RMS_BODY(FNN_T a = ga[i] + (1 - rho) * (g - ga[i]); ga[i] = a; s -= a * a;, p[i] -= lr * d;)
    } else if (buf) {
        FNN_RMS_BODY(, FNN_T b = mom * buf[i] + d; buf[i] = b; p[i] -= lr * b;)
    } else {
        FNN_RMS_BODY(, p[i] -= lr * d;)
    }
#undef FNN_RMS_BODY
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
        FNN_(rmsprop_range)(i1 - i0, lr, rho, momentum, eps, wd, grad + i0, p + i0, sq + i0, ga ? ga + i0 : NULL,
                            buf ? buf + i0 : NULL);
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
