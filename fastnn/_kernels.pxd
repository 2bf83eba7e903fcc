# Declarations of the C kernels (csrc/include/fastnn.h) for Cython.
from libc.stdint cimport int64_t, uint16_t, uint64_t

cdef extern from "fastnn.h" nogil:
    int FNN_OK, FNN_ERR_ARG, FNN_ERR_NOMEM, FNN_ERR_ARCH, FNN_ERR_LABEL
    int FNN_ARCH_GENERIC, FNN_ARCH_AVX2, FNN_ARCH_AVX512
    int FNN_TRANS_A, FNN_TRANS_B, FNN_BIAS_ROW, FNN_EPI_RELU
    const char *fnn_strerror(int status)
    int fnn_arch_best()
    int fnn_arch_get()
    int fnn_arch_set(int arch)
    const char *fnn_arch_name(int arch)
    int fnn_openmp_enabled()
    int fnn_max_threads()
    int fnn_threads_init()
    int fnn_threads_usable()

    int fnn_gemm_f32(int flags, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                     const float *a, int64_t lda, const float *b, int64_t ldb,
                     const float *bias, float *c, int64_t ldc, int n_threads)
    int fnn_gemm_f64(int flags, int64_t m, int64_t n, int64_t k, double alpha, double beta,
                     const double *a, int64_t lda, const double *b, int64_t ldb,
                     const double *bias, double *c, int64_t ldc, int n_threads)
    int fnn_bias_grad_f32(int accumulate, int64_t m, int64_t n, const float *dy, float *db, int n_threads)
    int fnn_bias_grad_f64(int accumulate, int64_t m, int64_t n, const double *dy, double *db, int n_threads)
    int fnn_act_fwd_f32(int act, int64_t n, float alpha, const float *x, float *y, int n_threads)
    int fnn_act_fwd_f64(int act, int64_t n, double alpha, const double *x, double *y, int n_threads)
    int fnn_act_bwd_f32(int act, int64_t n, float alpha, const float *y, const float *dy, float *dx, int n_threads)
    int fnn_act_bwd_f64(int act, int64_t n, double alpha, const double *y, const double *dy, double *dx,
                        int n_threads)
    int fnn_softmax_fwd_f32(int64_t m, int64_t k, const float *x, float *y, int n_threads)
    int fnn_softmax_fwd_f64(int64_t m, int64_t k, const double *x, double *y, int n_threads)
    int fnn_softmax_bwd_f32(int64_t m, int64_t k, const float *y, const float *dy, float *dx, int n_threads)
    int fnn_softmax_bwd_f64(int64_t m, int64_t k, const double *y, const double *dy, double *dx, int n_threads)
    int fnn_softmax_xent_f32(int64_t m, int64_t k, float scale, const float *z, const int64_t *labels,
                             const float *onehot, const float *w, float *loss, float *grad, float *prob,
                             int n_threads)
    int fnn_softmax_xent_f64(int64_t m, int64_t k, double scale, const double *z, const int64_t *labels,
                             const double *onehot, const double *w, double *loss, double *grad, double *prob,
                             int n_threads)
    int fnn_sigmoid_bce_f32(int64_t n, int64_t cols, float scale, const float *z, const float *t, const float *w,
                            float *loss, float *grad, float *prob, int n_threads)
    int fnn_sigmoid_bce_f64(int64_t n, int64_t cols, double scale, const double *z, const double *t,
                            const double *w, double *loss, double *grad, double *prob, int n_threads)
    int fnn_mse_f32(int64_t n, int64_t cols, float scale, const float *y, const float *t, const float *w,
                    float *loss, float *grad, int n_threads)
    int fnn_mse_f64(int64_t n, int64_t cols, double scale, const double *y, const double *t, const double *w,
                    double *loss, double *grad, int n_threads)
    int fnn_dropout_fwd_f32(int64_t n, double rate, uint64_t seed, uint64_t offset, const float *x,
                            float *y, float *mask, int n_threads)
    int fnn_dropout_fwd_f64(int64_t n, double rate, uint64_t seed, uint64_t offset, const double *x,
                            double *y, double *mask, int n_threads)
    int fnn_mul_f32(int64_t n, const float *a, const float *b, float *out, int n_threads)
    int fnn_mul_f64(int64_t n, const double *a, const double *b, double *out, int n_threads)
    int fnn_sgd_step_f32(int nesterov, int first, int64_t n, float lr, float momentum, float weight_decay,
                         const float *grad, float *param, float *buf, int n_threads)
    int fnn_sgd_step_f64(int nesterov, int first, int64_t n, double lr, double momentum,
                         double weight_decay, const double *grad, double *param, double *buf, int n_threads)
    int fnn_adam_step_f32(int decoupled, int64_t t, int64_t n, float lr, float beta1, float beta2, float eps,
                          float weight_decay, const float *grad, float *param, float *m, float *v,
                          int n_threads)
    int fnn_adam_step_f64(int decoupled, int64_t t, int64_t n, double lr, double beta1, double beta2, double eps,
                          double weight_decay, const double *grad, double *param, double *m, double *v,
                          int n_threads)
    int fnn_rmsprop_step_f32(int centered, int64_t n, float lr, float rho, float momentum, float eps,
                             float weight_decay, const float *grad, float *param, float *sq, float *grad_avg,
                             float *buf, int n_threads)
    int fnn_rmsprop_step_f64(int centered, int64_t n, double lr, double rho, double momentum, double eps,
                             double weight_decay, const double *grad, double *param, double *sq,
                             double *grad_avg, double *buf, int n_threads)

    int fnn_penalty_f32(int64_t n, float l1, float l2, const float *w, float *grad, double *penalty, int n_threads)
    int fnn_penalty_f64(int64_t n, double l1, double l2, const double *w, double *grad, double *penalty,
                        int n_threads)

# ---- convolution and pooling (csrc/ref/conv.c, csrc/ref/pool.c) ----
from libc.stdint cimport int32_t

cdef extern from "fastnn.h" nogil:
    ctypedef struct fnn_conv2d_shape:
        int64_t n, c, h, w, f, kh, kw, sh, sw, pad_t, pad_b, pad_l, pad_r
    ctypedef struct fnn_pool2d_shape:
        int64_t n, c, h, w, kh, kw, sh, sw
    int64_t fnn_conv2d_workspace(int backward, const fnn_conv2d_shape *s, int n_threads)
    int fnn_conv2d_fwd_f32(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *b,
                           float *y, float *ws, int64_t ws_len, int n_threads)
    int fnn_conv2d_fwd_f64(int flags, const fnn_conv2d_shape *s, const double *x, const double *w,
                           const double *b, double *y, double *ws, int64_t ws_len, int n_threads)
    int fnn_conv2d_bwd_f32(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *y,
                           const float *dy, float *dw, float *db, float *dx, float *ws, int64_t ws_len,
                           int n_threads)
    int fnn_conv2d_bwd_f64(int flags, const fnn_conv2d_shape *s, const double *x, const double *w,
                           const double *y, const double *dy, double *dw, double *db, double *dx, double *ws,
                           int64_t ws_len, int n_threads)
    int fnn_maxpool2d_fwd_f32(const fnn_pool2d_shape *s, const float *x, float *y, int32_t *idx, int n_threads)
    int fnn_maxpool2d_fwd_f64(const fnn_pool2d_shape *s, const double *x, double *y, int32_t *idx, int n_threads)
    int fnn_maxpool2d_bwd_f32(const fnn_pool2d_shape *s, const float *dy, const int32_t *idx, float *dx,
                              int n_threads)
    int fnn_maxpool2d_bwd_f64(const fnn_pool2d_shape *s, const double *dy, const int32_t *idx, double *dx,
                              int n_threads)
    int fnn_avgpool2d_fwd_f32(const fnn_pool2d_shape *s, const float *x, float *y, int n_threads)
    int fnn_avgpool2d_fwd_f64(const fnn_pool2d_shape *s, const double *x, double *y, int n_threads)
    int fnn_avgpool2d_bwd_f32(const fnn_pool2d_shape *s, const float *dy, float *dx, int n_threads)
    int fnn_avgpool2d_bwd_f64(const fnn_pool2d_shape *s, const double *dy, double *dx, int n_threads)

cdef extern from "fastnn.h" nogil:
    int FNN_RNN_SEQ
    int FNN_RNN_BF16
    int64_t fnn_rnn_fwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h)
    int64_t fnn_rnn_bwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h)
    int64_t fnn_lstm_fwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h)
    int64_t fnn_lstm_bwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h)
    int64_t fnn_gru_fwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h)
    int64_t fnn_gru_bwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h)
    int fnn_rnn_fwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                        const float *wh, const float *bx, const float *bh, float *y, float *ws, int n_threads)
    int fnn_rnn_fwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x,
                        const double *wx, const double *wh, const double *bx, const double *bh, double *y,
                        double *ws, int n_threads)
    int fnn_rnn_bwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                        const float *wh, const float *ws, const float *dy, float *dwx, float *dwh, float *dbx,
                        float *dbh, float *dx, float *bws, int n_threads)
    int fnn_rnn_bwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x,
                        const double *wx, const double *wh, const double *ws, const double *dy, double *dwx,
                        double *dwh, double *dbx, double *dbh, double *dx, double *bws, int n_threads)
    int fnn_lstm_fwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                         const float *wh, const float *bx, const float *bh, float *y, float *ws, int n_threads)
    int fnn_lstm_fwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x,
                         const double *wx, const double *wh, const double *bx, const double *bh, double *y,
                         double *ws, int n_threads)
    int fnn_lstm_bwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                         const float *wh, const float *ws, const float *dy, float *dwx, float *dwh, float *dbx,
                         float *dbh, float *dx, float *bws, int n_threads)
    int fnn_lstm_bwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x,
                         const double *wx, const double *wh, const double *ws, const double *dy, double *dwx,
                         double *dwh, double *dbx, double *dbh, double *dx, double *bws, int n_threads)
    int fnn_gru_fwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                        const float *wh, const float *bx, const float *bh, float *y, float *ws, int n_threads)
    int fnn_gru_fwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x,
                        const double *wx, const double *wh, const double *bx, const double *bh, double *y,
                        double *ws, int n_threads)
    int fnn_gru_bwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                        const float *wh, const float *ws, const float *dy, float *dwx, float *dwh, float *dbx,
                        float *dbh, float *dx, float *bws, int n_threads)
    int fnn_gru_bwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x,
                        const double *wx, const double *wh, const double *ws, const double *dy, double *dwx,
                        double *dwh, double *dbx, double *dbh, double *dx, double *bws, int n_threads)
    int fnn_recurrent_table_fwd_f32(int cell, int flags, int64_t n, int64_t t, int64_t h, int64_t v,
                                    const int64_t *idx, const float *p, int64_t ldp, const float *wh,
                                    const float *bh, float *y, float *ws, int n_threads)
    int fnn_recurrent_table_fwd_f64(int cell, int flags, int64_t n, int64_t t, int64_t h, int64_t v,
                                    const int64_t *idx, const double *p, int64_t ldp, const double *wh,
                                    const double *bh, double *y, double *ws, int n_threads)
    int fnn_recurrent_table_bwd_f32(int cell, int flags, int64_t n, int64_t t, int64_t h, int64_t v,
                                    const int64_t *idx, const float *wh, const float *ws, const float *dy,
                                    float *dwh, float *dbx, float *dbh, float *dp, int64_t ldp, float *bws,
                                    int n_threads)
    int fnn_recurrent_table_bwd_f64(int cell, int flags, int64_t n, int64_t t, int64_t h, int64_t v,
                                    const int64_t *idx, const double *wh, const double *ws, const double *dy,
                                    double *dwh, double *dbx, double *dbh, double *dp, int64_t ldp, double *bws,
                                    int n_threads)

# ---- batch normalization (csrc/ref/batchnorm.c) ----
cdef extern from "fastnn.h" nogil:
    int fnn_batchnorm_fwd_train_f32(int flags, int64_t outer, int64_t ch, int64_t inner, float momentum,
                                    float eps, const float *x, const float *gamma, const float *beta, float *y,
                                    float *save_mean, float *save_invstd, float *moving_mean, float *moving_var,
                                    int n_threads)
    int fnn_batchnorm_fwd_train_f64(int flags, int64_t outer, int64_t ch, int64_t inner, double momentum,
                                    double eps, const double *x, const double *gamma, const double *beta,
                                    double *y, double *save_mean, double *save_invstd, double *moving_mean,
                                    double *moving_var, int n_threads)
    int fnn_batchnorm_fwd_infer_f32(int64_t outer, int64_t ch, int64_t inner, float eps, const float *x,
                                    const float *gamma, const float *beta, const float *mean, const float *var,
                                    float *y, int n_threads)
    int fnn_batchnorm_fwd_infer_f64(int64_t outer, int64_t ch, int64_t inner, double eps, const double *x,
                                    const double *gamma, const double *beta, const double *mean,
                                    const double *var, double *y, int n_threads)
    int fnn_batchnorm_bwd_f32(int flags, int64_t outer, int64_t ch, int64_t inner, const float *x,
                              const float *gamma, const float *mean, const float *invstd, const float *y,
                              const float *dy, float *dx, float *dgamma, float *dbeta, int n_threads)
    int fnn_batchnorm_bwd_f64(int flags, int64_t outer, int64_t ch, int64_t inner, const double *x,
                              const double *gamma, const double *mean, const double *invstd, const double *y,
                              const double *dy, double *dx, double *dgamma, double *dbeta, int n_threads)

cdef extern from "fastnn.h" nogil:
    int fnn_batchnorm_sums_f32(int flags, int64_t outer, int64_t ch, int64_t inner, const float *x,
                              const float *shift, const float *y, const float *dy, double *sums, int n_threads)
    int fnn_batchnorm_fwd_apply_f32(int flags, int64_t outer, int64_t ch, int64_t inner, double count,
                                   float momentum, float eps, const float *x, const float *gamma, const float *beta,
                                   const float *shift, const double *sums, float *y, float *save_mean,
                                   float *save_invstd, float *moving_mean, float *moving_var, int n_threads)
    int fnn_batchnorm_bwd_apply_f32(int flags, int64_t outer, int64_t ch, int64_t inner, double count,
                                   const float *x, const float *gamma, const float *mean, const float *invstd,
                                   const float *y, const float *dy, const double *sums, float *dx, int n_threads)
    int fnn_batchnorm_sums_f64(int flags, int64_t outer, int64_t ch, int64_t inner, const double *x,
                              const double *shift, const double *y, const double *dy, double *sums, int n_threads)
    int fnn_batchnorm_fwd_apply_f64(int flags, int64_t outer, int64_t ch, int64_t inner, double count,
                                   double momentum, double eps, const double *x, const double *gamma, const double *beta,
                                   const double *shift, const double *sums, double *y, double *save_mean,
                                   double *save_invstd, double *moving_mean, double *moving_var, int n_threads)
    int fnn_batchnorm_bwd_apply_f64(int flags, int64_t outer, int64_t ch, int64_t inner, double count,
                                   const double *x, const double *gamma, const double *mean, const double *invstd,
                                   const double *y, const double *dy, const double *sums, double *dx, int n_threads)

cdef extern from "fastnn.h" nogil:
    int FNN_ERR_INDEX
    int fnn_embedding_fwd_f32(int64_t n, int64_t v, int64_t d, const int64_t *idx, const float *w, float *y,
                              int n_threads)
    int fnn_embedding_fwd_f64(int64_t n, int64_t v, int64_t d, const int64_t *idx, const double *w, double *y,
                              int n_threads)
    int fnn_embedding_bwd_f32(int64_t n, int64_t v, int64_t d, const int64_t *idx, const float *dy, float *dw,
                              int n_threads)
    int fnn_embedding_bwd_f64(int64_t n, int64_t v, int64_t d, const int64_t *idx, const double *dy, double *dw,
                              int n_threads)

cdef extern from "fastnn.h" nogil:
    int FNN_FLIP_HORIZONTAL
    int FNN_FLIP_VERTICAL
    int fnn_random_flip_f32(int64_t n, int64_t c, int64_t h, int64_t w, int flags, uint64_t seed,
                            uint64_t offset, const float *x, float *y, int n_threads)
    int fnn_random_flip_f64(int64_t n, int64_t c, int64_t h, int64_t w, int flags, uint64_t seed,
                            uint64_t offset, const double *x, double *y, int n_threads)
    int fnn_random_translate_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t max_h, int64_t max_w,
                                 uint64_t seed, uint64_t offset, int adjoint, float fill, const float *x,
                                 float *y, int n_threads)
    int fnn_random_translate_f64(int64_t n, int64_t c, int64_t h, int64_t w, int64_t max_h, int64_t max_w,
                                 uint64_t seed, uint64_t offset, int adjoint, double fill, const double *x,
                                 double *y, int n_threads)
    int fnn_gaussian_noise_f32(int64_t n, double stddev, uint64_t seed, uint64_t offset, const float *x,
                               float *y, int n_threads)
    int fnn_gaussian_noise_f64(int64_t n, double stddev, uint64_t seed, uint64_t offset, const double *x,
                               double *y, int n_threads)

    int FNN_BF16_REF, FNN_BF16_AVX512, FNN_BF16_AMX, FNN_A_BF16, FNN_B_BF16
    int fnn_f32_to_bf16(int64_t n, const float *x, uint16_t *y, int n_threads)
    int fnn_bf16_to_f32(int64_t n, const uint16_t *x, float *y, int n_threads)
    int fnn_round_bf16_f32(int64_t n, const float *x, float *y, int n_threads)
    int fnn_bf16_best()
    int fnn_bf16_get()
    int fnn_bf16_set(int variant)
    int fnn_bf16_forced()
    const char *fnn_bf16_name(int variant)
    const char *fnn_bf16_note()
    int fnn_gemm_bf16(int flags, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                      const void *a, int64_t lda, const void *b, int64_t ldb,
                      const float *bias, float *c, int64_t ldc, int n_threads)
    int fnn_conv2d_fwd_bf16(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *b,
                            float *y, float *ws, int64_t ws_len, int n_threads)
    int fnn_conv2d_bwd_bf16(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *y,
                            const float *dy, float *dw, float *db, float *dx, float *ws, int64_t ws_len,
                            int n_threads)
