/* bench_shim.c - repeats one fnn_gemm call in C so bench.py's timing is not ctypes' call
 * overhead (several microseconds for 14 arguments). Test builds only. */
#include "../../include/fastnn.h"

int fnn_gemm_f32_repeat(int reps, int flags, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                        const float *a, int64_t lda, const float *b, int64_t ldb, const float *bias, float *c,
                        int64_t ldc, int n_threads)
{
    int st = FNN_OK;
    for (int r = 0; r < reps && st == FNN_OK; r++)
        st = fnn_gemm_f32(flags, m, n, k, alpha, beta, a, lda, b, ldb, bias, c, ldc, n_threads);
    return st;
}

int fnn_gemm_f64_repeat(int reps, int flags, int64_t m, int64_t n, int64_t k, double alpha, double beta,
                        const double *a, int64_t lda, const double *b, int64_t ldb, const double *bias,
                        double *c, int64_t ldc, int n_threads)
{
    int st = FNN_OK;
    for (int r = 0; r < reps && st == FNN_OK; r++)
        st = fnn_gemm_f64(flags, m, n, k, alpha, beta, a, lda, b, ldb, bias, c, ldc, n_threads);
    return st;
}
