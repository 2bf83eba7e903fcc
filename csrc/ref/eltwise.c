/* Activations, bias gradient, elementwise product: float and double from eltwise_tmpl.h. */
#include <math.h>
#include "../core/internal.h"

#include "eltwise_tmpl.h"
#define FNN_DOUBLE
#include "eltwise_tmpl.h"
#undef FNN_DOUBLE

int fnn_act_fwd_f32(int act, int64_t n, float alpha, const float *x, float *y, int n_threads) {
    return act_fwd_f32(act, n, alpha, x, y, n_threads);
}
int fnn_act_fwd_f64(int act, int64_t n, double alpha, const double *x, double *y, int n_threads) {
    return act_fwd_f64(act, n, alpha, x, y, n_threads);
}
int fnn_act_bwd_f32(int act, int64_t n, float alpha, const float *y, const float *dy, float *dx, int n_threads) {
    return act_bwd_f32(act, n, alpha, y, dy, dx, n_threads);
}
int fnn_act_bwd_f64(int act, int64_t n, double alpha, const double *y, const double *dy, double *dx,
                    int n_threads) {
    return act_bwd_f64(act, n, alpha, y, dy, dx, n_threads);
}
int fnn_bias_grad_f32(int accumulate, int64_t m, int64_t n, const float *dy, float *db, int n_threads) {
    return bias_grad_f32(accumulate, m, n, dy, db, n_threads);
}
int fnn_bias_grad_f64(int accumulate, int64_t m, int64_t n, const double *dy, double *db, int n_threads) {
    return bias_grad_f64(accumulate, m, n, dy, db, n_threads);
}
int fnn_mul_f32(int64_t n, const float *a, const float *b, float *out, int n_threads) {
    return mul_f32(n, a, b, out, n_threads);
}
int fnn_mul_f64(int64_t n, const double *a, const double *b, double *out, int n_threads) {
    return mul_f64(n, a, b, out, n_threads);
}
