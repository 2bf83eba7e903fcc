/* Softmax and fused losses: float and double from softmax_tmpl.h. */
#include <math.h>
#include "../core/internal.h"

#include "softmax_tmpl.h"
#define FNN_DOUBLE
#include "softmax_tmpl.h"
#undef FNN_DOUBLE

int fnn_softmax_fwd_f32(int64_t m, int64_t k, const float *x, float *y, int n_threads) {
    return softmax_fwd_f32(m, k, x, y, n_threads);
}
int fnn_softmax_fwd_f64(int64_t m, int64_t k, const double *x, double *y, int n_threads) {
    return softmax_fwd_f64(m, k, x, y, n_threads);
}
int fnn_softmax_bwd_f32(int64_t m, int64_t k, const float *y, const float *dy, float *dx, int n_threads) {
    return softmax_bwd_f32(m, k, y, dy, dx, n_threads);
}
int fnn_softmax_bwd_f64(int64_t m, int64_t k, const double *y, const double *dy, double *dx, int n_threads) {
    return softmax_bwd_f64(m, k, y, dy, dx, n_threads);
}
int fnn_softmax_xent_f32(int64_t m, int64_t k, float scale, const float *z, const int64_t *labels,
                         const float *onehot, const float *w, float *loss, float *grad, float *prob, int n_threads) {
    return softmax_xent_f32(m, k, scale, z, labels, onehot, w, loss, grad, prob, n_threads);
}
int fnn_softmax_xent_f64(int64_t m, int64_t k, double scale, const double *z, const int64_t *labels,
                         const double *onehot, const double *w, double *loss, double *grad, double *prob,
                         int n_threads) {
    return softmax_xent_f64(m, k, scale, z, labels, onehot, w, loss, grad, prob, n_threads);
}
int fnn_sigmoid_bce_f32(int64_t n, int64_t cols, float scale, const float *z, const float *t, const float *w,
                        float *loss, float *grad, float *prob, int n_threads) {
    return sigmoid_bce_f32(n, cols, scale, z, t, w, loss, grad, prob, n_threads);
}
int fnn_sigmoid_bce_f64(int64_t n, int64_t cols, double scale, const double *z, const double *t, const double *w,
                        double *loss, double *grad, double *prob, int n_threads) {
    return sigmoid_bce_f64(n, cols, scale, z, t, w, loss, grad, prob, n_threads);
}
int fnn_mse_f32(int64_t n, int64_t cols, float scale, const float *y, const float *t, const float *w, float *loss,
                float *grad, int n_threads) {
    return mse_f32(n, cols, scale, y, t, w, loss, grad, n_threads);
}
int fnn_mse_f64(int64_t n, int64_t cols, double scale, const double *y, const double *t, const double *w,
                double *loss, double *grad, int n_threads) {
    return mse_f64(n, cols, scale, y, t, w, loss, grad, n_threads);
}
