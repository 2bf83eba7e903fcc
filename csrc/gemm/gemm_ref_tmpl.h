/*
 * gemm_ref_tmpl.h - private template of the portable microkernel, included by gemm_ref.c
 * once per element type with FNN_T, FNN_EPI, FNN_MR, FNN_NR and FNN_NAME(x) defined.
 *
 * Written as plain loops over a small accumulator array with compile-time bounds so that,
 * fully unrolled, the array lives in registers and the j loop becomes SSE2 vector code
 * (FNN_NR values per row = two 128-bit registers); FNN_MR rows keep 2*FNN_MR accumulators,
 * two B vectors and a broadcast within the 16 XMM registers.
 */

static void FNN_NAME(ukr_ref)(int64_t k, const FNN_T *restrict a, const FNN_T *restrict b,
                              FNN_T *restrict c, int64_t ldc, int mr, int nr, const FNN_EPI *epi,
                              const FNN_T *restrict bias)
{
    /* Complete unrolling before vectorisation turns acc into registers. */
    FNN_T acc[FNN_MR][FNN_NR];
#pragma GCC unroll 16
    for (int i = 0; i < FNN_MR; i++)
#pragma GCC unroll 16
        for (int j = 0; j < FNN_NR; j++)
            acc[i][j] = 0;
    for (int64_t p = 0; p < k; p++) {
        const FNN_T *ap = a + p * FNN_MR;
        const FNN_T *bp = b + p * FNN_NR;
#pragma GCC unroll 16
        for (int i = 0; i < FNN_MR; i++) {
            FNN_T ai = ap[i];
#pragma GCC unroll 16
            for (int j = 0; j < FNN_NR; j++)
                acc[i][j] += ai * bp[j];
        }
    }

    /* The epilogue touches only the valid mr x nr part, with the same scalar formula for
     * every element, so edge tiles round exactly like full ones. */
    const FNN_T alpha = epi->alpha, beta = epi->beta;
    const int flags = epi->flags;
    for (int i = 0; i < mr; i++) {
        FNN_T *ci = c + i * ldc;
        for (int j = 0; j < nr; j++) {
            FNN_T r = alpha * acc[i][j];
            if (!(flags & FNN_GEMM_E_BETA0))
                r = beta * ci[j] + r;
            if (bias)
                r += (flags & FNN_GEMM_E_BIASROW) ? bias[i] : bias[j];
            if (flags & FNN_GEMM_E_RELU)
                r = (r < 0) ? 0 : r; /* NaN passes through, like vmaxps(0, r) */
            ci[j] = r;
        }
    }
}
