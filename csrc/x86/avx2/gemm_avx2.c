/*
 * gemm_avx2.c - AVX2 + FMA GEMM microkernels. Compiled with -mavx2 -mfma; called only when
 * dispatch selected FNN_ARCH_AVX2.
 */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>
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

/* The direct kernels' entry for mr rows (1..6) and V vectors, kern one of kern_f32 / kern_f64:
 * each row count its own instance, so the accumulators are indexed by constants. */
#define FNN_KD_SWITCH(kern, V)                                                                     \
    switch (mr) {                                                                                  \
    case 1: kern(1, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;             \
    case 2: kern(2, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;             \
    case 3: kern(3, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;             \
    case 4: kern(4, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;             \
    case 5: kern(5, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;             \
    default: kern(6, V, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias); break;            \
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
        /* whole strips of 96 (one row) or 32 columns, then kern_f32 on the last 16 or fewer;
         * a column bias moves with the strip (a row bias, or none, stays) */
        const int bias_col = bias && !(epi->flags & FNN_GEMM_E_BIASROW);
        int j = 0;
        while (nr - j >= 32) {
            const float *bj = bias_col ? bias + j : bias;
            const int w = (mr == 1 && nr - j >= NRW1_F32) ? NRW1_F32 : 32;
            if (w == NRW1_F32)
                kern_row_f32(1, 12, k, a, a_rs, a_cs, b + j, ldb, c + j, ldc, epi, bj);
            else if (mr == 1)
                kern_row_f32(1, 4, k, a, a_rs, a_cs, b + j, ldb, c + j, ldc, epi, bj);
            else
                kern_row_f32(2, 4, k, a, a_rs, a_cs, b + j, ldb, c + j, ldc, epi, bj);
            j += w;
        }
        for (; j < nr; j += NR_F32) {
            const float *bj = bias_col ? bias + j : bias;
            const int w = nr - j < NR_F32 ? nr - j : NR_F32;
            if (mr == 1)
                kern_f32(1, w > 8 ? 2 : 1, 1, k, a, a_rs, a_cs, b + j, ldb, c + j, ldc, mr, w, epi, bj);
            else
                kern_f32(2, w > 8 ? 2 : 1, 1, k, a, a_rs, a_cs, b + j, ldb, c + j, ldc, mr, w, epi, bj);
        }
        return;
    }
    if (nr > 8)
        FNN_KD_SWITCH(kern_f32, 2)
    else
        FNN_KD_SWITCH(kern_f32, 1)
}

/* ---- gathered rows (ukg, the convolution's implicit im2col) ------------------------------
 * kern_f32's direct computation for R rows and V vectors of columns (nr0 lanes at b + boff[p],
 * nr1 at b + boff[p] + b2, to c and c + c2), with the same per-element FMA chain and epilogue
 * (so contiguous vectors give the direct GEMM's bits). Nothing is padded, and masked loads are
 * slow on Zen 1, so a partial vector of n lanes is read with a plain load of 8 values that stay
 * inside the span the call reads (every offset is from the same b, so all of b between the
 * smallest and the largest value read lies in one array): those starting at the vector when they
 * end at or before the furthest value read, else those ending at its last value, moved down by
 * 8 - n lanes with one permute (in a convolution, the last taps' rows); the lanes past n hold
 * other B values and reach no stored element. Only when neither fits (a span under 8 values)
 * does a vector go through a zeroed buffer. Partial vectors of C are stored in 4-, 2- and
 * 1-lane pieces; the bias, and C when beta is used, read through small buffers. */
FNN_INLINE __m256 load_part_f32(const float *p, int n)
{
    float t[8] = {0};
    for (int j = 0; j < n; j++)
        t[j] = p[j];
    return _mm256_loadu_ps(t);
}

FNN_INLINE void store_part_f32(float *p, __m256 v, int n)
{
    __m128 x = _mm256_castps256_ps128(v);
    if (n >= 4) {
        _mm_storeu_ps(p, x);
        x = _mm256_extractf128_ps(v, 1);
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        _mm_storel_pi((__m64 *)(void *)p, x);
        x = _mm_movehl_ps(x, x);
        p += 2;
        n -= 2;
    }
    if (n)
        _mm_store_ss(p, x);
}

/* Lane indices 8 - n .. 15 - n at fnn_lane_iota + 8 - n: the permute moving lanes down by 8 - n
 * (loaded where needed: kept in registers, these vectors would push accumulators out). */
static const int32_t fnn_lane_iota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* n lanes at p, where [lo, hi) may be read (lo <= p, p + n <= hi) */
FNN_INLINE __m256 load_span_f32(const float *p, int n, const float *lo, const float *hi)
{
    if (hi - p >= 8) /* (differences of pointers into the array: no pointer leaves it) */
        return _mm256_loadu_ps(p);
    if (p - lo >= 8 - n)
        return _mm256_permutevar8x32_ps(_mm256_loadu_ps(p + n - 8),
                                        _mm256_loadu_si256((const __m256i *)(const void *)(fnn_lane_iota + 8 - n)));
    return load_part_f32(p, n);
}

#define FNN_RT float
#define FNN_RV __m256
#define FNN_RL 8
#define FNN_RMR MR_F32
#define FNN_RS(x) x##_f32
#define FNN_RZERO _mm256_setzero_ps
#define FNN_RLOADU _mm256_loadu_ps
#define FNN_RSTOREU _mm256_storeu_ps
#define FNN_RBCAST _mm256_broadcast_ss
#define FNN_RSET1 _mm256_set1_ps
#define FNN_RFMA _mm256_fmadd_ps
#define FNN_RMUL _mm256_mul_ps
#define FNN_RADD _mm256_add_ps
#define FNN_RMAX _mm256_max_ps
#include "gemm_avx2_rows.h"     /* (it undefines the FNN_R* parameters) */

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
    if (nr > 4)
        FNN_KD_SWITCH(kern_f64, 2)
    else
        FNN_KD_SWITCH(kern_f64, 1)
}

/* The gathered-rows kernel for double: kern_rows_f32 with 4 lanes per vector. */
FNN_INLINE __m256d load_part_f64(const double *p, int n)
{
    double t[4] = {0};
    for (int j = 0; j < n; j++)
        t[j] = p[j];
    return _mm256_loadu_pd(t);
}

FNN_INLINE void store_part_f64(double *p, __m256d v, int n)
{
    __m128d x = _mm256_castpd256_pd128(v);
    if (n >= 2) {
        _mm_storeu_pd(p, x);
        x = _mm256_extractf128_pd(v, 1);
        p += 2;
        n -= 2;
    }
    if (n)
        _mm_store_sd(p, x);
}

/* as load_span_f32: the permute moves 32-bit lanes down by 2 (4 - n), each double lane by 4 - n */
FNN_INLINE __m256d load_span_f64(const double *p, int n, const double *lo, const double *hi)
{
    if (hi - p >= 4)
        return _mm256_loadu_pd(p);
    if (p - lo >= 4 - n)
        return _mm256_castps_pd(_mm256_permutevar8x32_ps(
            _mm256_castpd_ps(_mm256_loadu_pd(p + n - 4)),
            _mm256_loadu_si256((const __m256i *)(const void *)(fnn_lane_iota + 2 * (4 - n)))));
    return load_part_f64(p, n);
}

#define FNN_RT double
#define FNN_RV __m256d
#define FNN_RL 4
#define FNN_RMR MR_F64
#define FNN_RS(x) x##_f64
#define FNN_RZERO _mm256_setzero_pd
#define FNN_RLOADU _mm256_loadu_pd
#define FNN_RSTOREU _mm256_storeu_pd
#define FNN_RBCAST _mm256_broadcast_sd
#define FNN_RSET1 _mm256_set1_pd
#define FNN_RFMA _mm256_fmadd_pd
#define FNN_RMUL _mm256_mul_pd
#define FNN_RADD _mm256_add_pd
#define FNN_RMAX _mm256_max_pd
#include "gemm_avx2_rows.h"     /* (it undefines the FNN_R* parameters) */

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

/* ---- dot-product kernels (ukt): C = A B^T with both operands read in place, rows of k values ----
 * For weight gradients over a long k the packed path transposes both operands into panels and
 * wastes most of a 6 x 16 tile on m x n of 16 x 9. Here each element of a DTM x DTN tile keeps
 * one vector of partial sums over k (lane l sums k = l mod VL), loaded straight from the rows;
 * the k tail (under one vector) is copied into zeroed buffers, not masked-loaded (slow on Zen 1).
 * Each vector is then reduced by the same fixed tree (halves, then pairs, then neighbours), so
 * an element's result does not depend on the tile or thread it falls in. 4 x 3 tiles: 12
 * accumulators, the 3 B vectors and one A vector fill the 16 ymm registers; 7 loads per 12
 * FMAs. Edge tiles read row 0 again in place of missing rows and drop those results. */
#define DTM 4
#define DTN 3

static inline float dot_reduce_f32(__m256 v)
{
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps(x, x, 1)));
}

static inline double dot_reduce_f64(__m256d v)
{
    __m128d x = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(x, _mm_unpackhi_pd(x, x)));
}

/* one step of the dot kernel: acc[i][j] += av(i) * bv(j), the A vectors loaded one at a time */
#define FNN_DOT_STEP(T, V, LOAD, FMA, AP, BP)                                                      \
    do {                                                                                           \
        const V b0_ = LOAD(BP(0)), b1_ = LOAD(BP(1)), b2_ = LOAD(BP(2));                           \
        for (int i_ = 0; i_ < DTM; i_++) {                                                         \
            const V a_ = LOAD(AP(i_));                                                             \
            acc[i_][0] = FMA(a_, b0_, acc[i_][0]);                                                 \
            acc[i_][1] = FMA(a_, b1_, acc[i_][1]);                                                 \
            acc[i_][2] = FMA(a_, b2_, acc[i_][2]);                                                 \
        }                                                                                          \
    } while (0)

/* C = act(alpha * s + beta * C + bias) for the valid mr x nr part, element by element (the same
 * scalar operations for every element of every tile) */
#define FNN_DOT_EPI(T, FMA1)                                                                       \
    for (int i = 0; i < mr; i++)                                                                   \
        for (int j = 0; j < nr; j++) {                                                             \
            T r = epi->alpha * s[i][j];                                                            \
            T *cij = c + i * ldc + j;                                                              \
            if (!(epi->flags & FNN_GEMM_E_BETA0))                                                  \
                r = FMA1(epi->beta, *cij, r);                                                      \
            if (bias)                                                                              \
                r += (epi->flags & FNN_GEMM_E_BIASROW) ? bias[i] : bias[j];                        \
            if ((epi->flags & FNN_GEMM_E_RELU) && r < 0)                                           \
                r = 0; /* NaN stays NaN */                                                         \
            *cij = r;                                                                              \
        }

/* The dot kernels of both types (rows of A at ar[i] + p, of B at br[j] + p; the k tail from t). */
#define FNN_DOT_AP(i) (ar[i] + p)
#define FNN_DOT_BP(j) (br[j] + p)
#define FNN_DOT_TA(i) (t[i])
#define FNN_DOT_TB(j) (t[DTM + (j)])
#define FNN_DEFINE_UKT(T, SUF, V, VL, ZERO, LOADU, FMA, REDUCE, FMA1)                                \
static void ukt_##SUF(int64_t k, const T *a, int64_t lda, const T *b, int64_t ldb, T *c, int64_t ldc, \
                    int mr, int nr, const fnn_gemm_epi_##SUF *epi, const T *bias)                    \
{                                                                                                    \
    const T *ar[DTM], *br[DTN];                                                                      \
    for (int i = 0; i < DTM; i++)                                                                    \
        ar[i] = a + (i < mr ? i : 0) * lda;                                                          \
    for (int j = 0; j < DTN; j++)                                                                    \
        br[j] = b + (j < nr ? j : 0) * ldb;                                                          \
    V acc[DTM][DTN];                                                                                 \
    for (int i = 0; i < DTM; i++)                                                                    \
        for (int j = 0; j < DTN; j++)                                                                \
            acc[i][j] = ZERO();                                                                      \
    int64_t p = 0;                                                                                   \
    for (; p + VL <= k; p += VL)                                                                     \
        FNN_DOT_STEP(T, V, LOADU, FMA, FNN_DOT_AP, FNN_DOT_BP);                                      \
    if (p < k) {                                                                                     \
        T t[DTM + DTN][VL];                                                                          \
        memset(t, 0, sizeof(t));                                                                     \
        for (int i = 0; i < DTM; i++)                                                                \
            memcpy(t[i], ar[i] + p, sizeof(T) * (size_t)(k - p));                                    \
        for (int j = 0; j < DTN; j++)                                                                \
            memcpy(t[DTM + j], br[j] + p, sizeof(T) * (size_t)(k - p));                              \
        FNN_DOT_STEP(T, V, LOADU, FMA, FNN_DOT_TA, FNN_DOT_TB);                                      \
    }                                                                                                \
    T s[DTM][DTN];                                                                                   \
    for (int i = 0; i < DTM; i++)                                                                    \
        for (int j = 0; j < DTN; j++)                                                                \
            s[i][j] = REDUCE(acc[i][j]);                                                             \
    FNN_DOT_EPI(T, FMA1)                                                                             \
}
FNN_DEFINE_UKT(float, f32, __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_fmadd_ps, dot_reduce_f32, fmaf)
FNN_DEFINE_UKT(double, f64, __m256d, 4, _mm256_setzero_pd, _mm256_loadu_pd, _mm256_fmadd_pd, dot_reduce_f64, fma)

/* The implicit forward convolution (fnn_gemm_rows_take_*) takes ukg only where it measured faster
 * than the wide columns + GEMM (batch 64, 3x3, one Zen 1 core, float): with output rows of whole
 * vectors, which the wide path fills to ow / (ow + 2) (16 x 16: 5.2 -> 4.6 ms at 16 -> 32
 * channels, 19.4 -> 16.8 ms at 32 -> 64; 8 x 8, 64 -> 64: 10.5 -> 8.4), not where a row leaves
 * as many lanes idle (14 x 14, 32 -> 32: 8.0 -> 8.2; 28 x 28, 4 -> 16: 2.45 -> 2.75), nor over
 * fewer taps than 16 channels of 3 x 3, where the per-call work is short (1 channel, 32 x 32:
 * 2.16 -> 2.31 ms; 3 channels: 4.48 -> 4.2-4.7 over builds, no clear gain). The input gradient's implicit path needs no such limit (measured
 * faster at 14 x 14 too: the backward of 16 -> 32 channels, 11.9 -> 10.1-11.4 ms at 2 threads). */
#define ROWS_MIN_K 144

/* The dot path (gemm_tmpl.h's rule) only from k = 512: each tile's k tail, reductions and scalar
 * epilogue cost a few hundred cycles. Measured against packing (float, one Zen 1 core):
 * 16 x 9 over 784: 19.6 -> 5.6 us; 32 x 27 over 1024: 79 -> 43; 32 x 64 over 784: 103 -> 83;
 * but 64 x 32 over 256: 31 -> 33, 32 x 32 over 200: even, 45 x 45 over 33: 5.6 -> 22. */
#define DOT_MIN_K 512

/* Blocking: kc = 256 keeps the 6 x kc A micro-panel (6 KiB float) in a 32 KiB L1 beside the
 * streaming B micro-panels; the kc x nc B block (512 KiB float) stays in a 1 MiB L2. */
const fnn_gemm_desc_f32 fnn_gemm_desc_avx2_f32 = {
    MR_F32, NR_F32, 96, 256, 512, ukr_f32_6x16, 0, pack_a_trans_f32, pack_b_copy_f32, pack_b_trans_f32, ukd_f32, NRW_F32,
    ukt_f32, DTM, DTN, ukg_f32, NRW1_F32, ROWS_MIN_K, 1, DOT_MIN_K,
};
const fnn_gemm_desc_f64 fnn_gemm_desc_avx2_f64 = {
    MR_F64, NR_F64, 96, 256, 256, ukr_f64_6x8, 0, pack_a_trans_f64, pack_b_copy_f64, pack_b_trans_f64, ukd_f64, 0,
    ukt_f64, DTM, DTN, ukg_f64, 0, ROWS_MIN_K, 1, DOT_MIN_K,
};
#endif
