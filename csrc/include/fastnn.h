/*
 * fastnn.h - the public C API of the fastnn kernels.
 *
 * Conventions (see shared/DESIGN.md):
 *   - names fnn_<op>[_fwd|_bwd]_<f32|f64>, written out literally;
 *   - argument order: flags, sizes, scalars, inputs, outputs, workspace, n_threads;
 *   - sizes and leading dimensions are int64_t, matrices are row-major;
 *   - every function returns FNN_OK (0) or a negative FNN_ERR_* status, never aborts,
 *     never prints, never allocates inside its hot loops;
 *   - n_threads <= 0 means 1; kernels keep small work serial.
 */
#ifndef FASTNN_H
#define FASTNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status ------------------------------------------------------------------------- */
#define FNN_OK 0
#define FNN_ERR_ARG (-1)     /* a size, leading dimension, flag or pointer is invalid */
#define FNN_ERR_NOMEM (-2)   /* a workspace could not be allocated */
#define FNN_ERR_ARCH (-3)    /* the requested kernel variant is not supported by this CPU */
#define FNN_ERR_LABEL (-4)   /* a class label is out of range */
const char *fnn_strerror(int status);

/* ---- CPU dispatch and threads ---------------------------------------------------------- */
#define FNN_ARCH_GENERIC 0
#define FNN_ARCH_AVX2 1
#define FNN_ARCH_AVX512 2
int fnn_arch_best(void);               /* newest variant this CPU (and OS) supports */
int fnn_arch_get(void);                /* variant in use */
int fnn_arch_set(int arch);            /* FNN_ERR_ARCH when the CPU lacks it */
const char *fnn_arch_name(int arch);
int fnn_openmp_enabled(void);          /* 1 when compiled with OpenMP */
int fnn_max_threads(void);             /* omp_get_max_threads() or 1 */

/* ---- GEMM ------------------------------------------------------------------------------ */
/* flags */
#define FNN_TRANS_A 1      /* op(A) = A^T: A is stored k x m */
#define FNN_TRANS_B 2      /* op(B) = B^T: B is stored n x k */
#define FNN_BIAS_ROW 4     /* bias has length m and is added to row i (default: length n, column j) */
#define FNN_EPI_RELU 8     /* apply max(0, .) after the bias */

/* C[m,n] = act(alpha * op(A) op(B) + beta * C + bias).
 * beta == 0 overwrites C without reading it (NaN in C does not propagate).
 * bias may be NULL. lda/ldb/ldc >= the row length of the stored matrix. */
int fnn_gemm_f32(int flags, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                 const float *a, int64_t lda, const float *b, int64_t ldb,
                 const float *bias, float *c, int64_t ldc, int n_threads);
int fnn_gemm_f64(int flags, int64_t m, int64_t n, int64_t k, double alpha, double beta,
                 const double *a, int64_t lda, const double *b, int64_t ldb,
                 const double *bias, double *c, int64_t ldc, int n_threads);

/* ---- bias ---------------------------------------------------------------------------- */
/* db[j] (+)= sum_i dy[i, j]; accumulate != 0 adds to db. Fixed-order reduction:
 * the result does not depend on n_threads. */
int fnn_bias_grad_f32(int accumulate, int64_t m, int64_t n, const float *dy, float *db, int n_threads);
int fnn_bias_grad_f64(int accumulate, int64_t m, int64_t n, const double *dy, double *db, int n_threads);

/* ---- activations (elementwise over n values; y may alias x, dx may alias dy) --------------- */
#define FNN_ACT_LINEAR 0
#define FNN_ACT_RELU 1
#define FNN_ACT_SIGMOID 2
#define FNN_ACT_TANH 3
#define FNN_ACT_LEAKY_RELU 4
/* y = f(x); alpha is the LeakyReLU slope (ignored otherwise). */
int fnn_act_fwd_f32(int act, int64_t n, float alpha, const float *x, float *y, int n_threads);
int fnn_act_fwd_f64(int act, int64_t n, double alpha, const double *x, double *y, int n_threads);
/* dx = dy * f'(x), computed from the saved output y (alpha >= 0, so y > 0 iff x > 0). */
int fnn_act_bwd_f32(int act, int64_t n, float alpha, const float *y, const float *dy, float *dx, int n_threads);
int fnn_act_bwd_f64(int act, int64_t n, double alpha, const double *y, const double *dy, double *dx, int n_threads);

/* ---- softmax and losses (rows of length k) ------------------------------------------------ */
/* y[i,:] = exp(x[i,:] - max) / sum */
int fnn_softmax_fwd_f32(int64_t m, int64_t k, const float *x, float *y, int n_threads);
int fnn_softmax_fwd_f64(int64_t m, int64_t k, const double *x, double *y, int n_threads);
/* dx[i,:] = y[i,:] * (dy[i,:] - <dy[i,:], y[i,:]>) */
int fnn_softmax_bwd_f32(int64_t m, int64_t k, const float *y, const float *dy, float *dx, int n_threads);
int fnn_softmax_bwd_f64(int64_t m, int64_t k, const double *y, const double *dy, double *dx, int n_threads);

/* Fused softmax + cross-entropy from logits z (m x k).
 * Targets: labels != NULL gives integer classes (m,), else onehot (m x k, any distribution).
 * loss_rows[i] = logsumexp(z_i) - <t_i, z_i>; *loss = mean_i loss_rows[i] (fixed-order sum).
 * grad (may be NULL) = (softmax(z) - t) * scale, prob (may be NULL) = softmax(z).
 * FNN_ERR_LABEL when a label is outside [0, k). */
int fnn_softmax_xent_f32(int64_t m, int64_t k, float scale, const float *z, const int64_t *labels,
                         const float *onehot, float *loss, float *grad, float *prob, int n_threads);
int fnn_softmax_xent_f64(int64_t m, int64_t k, double scale, const double *z, const int64_t *labels,
                         const double *onehot, double *loss, double *grad, double *prob, int n_threads);
/* Fused sigmoid + binary cross-entropy over n logits z with targets t in [0, 1]:
 * l = max(z,0) - z t + log1p(exp(-|z|)); *loss = mean; grad = (sigmoid(z) - t) * scale. */
int fnn_sigmoid_bce_f32(int64_t n, float scale, const float *z, const float *t, float *loss,
                        float *grad, float *prob, int n_threads);
int fnn_sigmoid_bce_f64(int64_t n, double scale, const double *z, const double *t, double *loss,
                        double *grad, double *prob, int n_threads);
/* Mean squared error: *loss = mean((y - t)^2), grad = 2 (y - t) * scale. */
int fnn_mse_f32(int64_t n, float scale, const float *y, const float *t, float *loss, float *grad, int n_threads);
int fnn_mse_f64(int64_t n, double scale, const double *y, const double *t, double *loss, double *grad, int n_threads);

/* ---- dropout -------------------------------------------------------------------------- */
/* Counter-based mask: element i is kept when u(seed, offset + i) >= rate, u uniform in [0,1)
 * from a 64-bit hash of (seed, offset + i); kept values are scaled by 1/(1-rate).
 * mask[i] = 0 or 1/(1-rate) (so backward is dx = dy * mask). Same mask for any n_threads
 * and for both dtypes (rate is double in both). 0 <= rate < 1. */
int fnn_dropout_fwd_f32(int64_t n, double rate, uint64_t seed, uint64_t offset, const float *x,
                        float *y, float *mask, int n_threads);
int fnn_dropout_fwd_f64(int64_t n, double rate, uint64_t seed, uint64_t offset, const double *x,
                        double *y, double *mask, int n_threads);
/* out[i] = a[i] * b[i] (dropout backward, and any elementwise product) */
int fnn_mul_f32(int64_t n, const float *a, const float *b, float *out, int n_threads);
int fnn_mul_f64(int64_t n, const double *a, const double *b, double *out, int n_threads);

/* ---- optimizers over one flat parameter buffer ------------------------------------------ */
/* torch.optim.SGD: g = grad + wd p; buf = momentum buf + g (buf = g on the first step,
 * first != 0); g = nesterov ? g + momentum buf : buf (when momentum != 0); p -= lr g. */
int fnn_sgd_step_f32(int nesterov, int first, int64_t n, float lr, float momentum, float weight_decay,
                     const float *grad, float *param, float *buf, int n_threads);
int fnn_sgd_step_f64(int nesterov, int first, int64_t n, double lr, double momentum, double weight_decay,
                     const double *grad, double *param, double *buf, int n_threads);
/* torch.optim.Adam at step t >= 1: g = grad + wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
int fnn_adam_step_f32(int64_t t, int64_t n, float lr, float beta1, float beta2, float eps,
                      float weight_decay, const float *grad, float *param, float *m, float *v, int n_threads);
int fnn_adam_step_f64(int64_t t, int64_t n, double lr, double beta1, double beta2, double eps,
                      double weight_decay, const double *grad, double *param, double *m, double *v,
                      int n_threads);

#ifdef __cplusplus
}
#endif
#endif /* FASTNN_H */
