/*
 * gemm_avx512.c - AVX-512 GEMM microkernels. Compiled with
 * -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma; called only when dispatch
 * selected FNN_ARCH_AVX512.
 */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "../../gemm/gemm_internal.h"

#define FNN_AVX512_MAXMR 16

#if defined(__GNUC__)
#define FNN_INLINE static inline __attribute__((always_inline))
#else
#define FNN_INLINE static inline
#endif

/* ---- float: MR x 32 ---------------------------------------------------------------------
 * Two zmm of B per row of the tile: MR*2 accumulators + 2 B vectors + 1 broadcast must fit
 * in 32 zmm registers (MR <= 14). Each step issues 2*MR FMAs against MR+2 loads, enough
 * independent chains (>= 8) to cover the 4-cycle FMA latency on two ports.
 * Edge tiles use column masks and per-row guards: masked-off lanes are never read or
 * written, and every element goes through the same instructions as in a full tile. */
FNN_INLINE void ukr_f32(const int MR, int64_t k, const float *restrict a, const float *restrict b,
                        float *restrict c, int64_t ldc, int mr, int nr, const fnn_gemm_epi_f32 *epi,
                        const float *restrict bias)
{
    __m512 acc[FNN_AVX512_MAXMR][2];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        acc[i][0] = _mm512_setzero_ps();
        acc[i][1] = _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < k; p++) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += MR;
        b += 32;
    }

    const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
    const __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xffff : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
    const __m512 alpha = _mm512_set1_ps(epi->alpha), beta = _mm512_set1_ps(epi->beta);
    const __m512 zero = _mm512_setzero_ps();
    const int flags = epi->flags;
    const int bias_row = bias && (flags & FNN_GEMM_E_BIASROW);
    __m512 bc0 = zero, bc1 = zero;
    if (bias && !bias_row) {
        bc0 = _mm512_maskz_loadu_ps(m0, bias);
        bc1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (i < mr) {
            float *ci = c + i * ldc;
            __m512 r0 = _mm512_mul_ps(alpha, acc[i][0]);
            __m512 r1 = _mm512_mul_ps(alpha, acc[i][1]);
            if (!(flags & FNN_GEMM_E_BETA0)) {
                r0 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m0, ci), r0);
                r1 = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
            }
            if (bias_row) {
                const __m512 bi = _mm512_set1_ps(bias[i]);
                r0 = _mm512_add_ps(r0, bi);
                r1 = _mm512_add_ps(r1, bi);
            } else if (bias) {
                r0 = _mm512_add_ps(r0, bc0);
                r1 = _mm512_add_ps(r1, bc1);
            }
            if (flags & FNN_GEMM_E_RELU) {
                r0 = _mm512_max_ps(zero, r0); /* max(0, NaN) = NaN */
                r1 = _mm512_max_ps(zero, r1);
            }
            _mm512_mask_storeu_ps(ci, m0, r0);
            _mm512_mask_storeu_ps(ci + 16, m1, r1);
        }
    }
}

static void ukr_f32_12x32(int64_t k, const float *a, const float *b, float *c, int64_t ldc, int mr, int nr,
                          const fnn_gemm_epi_f32 *epi, const float *bias)
{
    ukr_f32(12, k, a, b, c, ldc, mr, nr, epi, bias);
}

/* ---- double: MR x 16 (same structure, 8 lanes per zmm) ---------------------------------- */
FNN_INLINE void ukr_f64(const int MR, int64_t k, const double *restrict a, const double *restrict b,
                        double *restrict c, int64_t ldc, int mr, int nr, const fnn_gemm_epi_f64 *epi,
                        const double *restrict bias)
{
    __m512d acc[FNN_AVX512_MAXMR][2];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        acc[i][0] = _mm512_setzero_pd();
        acc[i][1] = _mm512_setzero_pd();
    }
    for (int64_t p = 0; p < k; p++) {
        const __m512d b0 = _mm512_load_pd(b), b1 = _mm512_load_pd(b + 8);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            const __m512d ai = _mm512_set1_pd(a[i]);
            acc[i][0] = _mm512_fmadd_pd(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_pd(ai, b1, acc[i][1]);
        }
        a += MR;
        b += 16;
    }

    const __mmask8 m0 = (__mmask8)(nr >= 8 ? 0xff : (1u << nr) - 1);
    const __mmask8 m1 = (__mmask8)(nr >= 16 ? 0xff : nr > 8 ? (1u << (nr - 8)) - 1 : 0);
    const __m512d alpha = _mm512_set1_pd(epi->alpha), beta = _mm512_set1_pd(epi->beta);
    const __m512d zero = _mm512_setzero_pd();
    const int flags = epi->flags;
    const int bias_row = bias && (flags & FNN_GEMM_E_BIASROW);
    __m512d bc0 = zero, bc1 = zero;
    if (bias && !bias_row) {
        bc0 = _mm512_maskz_loadu_pd(m0, bias);
        bc1 = _mm512_maskz_loadu_pd(m1, bias + 8);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (i < mr) {
            double *ci = c + i * ldc;
            __m512d r0 = _mm512_mul_pd(alpha, acc[i][0]);
            __m512d r1 = _mm512_mul_pd(alpha, acc[i][1]);
            if (!(flags & FNN_GEMM_E_BETA0)) {
                r0 = _mm512_fmadd_pd(beta, _mm512_maskz_loadu_pd(m0, ci), r0);
                r1 = _mm512_fmadd_pd(beta, _mm512_maskz_loadu_pd(m1, ci + 8), r1);
            }
            if (bias_row) {
                const __m512d bi = _mm512_set1_pd(bias[i]);
                r0 = _mm512_add_pd(r0, bi);
                r1 = _mm512_add_pd(r1, bi);
            } else if (bias) {
                r0 = _mm512_add_pd(r0, bc0);
                r1 = _mm512_add_pd(r1, bc1);
            }
            if (flags & FNN_GEMM_E_RELU) {
                r0 = _mm512_max_pd(zero, r0);
                r1 = _mm512_max_pd(zero, r1);
            }
            _mm512_mask_storeu_pd(ci, m0, r0);
            _mm512_mask_storeu_pd(ci + 8, m1, r1);
        }
    }
}

static void ukr_f64_12x16(int64_t k, const double *a, const double *b, double *c, int64_t ldc, int mr,
                          int nr, const fnn_gemm_epi_f64 *epi, const double *bias)
{
    ukr_f64(12, k, a, b, c, ldc, mr, nr, epi, bias);
}

/* Blocking (L1d 48 KiB / L2 2 MiB on Sapphire Rapids; 32 KiB / 1 MiB on Zen 4):
 * kc: the 12 x kc A micro-panel (12 KiB float at kc = 256) stays in L1 with room for the
 * B micro-panels streaming through; nc: the kc x nc B block (512 KiB) stays in L2. */
const fnn_gemm_desc_f32 fnn_gemm_desc_avx512_f32 = {
    12, 32, 96, 256, 512, ukr_f32_12x32, 0, 0, 0, 0,
};
const fnn_gemm_desc_f64 fnn_gemm_desc_avx512_f64 = {
    12, 16, 96, 256, 256, ukr_f64_12x16, 0, 0, 0, 0,
};
#endif
