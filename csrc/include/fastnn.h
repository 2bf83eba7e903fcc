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
/* Once per process, before the first threaded kernel: makes the OpenMP pool survive fork()
 * (csrc/core/threads.c). Idempotent and thread-safe. */
int fnn_threads_init(void);
/* 0 only in a child forked from a threaded parent whose OpenMP runtime could not release its
 * pool (no omp_pause_resource_all): there kernels must be called with n_threads = 1. */
int fnn_threads_usable(void);

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
 * loss_i = logsumexp(z_i) - <t_i, z_i>; *loss = mean_i w_i loss_i (fixed-order sum; w may be
 * NULL: all 1). grad (may be NULL) = w_i (softmax(z) - t) * scale, prob (may be NULL) = softmax(z).
 * FNN_ERR_LABEL when a label is outside [0, k). */
int fnn_softmax_xent_f32(int64_t m, int64_t k, float scale, const float *z, const int64_t *labels,
                         const float *onehot, const float *w, float *loss, float *grad, float *prob, int n_threads);
int fnn_softmax_xent_f64(int64_t m, int64_t k, double scale, const double *z, const int64_t *labels,
                         const double *onehot, const double *w, double *loss, double *grad, double *prob,
                         int n_threads);
/* Fused sigmoid + binary cross-entropy over n logits z with targets t in [0, 1]:
 * l = max(z,0) - z t + log1p(exp(-|z|)); *loss = mean of w l; grad = w (sigmoid(z) - t) * scale.
 * w (may be NULL) holds one weight per sample of `cols` consecutive elements (cols divides n). */
int fnn_sigmoid_bce_f32(int64_t n, int64_t cols, float scale, const float *z, const float *t, const float *w,
                        float *loss, float *grad, float *prob, int n_threads);
int fnn_sigmoid_bce_f64(int64_t n, int64_t cols, double scale, const double *z, const double *t, const double *w,
                        double *loss, double *grad, double *prob, int n_threads);
/* Mean squared error: *loss = mean(w (y - t)^2), grad = 2 w (y - t) * scale; w as for the BCE. */
int fnn_mse_f32(int64_t n, int64_t cols, float scale, const float *y, const float *t, const float *w, float *loss,
                float *grad, int n_threads);
int fnn_mse_f64(int64_t n, int64_t cols, double scale, const double *y, const double *t, const double *w,
                double *loss, double *grad, int n_threads);

/* ---- dropout -------------------------------------------------------------------------- */
/* Counter-based mask: element i is kept when u(seed, offset + i) >= rate * 2^24, where u is the
 * top 24 bits of h = mix32(mix32(lo32(c) ^ k0) ^ hi32(c) ^ k1), c = offset + i, (k1:k0) =
 * splitmix64(seed) and mix32 Wellons' lowbias32; kept values are scaled by 1/(1-rate).
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
 * p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 * decoupled != 0: torch.optim.AdamW, g = grad and p is first scaled by (1 - lr wd). */
int fnn_adam_step_f32(int decoupled, int64_t t, int64_t n, float lr, float beta1, float beta2, float eps,
                      float weight_decay, const float *grad, float *param, float *m, float *v, int n_threads);
int fnn_adam_step_f64(int decoupled, int64_t t, int64_t n, double lr, double beta1, double beta2, double eps,
                      double weight_decay, const double *grad, double *param, double *m, double *v,
                      int n_threads);
/* torch.optim.RMSprop(alpha=rho): g = grad + wd p; sq = rho sq + (1-rho) g^2; centered:
 * grad_avg += (1-rho) (g - grad_avg), den = sqrt(sq - grad_avg^2) + eps, else den = sqrt(sq) + eps;
 * momentum > 0: buf = momentum buf + g / den, p -= lr buf; else p -= lr g / den.
 * grad_avg may be NULL unless centered, buf unless momentum > 0. */
int fnn_rmsprop_step_f32(int centered, int64_t n, float lr, float rho, float momentum, float eps,
                         float weight_decay, const float *grad, float *param, float *sq, float *grad_avg,
                         float *buf, int n_threads);
int fnn_rmsprop_step_f64(int centered, int64_t n, double lr, double rho, double momentum, double eps,
                         double weight_decay, const double *grad, double *param, double *sq, double *grad_avg,
                         double *buf, int n_threads);

/* Weight penalties (kernel regularizers), gradient and value in one pass over n weights:
 * grad += l1 sign(w) + 2 l2 w; *penalty = l1 sum |w| + l2 sum w^2 (fixed-order sum). */
int fnn_penalty_f32(int64_t n, float l1, float l2, const float *w, float *grad, double *penalty, int n_threads);
int fnn_penalty_f64(int64_t n, double l1, double l2, const double *w, double *grad, double *penalty,
                    int n_threads);

/* ---- convolution and pooling (NCHW, row-major) -------------------------------------------- */
/* Geometry of a 2-D convolution: x (n, c, h, w), weights (f, c, kh, kw), y (n, f, oh, ow) with
 * oh = (h + pad_t + pad_b - kh) / sh + 1 and ow = (w + pad_l + pad_r - kw) / sw + 1 (floor);
 * the padding is zeros. All fields >= 1 except the pads (>= 0); h + pad_t + pad_b >= kh. */
typedef struct {
    int64_t n, c, h, w;        /* input batch, channels, height, width */
    int64_t f, kh, kw;         /* filters and kernel size */
    int64_t sh, sw;            /* strides */
    int64_t pad_t, pad_b, pad_l, pad_r;
} fnn_conv2d_shape;

/* Elements (of the kernel's dtype) of the workspace fnn_conv2d_fwd_* (backward == 0) or
 * fnn_conv2d_bwd_* (backward != 0) wants for this shape and n_threads; negative FNN_ERR_ARG for
 * an invalid shape. It does not grow with the batch: per thread (at most n_threads) one column
 * tile of about 64Ki elements (at least one output row's c*kh*kw x ow), the matching (f x tile)
 * block of y or dy and one zero-padded image (x and, backward, dx); for backward also W^T and at
 * most 15 partial weight gradients (f*c*kh*kw + f each); forward with stride 1 also the weights
 * (f*c*kh*kw, the bf16 kernel's k-pairs). */
int64_t fnn_conv2d_workspace(int backward, const fnn_conv2d_shape *s, int n_threads);

/* y[i,o,p,q] = act(b[o] + sum_{c,u,v} w[o,c,u,v] x[i,c, p*sh+u-pad_t, q*sw+v-pad_l])  (cross-
 * correlation, as torch.nn.functional.conv2d); b may be NULL; flags: FNN_EPI_RELU or 0.
 * ws: ws_len elements (fnn_conv2d_workspace(0, ...)); a smaller one (>= one tile) only costs threads. */
int fnn_conv2d_fwd_f32(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *b,
                       float *y, float *ws, int64_t ws_len, int n_threads);
int fnn_conv2d_fwd_f64(int flags, const fnn_conv2d_shape *s, const double *x, const double *w, const double *b,
                       double *y, double *ws, int64_t ws_len, int n_threads);
/* With g = dy (flags 0) or g = dy * (y > 0) (FNN_EPI_RELU: dy is the gradient of the forward's
 * ReLU output y; y is ignored otherwise): dw = sum_i g_i (*) x_i (overwritten), db[o] (may be NULL)
 * = sum_{i,p,q} g[i,o,p,q], dx (may be NULL) = the transposed convolution of g with w (overwritten).
 * Fixed-order reductions: the results do not depend on n_threads. */
int fnn_conv2d_bwd_f32(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *y,
                       const float *dy, float *dw, float *db, float *dx, float *ws, int64_t ws_len, int n_threads);
int fnn_conv2d_bwd_f64(int flags, const fnn_conv2d_shape *s, const double *x, const double *w, const double *y,
                       const double *dy, double *dw, double *db, double *dx, double *ws, int64_t ws_len,
                       int n_threads);

/* Geometry of a pooling window: x (n, c, h, w), y (n, c, oh, ow), oh = (h - kh) / sh + 1, no padding. */
typedef struct {
    int64_t n, c, h, w;
    int64_t kh, kw, sh, sw;
} fnn_pool2d_shape;

/* y = max over each window; idx (may be NULL) = the argmax as an offset p*w + q inside its (h, w)
 * plane: the first maximum, or the last NaN (as PyTorch). h * w < 2^31. */
int fnn_maxpool2d_fwd_f32(const fnn_pool2d_shape *s, const float *x, float *y, int32_t *idx, int n_threads);
int fnn_maxpool2d_fwd_f64(const fnn_pool2d_shape *s, const double *x, double *y, int32_t *idx, int n_threads);
/* dx = 0; dx[plane][idx] += dy. idx must come from fnn_maxpool2d_fwd: FNN_ERR_ARG (dx unspecified)
 * for an index outside its plane (or, for 2x2 windows at stride 2, outside its window). */
int fnn_maxpool2d_bwd_f32(const fnn_pool2d_shape *s, const float *dy, const int32_t *idx, float *dx, int n_threads);
int fnn_maxpool2d_bwd_f64(const fnn_pool2d_shape *s, const double *dy, const int32_t *idx, double *dx,
                          int n_threads);
/* y = mean over each window (kh * kw values). */
int fnn_avgpool2d_fwd_f32(const fnn_pool2d_shape *s, const float *x, float *y, int n_threads);
int fnn_avgpool2d_fwd_f64(const fnn_pool2d_shape *s, const double *x, double *y, int n_threads);
/* dx = 0; dx[window] += dy / (kh * kw) for every window. */
int fnn_avgpool2d_bwd_f32(const fnn_pool2d_shape *s, const float *dy, float *dx, int n_threads);
int fnn_avgpool2d_bwd_f64(const fnn_pool2d_shape *s, const double *dy, double *dx, int n_threads);

/* ---- recurrent layers ------------------------------------------------------------------
 * x (n, t, f) batch first; W_x (f, kH), W_h (H, kH), b_x, b_h (kH) with k = 1 (SimpleRNN),
 * 4 (LSTM, gate blocks i, f, g, o) or 3 (GRU, blocks r, z, n); PyTorch's equations, zero
 * initial state. y is (n, t, H) with FNN_RNN_SEQ (every step), else (n, H) (the last step).
 * ws is a caller-provided workspace of fnn_<cell>_fwd_workspace(n, t, f, h) elements: forward
 * fills it with the gate activations and states that backward reads (pass it unchanged, or
 * a copy at another address; a ws that no forward filled gives FNN_ERR_ARG); bws is scratch of fnn_<cell>_bwd_workspace(...) elements. The workspace functions return
 * an element count, or FNN_ERR_ARG for invalid sizes. Backward overwrites dW_x, dW_h, db_x,
 * db_h (and dx unless NULL) with the gradients of sum(dy * y). Results do not depend on
 * n_threads.
 * FNN_RNN_BF16 ("mixed_bfloat16", float32 entries only; FNN_ERR_ARG for f64 and the table
 * entries): every product's inputs are rounded to bf16 with float32 sums, as fnn_gemm_bf16:
 * x W_x and h_{t-1} W_h forward; dG W_x^T, dG W_h^T, [X | H_prev]^T dG backward, dG (the gate
 * pre-activation gradients) rounded after the gate kernel. The gate math, the states and the
 * bias gradients (sums of the unrounded dG) stay float32. Pass the same flags to forward and
 * backward. The workspace sizes cover both paths. */
#define FNN_RNN_SEQ 1      /* y / dy hold every step (return_sequences) */
#define FNN_RNN_BF16 2     /* bf16 GEMM inputs, float32 accumulation (mixed_bfloat16) */
int64_t fnn_rnn_fwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h);
int64_t fnn_rnn_bwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h);
int64_t fnn_lstm_fwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h);
int64_t fnn_lstm_bwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h);
int64_t fnn_gru_fwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h);
int64_t fnn_gru_bwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h);
/* SimpleRNN: h_t = tanh(x_t W_x + b_x + h_{t-1} W_h + b_h). */
int fnn_rnn_fwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                    const float *wh, const float *bx, const float *bh, float *y, float *ws, int n_threads);
int fnn_rnn_fwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                    const double *wh, const double *bx, const double *bh, double *y, double *ws, int n_threads);
int fnn_rnn_bwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                    const float *wh, const float *ws, const float *dy, float *dwx, float *dwh, float *dbx,
                    float *dbh, float *dx, float *bws, int n_threads);
int fnn_rnn_bwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                    const double *wh, const double *ws, const double *dy, double *dwx, double *dwh, double *dbx,
                    double *dbh, double *dx, double *bws, int n_threads);
/* LSTM: [i f g o] = [s s tanh s](x_t W_x + b_x + h_{t-1} W_h + b_h) (s = sigmoid);
 * c_t = f c_{t-1} + i g; h_t = o tanh(c_t). */
int fnn_lstm_fwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                     const float *wh, const float *bx, const float *bh, float *y, float *ws, int n_threads);
int fnn_lstm_fwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                     const double *wh, const double *bx, const double *bh, double *y, double *ws, int n_threads);
int fnn_lstm_bwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                     const float *wh, const float *ws, const float *dy, float *dwx, float *dwh, float *dbx,
                     float *dbh, float *dx, float *bws, int n_threads);
int fnn_lstm_bwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                     const double *wh, const double *ws, const double *dy, double *dwx, double *dwh,
                     double *dbx, double *dbh, double *dx, double *bws, int n_threads);
/* GRU: a = x_t W_x + b_x, b = h_{t-1} W_h + b_h; r = s(a_r + b_r), z = s(a_z + b_z),
 * n = tanh(a_n + r b_n); h_t = (1 - z) n + z h_{t-1}. */
int fnn_gru_fwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                    const float *wh, const float *bx, const float *bh, float *y, float *ws, int n_threads);
int fnn_gru_fwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                    const double *wh, const double *bx, const double *bh, double *y, double *ws, int n_threads);
int fnn_gru_bwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                    const float *wh, const float *ws, const float *dy, float *dwx, float *dwh, float *dbx,
                    float *dbh, float *dx, float *bws, int n_threads);
int fnn_gru_bwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                    const double *wh, const double *ws, const double *dy, double *dwx, double *dwh, double *dbx,
                    double *dbh, double *dx, double *bws, int n_threads);
/* Fed by an Embedding (E, v x d): the input projections x_t W_x + b_x are rows of a table
 * p = E W_x + b_x (v x kH, row stride ldp >= kH), row idx[b t + s] for sample b and step s
 * (idx: n x t indices, each in [0, v), else FNN_ERR_INDEX before anything is written). The
 * forward is the cell's forward with f = 0 and G from the table (workspace sizes of f = 0);
 * the backward that of f = 0 (dW_h, db_x, db_h) and dp (v x kH, stride ldp) = the gradient
 * of p: each row the sum of its indices' x-side gate gradients, added in index order (for a
 * GRU the blocks r, z, n of x W_x). Then dW_x = E^T dp and dE = dp W_x^T (two GEMMs over v
 * rows instead of three over n t). Results do not depend on n_threads. */
#define FNN_CELL_RNN 0
#define FNN_CELL_LSTM 1
#define FNN_CELL_GRU 2
int fnn_recurrent_table_fwd_f32(int cell, int flags, int64_t n, int64_t t, int64_t h, int64_t v, const int64_t *idx,
                                const float *p, int64_t ldp, const float *wh, const float *bh, float *y, float *ws,
                                int n_threads);
int fnn_recurrent_table_fwd_f64(int cell, int flags, int64_t n, int64_t t, int64_t h, int64_t v, const int64_t *idx,
                                const double *p, int64_t ldp, const double *wh, const double *bh, double *y,
                                double *ws, int n_threads);
int fnn_recurrent_table_bwd_f32(int cell, int flags, int64_t n, int64_t t, int64_t h, int64_t v, const int64_t *idx,
                                const float *wh, const float *ws, const float *dy, float *dwh, float *dbx, float *dbh,
                                float *dp, int64_t ldp, float *bws, int n_threads);
int fnn_recurrent_table_bwd_f64(int cell, int flags, int64_t n, int64_t t, int64_t h, int64_t v, const int64_t *idx,
                                const double *wh, const double *ws, const double *dy, double *dwh, double *dbx,
                                double *dbh, double *dp, int64_t ldp, double *bws, int n_threads);

/* ---- batch normalization ---------------------------------------------------------------
 * x, y, dy, dx viewed as (outer, ch, inner): (N, F) is (N, F, 1), (N, C, H, W) is (N, C, H*W),
 * (N, T, F) is (N*T, F, 1); statistics per channel over the outer * inner values of each.
 * gamma / beta may be NULL (scale 1 / shift 0). Results do not depend on n_threads. */
/* Training: mean = E[x], var = E[(x - mean)^2] (biased), invstd = 1 / sqrt(var + eps),
 * y = gamma (x - mean) invstd + beta; save_mean / save_invstd (may be NULL) get mean and invstd
 * for the backward; moving_mean/var (may be NULL) = momentum * moving + (1 - momentum) * batch.
 * outer >= 1, eps > 0, 0 <= momentum <= 1; y may be x. flags FNN_EPI_RELU: y = max(., 0) (a ReLU
 * layer after it, fused). */
int fnn_batchnorm_fwd_train_f32(int flags, int64_t outer, int64_t ch, int64_t inner, float momentum, float eps,
                                const float *x, const float *gamma, const float *beta, float *y, float *save_mean,
                                float *save_invstd, float *moving_mean, float *moving_var, int n_threads);
int fnn_batchnorm_fwd_train_f64(int flags, int64_t outer, int64_t ch, int64_t inner, double momentum, double eps,
                                const double *x, const double *gamma, const double *beta, double *y,
                                double *save_mean, double *save_invstd, double *moving_mean, double *moving_var,
                                int n_threads);
/* Inference: y = x * s + (beta - mean * s), s = gamma / sqrt(var + eps); y may be x. */
int fnn_batchnorm_fwd_infer_f32(int64_t outer, int64_t ch, int64_t inner, float eps, const float *x,
                                const float *gamma, const float *beta, const float *mean, const float *var, float *y,
                                int n_threads);
int fnn_batchnorm_fwd_infer_f64(int64_t outer, int64_t ch, int64_t inner, double eps, const double *x,
                                const double *gamma, const double *beta, const double *mean, const double *var,
                                double *y, int n_threads);
/* Backward of the training forward (mean, invstd as it saved them), m = outer * inner,
 * xhat = (x - mean) invstd: dbeta = sum dy, dgamma = sum dy xhat (each may be NULL),
 * dx = gamma invstd (dy - dbeta / m - xhat dgamma / m) (skipped when dx is NULL; dx may be dy).
 * flags FNN_EPI_RELU: dy is the gradient of the fused ReLU's output y (the forward's), and is
 * taken as dy * (y > 0) throughout; y is ignored otherwise (may be NULL). */
int fnn_batchnorm_bwd_f32(int flags, int64_t outer, int64_t ch, int64_t inner, const float *x, const float *gamma,
                          const float *mean, const float *invstd, const float *y, const float *dy, float *dx,
                          float *dgamma, float *dbeta, int n_threads);
int fnn_batchnorm_bwd_f64(int flags, int64_t outer, int64_t ch, int64_t inner, const double *x,
                          const double *gamma, const double *mean, const double *invstd, const double *y,
                          const double *dy, double *dx, double *dgamma, double *dbeta, int n_threads);

/* The training forward and backward split in two phases, for data-parallel training: each process
 * computes per-channel sums over its part of the batch (outer may be 0), the sums are added over
 * processes, and the apply phase uses the totals (count: the values per channel over all parts).
 * Sums are doubles, sums[c] and sums[ch + c] for channel c.
 * sums: forward (dy NULL) s = sum (x - shift), q = sum (x - shift)^2; backward (dy given, shift the
 * saved mean) s = sum dy, q = sum dy (x - shift), dy masked by y > 0 with FNN_EPI_RELU.
 * fwd_apply: mean = shift + s / count, var = q / count - (s / count)^2, then as fwd_train.
 * bwd_apply: dx as fnn_batchnorm_bwd with dbeta = s, dgamma = q invstd and m = count. */
int fnn_batchnorm_sums_f32(int flags, int64_t outer, int64_t ch, int64_t inner, const float *x, const float *shift,
                          const float *y, const float *dy, double *sums, int n_threads);
int fnn_batchnorm_fwd_apply_f32(int flags, int64_t outer, int64_t ch, int64_t inner, double count, float momentum,
                               float eps, const float *x, const float *gamma, const float *beta, const float *shift,
                               const double *sums, float *y, float *save_mean, float *save_invstd, float *moving_mean,
                               float *moving_var, int n_threads);
int fnn_batchnorm_bwd_apply_f32(int flags, int64_t outer, int64_t ch, int64_t inner, double count, const float *x,
                               const float *gamma, const float *mean, const float *invstd, const float *y, const float *dy,
                               const double *sums, float *dx, int n_threads);
int fnn_batchnorm_sums_f64(int flags, int64_t outer, int64_t ch, int64_t inner, const double *x, const double *shift,
                          const double *y, const double *dy, double *sums, int n_threads);
int fnn_batchnorm_fwd_apply_f64(int flags, int64_t outer, int64_t ch, int64_t inner, double count, double momentum,
                               double eps, const double *x, const double *gamma, const double *beta, const double *shift,
                               const double *sums, double *y, double *save_mean, double *save_invstd, double *moving_mean,
                               double *moving_var, int n_threads);
int fnn_batchnorm_bwd_apply_f64(int flags, int64_t outer, int64_t ch, int64_t inner, double count, const double *x,
                               const double *gamma, const double *mean, const double *invstd, const double *y, const double *dy,
                               const double *sums, double *dx, int n_threads);

/* ---- embedding -------------------------------------------------------------------------
 * n indices idx (int64) into a table w of v rows of d values (row-major (v, d)).
 * Every index must lie in [0, v): otherwise FNN_ERR_INDEX, returned before anything is read
 * from w or written. */
#define FNN_ERR_INDEX (-5)   /* an embedding index is outside [0, v) */
/* y[i, :] = w[idx[i], :] for i < n (y is (n, d)). */
int fnn_embedding_fwd_f32(int64_t n, int64_t v, int64_t d, const int64_t *idx, const float *w, float *y,
                          int n_threads);
int fnn_embedding_fwd_f64(int64_t n, int64_t v, int64_t d, const int64_t *idx, const double *w, double *y,
                          int n_threads);
/* dw = 0, then dw[idx[i], :] += dy[i, :] for i = 0, 1, ..., n-1 in that order: repeated indices
 * are summed in index order, so the result does not depend on n_threads (threads own column
 * blocks of dw, no atomics, no workspace). */
int fnn_embedding_bwd_f32(int64_t n, int64_t v, int64_t d, const int64_t *idx, const float *dy, float *dw,
                          int n_threads);
int fnn_embedding_bwd_f64(int64_t n, int64_t v, int64_t d, const int64_t *idx, const double *dy, double *dw,
                          int n_threads);

/* ---- data augmentation (csrc/ref/augment.c) ----------------------------------------------
 * Counter-based randomness as dropout: a call with (seed, offset) draws its decisions from the
 * hash of core/rng.h at counters offset + ..., documented in augment.c; the results do not depend
 * on n_threads, and the flip and shift decisions not on the dtype. x is (n, c, h, w) row-major. */
#define FNN_FLIP_HORIZONTAL 1   /* may flip the width axis */
#define FNN_FLIP_VERTICAL 2     /* may flip the height axis */
/* y = x with each sample's axes in flags reversed or not (a fair coin per sample and axis).
 * Its own adjoint: the same call on dy gives dx. x and y must not overlap. */
int fnn_random_flip_f32(int64_t n, int64_t c, int64_t h, int64_t w, int flags, uint64_t seed, uint64_t offset,
                        const float *x, float *y, int n_threads);
int fnn_random_flip_f64(int64_t n, int64_t c, int64_t h, int64_t w, int flags, uint64_t seed, uint64_t offset,
                        const double *x, double *y, int n_threads);
/* Each sample shifted by whole pixels (sy, sx), uniform in [-max_h, max_h] x [-max_w, max_w]
 * (0 <= max_h < h, 0 <= max_w < w): y[i, j] = x[i - sy, j - sx], fill where that lies outside.
 * adjoint = 1: the transpose for the same (seed, offset), y[i, j] = x[i + sy, j + sx] or 0 (fill
 * ignored): dx from dy. x and y must not overlap. */
int fnn_random_translate_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t max_h, int64_t max_w,
                             uint64_t seed, uint64_t offset, int adjoint, float fill, const float *x, float *y,
                             int n_threads);
int fnn_random_translate_f64(int64_t n, int64_t c, int64_t h, int64_t w, int64_t max_h, int64_t max_w,
                             uint64_t seed, uint64_t offset, int adjoint, double fill, const double *x,
                             double *y, int n_threads);
/* y[i] = x[i] + (T)(stddev * z_i), z_i standard normal (Box-Muller in double on the bits of
 * counters offset + 2i and offset + 2i + 1); stddev finite and >= 0; y may be x. */
int fnn_gaussian_noise_f32(int64_t n, double stddev, uint64_t seed, uint64_t offset, const float *x, float *y,
                           int n_threads);
int fnn_gaussian_noise_f64(int64_t n, double stddev, uint64_t seed, uint64_t offset, const double *x, double *y,
                           int n_threads);

/* ---- bfloat16 (mixed precision) ----------------------------------------------------------
 * bf16 values are stored as uint16_t: the top 16 bits of the float32 of the same value.
 * Conversion rounds to nearest even; NaN stays NaN (quiet), +-Inf and overflow give +-Inf. */
int fnn_f32_to_bf16(int64_t n, const float *x, uint16_t *y, int n_threads);
int fnn_bf16_to_f32(int64_t n, const uint16_t *x, float *y, int n_threads);
/* y = float(bf16(x)): the float32 of the rounded value; y may be x. */
int fnn_round_bf16_f32(int64_t n, const float *x, float *y, int n_threads);

/* GEMM variants for bf16 inputs, picked like the float32 ones: once, newest first, FASTNN_BF16
 * (ref | avx512bf16 | amx) overrides when this CPU supports the name. */
#define FNN_BF16_REF 0      /* round to bf16, multiply with the float32 GEMM (any CPU) */
#define FNN_BF16_AVX512 1   /* AVX512-BF16 VDPBF16PS on packed bf16 k-pairs */
#define FNN_BF16_AMX 2      /* AMX-BF16 TDPBF16PS tiles */
int fnn_bf16_best(void);
int fnn_bf16_get(void);
int fnn_bf16_set(int variant);         /* FNN_ERR_ARCH when the CPU lacks it; -1: follow FASTNN_ARCH */
int fnn_bf16_forced(void);             /* the variant picked (env or fnn_bf16_set), else -1 */
const char *fnn_bf16_name(int variant);
/* "" normally; when the picked variant cannot run its own kernel, why and what runs instead (AMX:
 * the OS refused the tile state, or the kernel failed its first-use self-check: avx512bf16). */
const char *fnn_bf16_note(void);

/* flags beyond those of fnn_gemm_f32: the operand is stored as bf16 (uint16_t) instead of float */
#define FNN_A_BF16 16
#define FNN_B_BF16 32
/* C[m,n] = act(alpha * bf16(op(A)) bf16(op(B)) + beta * C + bias) in float32: float operands are
 * rounded to bf16 (as fnn_f32_to_bf16) while packed, products are exact and summed in float32.
 * Leading dimensions count elements of the operand's own type. The sum's order depends on k
 * only, so results do not depend on n_threads. The AVX512/AMX variants treat bf16 subnormals as
 * zero (the instructions do); the reference variant keeps them. */
int fnn_gemm_bf16(int flags, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                  const void *a, int64_t lda, const void *b, int64_t ldb,
                  const float *bias, float *c, int64_t ldc, int n_threads);
/* fnn_conv2d_fwd_f32 / fnn_conv2d_bwd_f32 with every product by fnn_gemm_bf16: x, w and g (dy,
 * masked by the ReLU) rounded to bf16, float32 sums; db is the float32 sum of g. Same geometry
 * and workspace (fnn_conv2d_workspace, float elements); results do not depend on n_threads. */
int fnn_conv2d_fwd_bf16(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *b,
                        float *y, float *ws, int64_t ws_len, int n_threads);
int fnn_conv2d_bwd_bf16(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *y,
                        const float *dy, float *dw, float *db, float *dx, float *ws, int64_t ws_len, int n_threads);

#ifdef __cplusplus
}
#endif
#endif /* FASTNN_H */
