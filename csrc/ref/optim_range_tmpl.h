/* Optimizer updates over one flat parameter range, once per instruction set (isa_variants.h)
 * and type; optim_tmpl.h runs them over threads. Every branch stays outside the loops so each
 * one vectorises. */
#include "tmpl_types.h"

static FNN_VARIANT_TARGET void
FNN_VARIANT(FNN_(sgd_range))(int nesterov, int first, int64_t n, FNN_T lr, FNN_T mom, FNN_T wd,
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

static FNN_VARIANT_TARGET void
FNN_VARIANT(FNN_(adam_range))(int64_t n, FNN_T step, FNN_T rs2, FNN_T b1, FNN_T b2, FNN_T eps, FNN_T wd,
                              const FNN_T *restrict grad, FNN_T *restrict p, FNN_T *restrict m,
                              FNN_T *restrict v) {
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
static FNN_VARIANT_TARGET void
FNN_VARIANT(FNN_(adamw_range))(int64_t n, FNN_T step, FNN_T rs2, FNN_T b1, FNN_T b2, FNN_T eps, FNN_T shrink,
                               const FNN_T *restrict grad, FNN_T *restrict p, FNN_T *restrict m,
                               FNN_T *restrict v) {
    for (int64_t i = 0; i < n; i++) {
        FNN_T g = grad[i];
        FNN_T mi = b1 * m[i] + (1 - b1) * g;
        FNN_T vi = b2 * v[i] + (1 - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * shrink - step * mi / (FNN_SQRT(vi) * rs2 + eps);
    }
}

/* RMSprop as torch.optim.RMSprop: sq = rho sq + (1 - rho) g^2 (g with the L2 term), centered
 * subtracts the square of the running mean gradient ga; d = g / (sqrt(.) + eps); with momentum
 * buf = momentum buf + d and the step is lr * buf. ga is NULL unless centered, buf NULL unless
 * momentum > 0: the four combinations are separate loops so each vectorises. */
static FNN_VARIANT_TARGET void
FNN_VARIANT(FNN_(rmsprop_range))(int64_t n, FNN_T lr, FNN_T rho, FNN_T mom, FNN_T eps, FNN_T wd,
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
