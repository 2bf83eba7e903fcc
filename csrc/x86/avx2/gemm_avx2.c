/*
 * gemm_avx2.c - AVX2 + FMA GEMM microkernels. Compiled with -mavx2 -mfma; called only when
 * dispatch selected FNN_ARCH_AVX2.
 */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#include "../../gemm/gemm_internal.h"

#if defined(__GNUC__)
#define FNN_INLINE static inline __attribute__((always_inline))
#else
#define FNN_INLINE static inline
#endif

/* Edge tiles (mr < MR or nr < NR) are computed in full from the zero-padded panels (or, in
 * the direct kernels, for the R rows that exist) and written through a small tile buffer: the valid part of C (and of the bias) is copied in,
 * the same vector epilogue as for full tiles runs on the buffer, and the valid part is
 * copied back. AVX2 has no cheap masked stores, and this keeps the rounding of every
 * element independent of where the tile lies. */

/* ---- float: 6 x 16 ----------------------------------------------------------------------
 * 12 ymm accumulators + 2 B vectors + 1 broadcast of the 16 registers; 12 independent FMA
 * chains cover the 4-5 cycle latency on two FMA ports. */
#define MR_F32 6
#define NR_F32 16

FNN_INLINE void epi_f32(const __m256 acc[MR_F32][2], float *c, int64_t ldc, const fnn_gemm_epi_f32 *epi,
                        const float *bias)
{
    const __m256 alpha = _mm256_set1_ps(epi->alpha), beta = _mm256_set1_ps(epi->beta);
    const __m256 zero = _mm256_setzero_ps();
    const int flags = epi->flags;
    const int bias_row = bias && (flags & FNN_GEMM_E_BIASROW);
    __m256 bc0 = zero, bc1 = zero;
    if (bias && !bias_row) {
        bc0 = _mm256_loadu_ps(bias);
        bc1 = _mm256_loadu_ps(bias + 8);
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR_F32; i++) {
        float *ci = c + i * ldc;
        __m256 r0 = _mm256_mul_ps(alpha, acc[i][0]);
        __m256 r1 = _mm256_mul_ps(alpha, acc[i][1]);
        if (!(flags & FNN_GEMM_E_BETA0)) {
            r0 = _mm256_fmadd_ps(beta, _mm256_loadu_ps(ci), r0);
            r1 = _mm256_fmadd_ps(beta, _mm256_loadu_ps(ci + 8), r1);
        }
        if (bias_row) {
            const __m256 bi = _mm256_set1_ps(bias[i]);
            r0 = _mm256_add_ps(r0, bi);
            r1 = _mm256_add_ps(r1, bi);
        } else if (bias) {
            r0 = _mm256_add_ps(r0, bc0);
            r1 = _mm256_add_ps(r1, bc1);
        }
        if (flags & FNN_GEMM_E_RELU) {
            r0 = _mm256_max_ps(zero, r0); /* max(0, NaN) = NaN */
            r1 = _mm256_max_ps(zero, r1);
        }
        _mm256_storeu_ps(ci, r0);
        _mm256_storeu_ps(ci + 8, r1);
    }
}

/* The tile leaves registers through epi_f32: straight into C for a full tile, through the
 * tile buffer otherwise. */
FNN_INLINE void store_f32(const __m256 acc[MR_F32][2], float *c, int64_t ldc, int mr, int nr,
                      const fnn_gemm_epi_f32 *epi, const float *bias)
{
    if (mr == MR_F32 && nr == NR_F32) {
        epi_f32(acc, c, ldc, epi, bias);
        return;
    }
    float t[MR_F32 * NR_F32], tb[NR_F32];
    const float *tbias = NULL;
    memset(t, 0, sizeof(t));
    if (!(epi->flags & FNN_GEMM_E_BETA0))
        for (int i = 0; i < mr; i++)
            memcpy(t + i * NR_F32, c + i * ldc, sizeof(float) * (size_t)nr);
    if (bias) {
        const int len = (epi->flags & FNN_GEMM_E_BIASROW) ? mr : nr;
        memset(tb, 0, sizeof(tb));
        memcpy(tb, bias, sizeof(float) * (size_t)len);
        tbias = tb;
    }
    epi_f32(acc, t, NR_F32, epi, tbias);
    for (int i = 0; i < mr; i++)
        memcpy(c + i * ldc, t + i * NR_F32, sizeof(float) * (size_t)nr);
}

/* R rows of the tile are computed (the rest stay zero). direct = 0: packed panels;
 * direct = 1: A and B read in place (a[i*a_rs + p*a_cs], b[p*b_rs + j]). V: B vectors per row
 * (1 when nr <= 8: the second would only multiply zeros).
 * Nothing is padded in place, so a partial row of B is read with a full load wherever those
 * 8V values still lie at or before the strip's last element b[(k-1)*b_rs + nr-1] (the lanes past
 * nr then hold later B values, which reach no stored element: lanes are independent and only nr
 * columns are written); only the last row or two take masked loads, which on AMD Zen 1 run at
 * half the speed of plain ones (measured 6.0 against 2.7 us for 32 x 100 x 10 and x 16). */
FNN_INLINE void kern_f32(const int R, const int V, const int direct, int64_t k, const float *restrict a,
                         const int64_t a_rs, const int64_t a_cs, const float *restrict b, const int64_t b_rs,
                         float *restrict c, int64_t ldc, int mr, int nr, const fnn_gemm_epi_f32 *epi,
                         const float *restrict bias)
{
    __m256 acc[MR_F32][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR_F32; i++) {
        acc[i][0] = _mm256_setzero_ps();
        acc[i][1] = _mm256_setzero_ps();
    }
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lm0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), iota);
    const __m256i lm1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), iota);
    /* rows [0, kfull) are read with plain loads */
    int64_t kfull = k;
    if (direct && nr < 8 * V)
        kfull = k - (8 * V - nr + b_rs - 1) / b_rs;
    for (int64_t p = 0; p < k; p++) {
        __m256 b0, b1 = _mm256_setzero_ps();
        if (!direct) {
            b0 = _mm256_load_ps(b);
            b1 = _mm256_load_ps(b + 8);
        } else if (p < kfull) {
            b0 = _mm256_loadu_ps(b);
            if (V > 1)
                b1 = _mm256_loadu_ps(b + 8);
        } else {
            b0 = _mm256_maskload_ps(b, lm0);
            if (V > 1)
                b1 = _mm256_maskload_ps(b + 8, lm1);
        }
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i * a_rs);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            if (V > 1)
                acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += a_cs;
        b += direct ? b_rs : NR_F32;
    }
    store_f32(acc, c, ldc, mr, nr, epi, bias);
}

static void ukr_f32_6x16(int64_t k, const float *a, const float *b, float *c, int64_t ldc, int mr, int nr,
                         const fnn_gemm_epi_f32 *epi, const float *bias)
{
    kern_f32(MR_F32, 2, 0, k, a, 1, MR_F32, b, 0, c, ldc, mr, nr, epi, bias);
}

/* One or two rows (inference, batch 1): a GEMV limited by reading B from L2 or memory, so
 * strips are wide (NRW_F32 columns for two rows, NRW1_F32 for one: 8 or 12 accumulators):
 * each B row is read as consecutive cache lines, which the prefetchers follow, instead of two
 * lines then a jump of ldb, and enough FMA chains are independent to hide their latency (the
 * 6 x 16 kernel has two per row). Whole strips only: the rest of a row goes through kern_f32.
 * Same per-element arithmetic as kern_f32. */
#define NRW_F32 32
#define NRW1_F32 96
#ifndef FNN_PF_ROW
#define FNN_PF_ROW 4
#endif
FNN_INLINE void kern_row_f32(const int R, const int NV, int64_t k, const float *restrict a, const int64_t a_rs,
                             const int64_t a_cs, const float *restrict b, const int64_t ldb, float *restrict c,
                             int64_t ldc, const fnn_gemm_epi_f32 *epi, const float *restrict bias)
{
    __m256 acc[2][12];
#pragma GCC unroll 12
    for (int v = 0; v < NV; v++)
        acc[0][v] = acc[1][v] = _mm256_setzero_ps();
    for (int64_t p = 0; p < k; p++) {
#pragma GCC unroll 6
        for (int v = 0; v < NV; v += 2)
            _mm_prefetch((const char *)(b + FNN_PF_ROW * ldb + 8 * v), _MM_HINT_T0);
        const __m256 a0 = _mm256_broadcast_ss(a);
        const __m256 a1 = R > 1 ? _mm256_broadcast_ss(a + a_rs) : a0;
#pragma GCC unroll 12
        for (int v = 0; v < NV; v++) {
            const __m256 bv = _mm256_loadu_ps(b + 8 * v);
            acc[0][v] = _mm256_fmadd_ps(a0, bv, acc[0][v]);
            if (R > 1)
                acc[1][v] = _mm256_fmadd_ps(a1, bv, acc[1][v]);
        }
        a += a_cs;
        b += ldb;
    }
    const __m256 alpha = _mm256_set1_ps(epi->alpha), beta = _mm256_set1_ps(epi->beta);
    const __m256 zero = _mm256_setzero_ps();
    const int flags = epi->flags;
    const int bias_row = bias && (flags & FNN_GEMM_E_BIASROW);
#pragma GCC unroll 2
    for (int i = 0; i < R; i++) {
        float *ci = c + i * ldc;
#pragma GCC unroll 12
        for (int v = 0; v < NV; v++) {
            __m256 r = _mm256_mul_ps(alpha, acc[i][v]);
            if (!(flags & FNN_GEMM_E_BETA0))
                r = _mm256_fmadd_ps(beta, _mm256_loadu_ps(ci + 8 * v), r);
            if (bias_row)
                r = _mm256_add_ps(r, _mm256_set1_ps(bias[i]));
            else if (bias)
                r = _mm256_add_ps(r, _mm256_loadu_ps(bias + 8 * v));
            if (flags & FNN_GEMM_E_RELU)
                r = _mm256_max_ps(zero, r);
            _mm256_storeu_ps(ci + 8 * v, r);
        }
    }
}

static void ukd_f32(int64_t k, const float *a, int64_t a_rs, int64_t a_cs, const float *b, int64_t ldb,
                    float *c, int64_t ldc, int mr, int nr, const fnn_gemm_epi_f32 *epi, const float *bias)
{
    if (mr <= 2 && nr > NR_F32) {
        /* whole strips of 96 (one row) or 32 columns, then kern_f32 on the last 16 or fewer */
        const int64_t bias_step = bias && !(epi->flags & FNN_GEMM_E_BIASROW);
        while (nr >= 32) {
            const int w = (mr == 1 && nr >= NRW1_F32) ? NRW1_F32 : 32;
            if (w == NRW1_F32)
                kern_row_f32(1, 12, k, a, a_rs, a_cs, b, ldb, c, ldc, epi, bias);
            else if (mr == 1)
                kern_row_f32(1, 4, k, a, a_rs, a_cs, b, ldb, c, ldc, epi, bias);
            else
                kern_row_f32(2, 4, k, a, a_rs, a_cs, b, ldb, c, ldc, epi, bias);
            b += w;
            c += w;
            bias += bias_step * w;
            nr -= w;
        }
        for (; nr > 0; nr -= NR_F32, b += NR_F32, c += NR_F32, bias += bias_step * NR_F32) {
            const int w = nr < NR_F32 ? nr : NR_F32;
            if (mr == 1)
                kern_f32(1, w > 8 ? 2 : 1, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, w, epi, bias);
            else
                kern_f32(2, w > 8 ? 2 : 1, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, w, epi, bias);
        }
        return;
    }
#define FNN_KD_F32(V)                                                                              \
    switch (mr) {                                                                                  \
    case 1: kern_f32(1, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;         \
    case 2: kern_f32(2, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;         \
    case 3: kern_f32(3, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;         \
    case 4: kern_f32(4, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;         \
    case 5: kern_f32(5, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;         \
    default: kern_f32(6, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;        \
    }
    if (nr > 8) {
        FNN_KD_F32(2)
    } else {
        FNN_KD_F32(1)
    }
#undef FNN_KD_F32
}

/* ---- double: 6 x 8 (same structure, 4 lanes per ymm) ------------------------------------ */
#define MR_F64 6
#define NR_F64 8

FNN_INLINE void epi_f64(const __m256d acc[MR_F64][2], double *c, int64_t ldc, const fnn_gemm_epi_f64 *epi,
                        const double *bias)
{
    const __m256d alpha = _mm256_set1_pd(epi->alpha), beta = _mm256_set1_pd(epi->beta);
    const __m256d zero = _mm256_setzero_pd();
    const int flags = epi->flags;
    const int bias_row = bias && (flags & FNN_GEMM_E_BIASROW);
    __m256d bc0 = zero, bc1 = zero;
    if (bias && !bias_row) {
        bc0 = _mm256_loadu_pd(bias);
        bc1 = _mm256_loadu_pd(bias + 4);
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR_F64; i++) {
        double *ci = c + i * ldc;
        __m256d r0 = _mm256_mul_pd(alpha, acc[i][0]);
        __m256d r1 = _mm256_mul_pd(alpha, acc[i][1]);
        if (!(flags & FNN_GEMM_E_BETA0)) {
            r0 = _mm256_fmadd_pd(beta, _mm256_loadu_pd(ci), r0);
            r1 = _mm256_fmadd_pd(beta, _mm256_loadu_pd(ci + 4), r1);
        }
        if (bias_row) {
            const __m256d bi = _mm256_set1_pd(bias[i]);
            r0 = _mm256_add_pd(r0, bi);
            r1 = _mm256_add_pd(r1, bi);
        } else if (bias) {
            r0 = _mm256_add_pd(r0, bc0);
            r1 = _mm256_add_pd(r1, bc1);
        }
        if (flags & FNN_GEMM_E_RELU) {
            r0 = _mm256_max_pd(zero, r0);
            r1 = _mm256_max_pd(zero, r1);
        }
        _mm256_storeu_pd(ci, r0);
        _mm256_storeu_pd(ci + 4, r1);
    }
}

FNN_INLINE void store_f64(const __m256d acc[MR_F64][2], double *c, int64_t ldc, int mr, int nr,
                      const fnn_gemm_epi_f64 *epi, const double *bias)
{
    if (mr == MR_F64 && nr == NR_F64) {
        epi_f64(acc, c, ldc, epi, bias);
        return;
    }
    double t[MR_F64 * NR_F64], tb[NR_F64];
    const double *tbias = NULL;
    memset(t, 0, sizeof(t));
    if (!(epi->flags & FNN_GEMM_E_BETA0))
        for (int i = 0; i < mr; i++)
            memcpy(t + i * NR_F64, c + i * ldc, sizeof(double) * (size_t)nr);
    if (bias) {
        const int len = (epi->flags & FNN_GEMM_E_BIASROW) ? mr : nr;
        memset(tb, 0, sizeof(tb));
        memcpy(tb, bias, sizeof(double) * (size_t)len);
        tbias = tb;
    }
    epi_f64(acc, t, NR_F64, epi, tbias);
    for (int i = 0; i < mr; i++)
        memcpy(c + i * ldc, t + i * NR_F64, sizeof(double) * (size_t)nr);
}

/* As kern_f32 (V: B vectors of 4 per row, 1 when nr <= 4). */
FNN_INLINE void kern_f64(const int R, const int V, const int direct, int64_t k, const double *restrict a,
                         const int64_t a_rs, const int64_t a_cs, const double *restrict b, const int64_t b_rs,
                         double *restrict c, int64_t ldc, int mr, int nr, const fnn_gemm_epi_f64 *epi,
                         const double *restrict bias)
{
    __m256d acc[MR_F64][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR_F64; i++) {
        acc[i][0] = _mm256_setzero_pd();
        acc[i][1] = _mm256_setzero_pd();
    }
    const __m256i iota = _mm256_setr_epi64x(0, 1, 2, 3);
    const __m256i lm0 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(nr), iota);
    const __m256i lm1 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(nr - 4), iota);
    int64_t kfull = k;
    if (direct && nr < 4 * V)
        kfull = k - (4 * V - nr + b_rs - 1) / b_rs;
    for (int64_t p = 0; p < k; p++) {
        __m256d b0, b1 = _mm256_setzero_pd();
        if (!direct) {
            b0 = _mm256_load_pd(b);
            b1 = _mm256_load_pd(b + 4);
        } else if (p < kfull) {
            b0 = _mm256_loadu_pd(b);
            if (V > 1)
                b1 = _mm256_loadu_pd(b + 4);
        } else {
            b0 = _mm256_maskload_pd(b, lm0);
            if (V > 1)
                b1 = _mm256_maskload_pd(b + 4, lm1);
        }
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            const __m256d ai = _mm256_broadcast_sd(a + i * a_rs);
            acc[i][0] = _mm256_fmadd_pd(ai, b0, acc[i][0]);
            if (V > 1)
                acc[i][1] = _mm256_fmadd_pd(ai, b1, acc[i][1]);
        }
        a += a_cs;
        b += direct ? b_rs : NR_F64;
    }
    store_f64(acc, c, ldc, mr, nr, epi, bias);
}

static void ukr_f64_6x8(int64_t k, const double *a, const double *b, double *c, int64_t ldc, int mr, int nr,
                        const fnn_gemm_epi_f64 *epi, const double *bias)
{
    kern_f64(MR_F64, 2, 0, k, a, 1, MR_F64, b, 0, c, ldc, mr, nr, epi, bias);
}

static void ukd_f64(int64_t k, const double *a, int64_t a_rs, int64_t a_cs, const double *b, int64_t ldb,
                    double *c, int64_t ldc, int mr, int nr, const fnn_gemm_epi_f64 *epi, const double *bias)
{
#define FNN_KD_F64(V)                                                                              \
    switch (mr) {                                                                                  \
    case 1: kern_f64(1, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;         \
    case 2: kern_f64(2, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;         \
    case 3: kern_f64(3, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;         \
    case 4: kern_f64(4, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;         \
    case 5: kern_f64(5, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;         \
    default: kern_f64(6, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;        \
    }
    if (nr > 4) {
        FNN_KD_F64(2)
    } else {
        FNN_KD_F64(1)
    }
#undef FNN_KD_F64
}

/* ---- packing ----------------------------------------------------------------------------
 * Vector packers for the full panels (w == W) that dominate; the edge panels and the kc tail
 * (fewer than 8 or 4 steps) take the scalar loops. Transposing packs go through 8 x 8 (float)
 * and 4 x 4 (double) register transposes. Stores never go past the panel: AVX2 masked stores
 * are slow on some CPUs, so partial rows are written as 128-bit + 64-bit pieces. */
static void pack_scalar_f32(int W, int64_t w, int64_t p0, int64_t kc, const float *src, int64_t rs,
                            int64_t cs, float *dst)
{
    for (int64_t p = p0; p < kc; p++)
        for (int64_t i = 0; i < W; i++)
            dst[p * W + i] = i < w ? src[i * rs + p * cs] : 0.0f;
}

static void pack_scalar_f64(int W, int64_t w, int64_t p0, int64_t kc, const double *src, int64_t rs,
                            int64_t cs, double *dst)
{
    for (int64_t p = p0; p < kc; p++)
        for (int64_t i = 0; i < W; i++)
            dst[p * W + i] = i < w ? src[i * rs + p * cs] : 0.0;
}

static inline void transpose8_f32(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

static inline void transpose4_f64(__m256d r[4])
{
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* B not transposed: element (j, p) at src[p*ld + j] */
static void pack_b_copy_f32(int64_t w, int64_t kc, const float *src, int64_t ld, float *dst)
{
    if (w < NR_F32) {
        pack_scalar_f32(NR_F32, w, 0, kc, src, 1, ld, dst);
        return;
    }
    for (int64_t p = 0; p < kc; p++) {
        _mm256_store_ps(dst + p * NR_F32, _mm256_loadu_ps(src + p * ld));
        _mm256_store_ps(dst + p * NR_F32 + 8, _mm256_loadu_ps(src + p * ld + 8));
    }
}

/* element (i, p) at src[i*ld + p], W = 16 (B transposed) or 6 (A not transposed) */
static inline void pack_trans_f32(const int W, int64_t w, int64_t kc, const float *src, int64_t ld,
                                  float *dst)
{
    if (w < W) {
        pack_scalar_f32(W, w, 0, kc, src, ld, 1, dst);
        return;
    }
    int64_t p0 = 0;
    for (; p0 + 8 <= kc; p0 += 8)
        for (int g = 0; g < W; g += 8) {
            const int rows = W - g < 8 ? W - g : 8;
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = i < rows ? _mm256_loadu_ps(src + (g + i) * ld + p0) : _mm256_setzero_ps();
            transpose8_f32(r);
            for (int j = 0; j < 8; j++) {
                float *d = dst + (p0 + j) * W + g;
                if (rows == 8) {
                    _mm256_storeu_ps(d, r[j]);
                } else { /* rows == 6 */
                    _mm_storeu_ps(d, _mm256_castps256_ps128(r[j]));
                    _mm_storel_pi((__m64 *)(d + 4), _mm256_extractf128_ps(r[j], 1));
                }
            }
        }
    pack_scalar_f32(W, w, p0, kc, src, ld, 1, dst);
}

static void pack_a_trans_f32(int64_t w, int64_t kc, const float *src, int64_t ld, float *dst)
{
    pack_trans_f32(MR_F32, w, kc, src, ld, dst);
}
static void pack_b_trans_f32(int64_t w, int64_t kc, const float *src, int64_t ld, float *dst)
{
    pack_trans_f32(NR_F32, w, kc, src, ld, dst);
}

static void pack_b_copy_f64(int64_t w, int64_t kc, const double *src, int64_t ld, double *dst)
{
    if (w < NR_F64) {
        pack_scalar_f64(NR_F64, w, 0, kc, src, 1, ld, dst);
        return;
    }
    for (int64_t p = 0; p < kc; p++) {
        _mm256_store_pd(dst + p * NR_F64, _mm256_loadu_pd(src + p * ld));
        _mm256_store_pd(dst + p * NR_F64 + 4, _mm256_loadu_pd(src + p * ld + 4));
    }
}

static inline void pack_trans_f64(const int W, int64_t w, int64_t kc, const double *src, int64_t ld,
                                  double *dst)
{
    if (w < W) {
        pack_scalar_f64(W, w, 0, kc, src, ld, 1, dst);
        return;
    }
    int64_t p0 = 0;
    for (; p0 + 4 <= kc; p0 += 4)
        for (int g = 0; g < W; g += 4) {
            const int rows = W - g < 4 ? W - g : 4;
            __m256d r[4];
            for (int i = 0; i < 4; i++)
                r[i] = i < rows ? _mm256_loadu_pd(src + (g + i) * ld + p0) : _mm256_setzero_pd();
            transpose4_f64(r);
            for (int j = 0; j < 4; j++) {
                double *d = dst + (p0 + j) * W + g;
                if (rows == 4)
                    _mm256_storeu_pd(d, r[j]);
                else /* rows == 2 */
                    _mm_storeu_pd(d, _mm256_castpd256_pd128(r[j]));
            }
        }
    pack_scalar_f64(W, w, p0, kc, src, ld, 1, dst);
}

static void pack_a_trans_f64(int64_t w, int64_t kc, const double *src, int64_t ld, double *dst)
{
    pack_trans_f64(MR_F64, w, kc, src, ld, dst);
}
static void pack_b_trans_f64(int64_t w, int64_t kc, const double *src, int64_t ld, double *dst)
{
    pack_trans_f64(NR_F64, w, kc, src, ld, dst);
}

/* Blocking: kc = 256 keeps the 6 x kc A micro-panel (6 KiB float) in a 32 KiB L1 beside the
 * streaming B micro-panels; the kc x nc B block (512 KiB float) stays in a 1 MiB L2. */
const fnn_gemm_desc_f32 fnn_gemm_desc_avx2_f32 = {
    MR_F32, NR_F32, 96, 256, 512, ukr_f32_6x16, 0, pack_a_trans_f32, pack_b_copy_f32, pack_b_trans_f32, ukd_f32, NRW_F32,
    0, 0, 0, 0, NRW1_F32,
};
const fnn_gemm_desc_f64 fnn_gemm_desc_avx2_f64 = {
    MR_F64, NR_F64, 96, 256, 256, ukr_f64_6x8, 0, pack_a_trans_f64, pack_b_copy_f64, pack_b_trans_f64, ukd_f64, 0,
};
#endif
