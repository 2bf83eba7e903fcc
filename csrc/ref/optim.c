/* SGD, Adam/AdamW and RMSprop updates and weight penalties: float and double from optim_tmpl.h,
 * the update loops once per instruction set (isa_variants.h): Adam's and RMSprop's square roots
 * and divisions run 3-5x faster in 512-bit vectors than in the baseline's SSE2. */
#include <math.h>
#include "../core/internal.h"

#define FNN_VARIANTS_TMPL "optim_range_tmpl.h"
#include "isa_variants.h"
#include "optim_tmpl.h"
#define FNN_DOUBLE
#include "isa_variants.h"
#include "optim_tmpl.h"
#undef FNN_DOUBLE

int fnn_sgd_step_f32(int nesterov, int first, int64_t n, float lr, float momentum, float weight_decay,
                     const float *grad, float *param, float *buf, int n_threads) {
    return sgd_step_f32(nesterov, first, n, lr, momentum, weight_decay, grad, param, buf, n_threads);
}
int fnn_sgd_step_f64(int nesterov, int first, int64_t n, double lr, double momentum, double weight_decay,
                     const double *grad, double *param, double *buf, int n_threads) {
    return sgd_step_f64(nesterov, first, n, lr, momentum, weight_decay, grad, param, buf, n_threads);
}
int fnn_adam_step_f32(int decoupled, int64_t t, int64_t n, float lr, float beta1, float beta2, float eps,
                      float weight_decay, const float *grad, float *param, float *m, float *v, int n_threads) {
    return adam_step_f32(decoupled, t, n, lr, beta1, beta2, eps, weight_decay, grad, param, m, v, n_threads);
}
int fnn_adam_step_f64(int decoupled, int64_t t, int64_t n, double lr, double beta1, double beta2, double eps,
                      double weight_decay, const double *grad, double *param, double *m, double *v,
                      int n_threads) {
    return adam_step_f64(decoupled, t, n, lr, beta1, beta2, eps, weight_decay, grad, param, m, v, n_threads);
}
int fnn_rmsprop_step_f32(int centered, int64_t n, float lr, float rho, float momentum, float eps,
                         float weight_decay, const float *grad, float *param, float *sq, float *grad_avg,
                         float *buf, int n_threads) {
    return rmsprop_step_f32(centered, n, lr, rho, momentum, eps, weight_decay, grad, param, sq, grad_avg, buf,
                            n_threads);
}
int fnn_rmsprop_step_f64(int centered, int64_t n, double lr, double rho, double momentum, double eps,
                         double weight_decay, const double *grad, double *param, double *sq, double *grad_avg,
                         double *buf, int n_threads) {
    return rmsprop_step_f64(centered, n, lr, rho, momentum, eps, weight_decay, grad, param, sq, grad_avg, buf,
                            n_threads);
}
int fnn_penalty_f32(int64_t n, float l1, float l2, const float *w, float *grad, double *penalty, int n_threads) {
    return penalty_f32(n, l1, l2, w, grad, penalty, n_threads);
}
int fnn_penalty_f64(int64_t n, double l1, double l2, const double *w, double *grad, double *penalty,
                    int n_threads) {
    return penalty_f64(n, l1, l2, w, grad, penalty, n_threads);
}
